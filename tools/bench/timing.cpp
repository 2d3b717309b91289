// Uploads, GPU-event timing and read-back for bench and tune.
#include "tools/bench/timing.hpp"

#include <algorithm>
#include <ctime>

namespace mlajit::tools {

void ensure_workspace(Engine& engine, DeviceProblem& d, const std::optional<TileConfig>& tile) {
  const std::size_t bytes = engine.decode_workspace_size(d.args, tile);
  if (bytes <= d.workspace.size()) return;
  d.workspace = runtime::DeviceBuffer(engine.device(), bytes);
  d.args.workspace = d.workspace.get();
  d.args.workspace_bytes = d.workspace.size();
}

std::vector<float> download_output(Engine& engine, const DeviceProblem& d, const Spec& spec, long long rows) {
  const std::size_t elements = std::size_t(rows) * spec.v_dim();
  std::vector<std::uint8_t> raw(std::min(d.out.size(), elements * dtype_size(spec.out_dtype)));
  if (!raw.empty()) engine.device().copy_to_host(raw.data(), d.out.get(), raw.size());
  std::vector<float> got(raw.size() / dtype_size(spec.out_dtype));
  for (std::size_t i = 0; i < got.size(); ++i) got[i] = load_element(raw.data(), spec.out_dtype, i);
  return got;
}

DecodeTimer::DecodeTimer(runtime::Device& device, L2Flush flush) : device_(device), flusher_(device, flush) {
  start_ = device.create_event();
  end_ = device.create_event();
}

DecodeTimer::~DecodeTimer() {
  device_.destroy_event(start_);
  device_.destroy_event(end_);
}

double DecodeTimer::median_ms(const std::function<void()>& call, int warmup, int runs) {
  for (int i = 0; i < warmup; ++i) call();
  std::vector<float> times;
  for (int i = 0; i < std::max(1, runs); ++i) {
    flusher_.flush();
    device_.record_event(start_, nullptr);
    call();
    device_.record_event(end_, nullptr);
    times.push_back(device_.elapsed_ms(start_, end_));
  }
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

std::string today() {
  std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%d", std::gmtime(&t));
  return buf;
}

}  // namespace mlajit::tools
