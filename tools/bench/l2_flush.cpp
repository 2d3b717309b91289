// L2 flushing between timed runs: a streamed read (default), a fill, or nothing.
#include "tools/bench/l2_flush.hpp"

#include <vector>

#include "tools/bench/roofline.hpp"

namespace mlajit::tools {

namespace {
constexpr std::size_t kFlushBytes = std::size_t(512) << 20;  // > L2 (50 MB on an H100, 60 MB on an H200)

struct FlushMode {
  const char* name;
  L2Flush mode;
};
// Every mode once: its name, the default first.
constexpr FlushMode kModes[] = {{"read", L2Flush::read}, {"write", L2Flush::write}, {"none", L2Flush::none}};
}  // namespace

std::string flush_name(L2Flush mode) {
  for (const FlushMode& m : kModes) {
    if (m.mode == mode) return m.name;
  }
  return "?";
}

void add_flush_option(CLI::App& cmd, L2Flush& mode) {
  std::vector<std::string> names;
  for (const FlushMode& m : kModes) names.emplace_back(m.name);
  cmd.add_option_function<std::string>(
         "--flush",
         [&mode](const std::string& given) {
           const std::string name = CLI::detail::to_lower(given);  // the check below accepts any case
           for (const FlushMode& m : kModes) {
             if (name == m.name) mode = m.mode;
           }
         },
         "how L2 is emptied before each timed run: read (stream 512 MiB through it; L2 left clean), "
         "write (memset 512 MiB; its dirty lines are written back inside the timed call), none")
      ->check(CLI::IsMember(names, CLI::ignore_case))
      ->type_name("MODE")
      ->default_str(kModes[0].name);
}

L2Flusher::L2Flusher(runtime::Device& device, L2Flush mode) : device_(device), mode_(mode) {
  if (mode_ == L2Flush::none) return;
  buffer_ = runtime::DeviceBuffer(device, kFlushBytes);
  device.fill_bytes(buffer_.get(), 0x5a, buffer_.size());
  if (mode_ == L2Flush::read) {
    sink_ = runtime::DeviceBuffer(device, 1 << 20);
    module_ = bench::load_stream_read(device);
  }
}

void L2Flusher::flush() {
  switch (mode_) {
    case L2Flush::read:
      bench::launch_stream_read(*module_, device_, buffer_.get(), buffer_.size(), sink_.get());
      break;
    case L2Flush::write:
      device_.fill_bytes(buffer_.get(), std::uint8_t(fills_++), buffer_.size());
      break;
    case L2Flush::none:
      break;
  }
}

}  // namespace mlajit::tools
