// Backend registry and DeviceBuffer.
#include "runtime/backend.hpp"

#include <algorithm>
#include <optional>

#include "cache/environment.hpp"

#include "codegen/error.hpp"
#include "runtime/cuda/cuda_backend.hpp"
#include "runtime/hip/hip_backend.hpp"

namespace mlajit::runtime {

std::vector<std::string> extra_compile_options() {
  std::vector<std::string> options;
  const std::optional<std::string> value = read_environment("MLAJIT_COMPILE_OPTIONS");
  if (!value) return options;
  std::size_t start = 0;
  while (start < value->size()) {
    const std::size_t end = std::min(value->find(' ', start), value->size());
    if (end > start) options.push_back(value->substr(start, end - start));
    start = end + 1;
  }
  return options;
}

Backend& backend(mlajit::Backend kind) {
  if (kind == mlajit::Backend::cuda) return cuda::instance();
  return hip::instance();
}

namespace {
[[noreturn]] void no_events() {
  throw Error(ErrorCode::unsupported, "this backend does not implement GPU-event timing yet");
}
[[noreturn]] void no_graphs() {
  throw Error(ErrorCode::unsupported, "this backend does not implement streams and graph capture yet");
}
}  // namespace

Stream Device::create_stream() { no_graphs(); }
void Device::destroy_stream(Stream) noexcept {}
void Device::begin_capture(Stream) { no_graphs(); }
void* Device::end_capture(Stream) { no_graphs(); }
void Device::launch_graph(void*, Stream) { no_graphs(); }
void Device::destroy_graph(void*) noexcept {}

void* Device::create_event() { no_events(); }
void Device::destroy_event(void*) noexcept {}
void Device::record_event(void*, Stream) { no_events(); }
float Device::elapsed_ms(void*, void*) { no_events(); }

DeviceBuffer::DeviceBuffer(Device& device, std::size_t bytes)
    : device_(&device), pointer_(bytes ? device.allocate(bytes) : nullptr), bytes_(bytes) {}

DeviceBuffer::~DeviceBuffer() {
  if (pointer_ != nullptr) device_->release(pointer_);
}

DeviceBuffer::DeviceBuffer(DeviceBuffer&& other) noexcept
    : device_(other.device_), pointer_(other.pointer_), bytes_(other.bytes_) {
  other.pointer_ = nullptr;
  other.bytes_ = 0;
}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& other) noexcept {
  if (this != &other) {
    if (pointer_ != nullptr) device_->release(pointer_);
    device_ = other.device_;
    pointer_ = other.pointer_;
    bytes_ = other.bytes_;
    other.pointer_ = nullptr;
    other.bytes_ = 0;
  }
  return *this;
}

}  // namespace mlajit::runtime
