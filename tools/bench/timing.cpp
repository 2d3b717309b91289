// Uploads, GPU-event timing and read-back for bench and tune.
#include "tools/bench/timing.hpp"

#include <algorithm>
#include <ctime>

namespace mlajit::tools {

DeviceProblem upload(Engine& engine, const reference::DecodeProblem& p, std::size_t workspace_bytes) {
  runtime::Device& device = engine.device();
  DeviceProblem d;
  auto put = [&](runtime::DeviceBuffer& buffer, const void* data, std::size_t bytes) {
    buffer = runtime::DeviceBuffer(device, std::max<std::size_t>(bytes, 16));
    if (bytes) device.copy_to_device(buffer.get(), data, bytes);
  };
  const Spec& s = p.spec;
  put(d.q, p.q.data(), p.q.size());
  put(d.kv, p.kv.data(), p.kv.size());
  put(d.qo, p.qo_indptr.data(), p.qo_indptr.size() * 4);
  put(d.kvp, p.kv_indptr.data(), p.kv_indptr.size() * 4);
  put(d.kvi, p.kv_indices.data(), p.kv_indices.size() * 4);
  put(d.last, p.kv_last_page_lens.data(), p.kv_last_page_lens.size() * 4);
  d.out = runtime::DeviceBuffer(device, std::size_t(p.total_q) * s.heads * s.v_dim() * dtype_size(s.out_dtype));
  d.lse = runtime::DeviceBuffer(device, std::size_t(p.total_q) * s.heads * 4);
  DecodeArgs& a = d.args;
  a.q = d.q.get();
  a.q_dtype = s.q_dtype;
  a.kv_buffer = d.kv.get();
  a.kv_dtype = s.kv_dtype;
  a.kv_page_stride = p.kv_page_stride;
  a.out = d.out.get();
  a.out_dtype = s.out_dtype;
  a.lse = s.return_lse ? d.lse.as<float>() : nullptr;
  a.qo_indptr = d.qo.as<int>();
  a.kv_indptr = d.kvp.as<int>();
  a.kv_indices = d.kvi.as<int>();
  a.kv_last_page_lens = d.last.as<int>();
  a.batch = p.batch;
  a.total_q = p.total_q;
  a.num_heads = s.heads;
  a.max_seqlen_q = s.s_q;
  a.page_size = s.page_size;
  a.kv_lora_rank = s.kv_lora_rank;
  a.rope_dim = s.rope_dim;
  a.num_kv_indices = (long long)p.kv_indices.size();
  a.sm_scale = p.sm_scale;
  a.logit_cap = s.logit_cap;
  a.q_scale = p.q_scale;
  a.kv_scale = p.kv_scale;
  a.causal = s.causal;
  if (workspace_bytes > 0) d.workspace = runtime::DeviceBuffer(device, workspace_bytes);
  a.workspace = d.workspace.get();
  a.workspace_bytes = d.workspace.size();
  return d;
}

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

DecodeTimer::DecodeTimer(runtime::Device& device, bool flush_l2) : device_(device) {
  if (flush_l2) flush_ = runtime::DeviceBuffer(device, std::size_t(512) << 20);  // > L2 (50 / 60 MB)
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
    if (flush_.size() > 0) device_.fill_bytes(flush_.get(), std::uint8_t(runs_++), flush_.size());
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
