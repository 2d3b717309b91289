// HIP Device / Module / Kernel over libamdhip64's module API. Written from the HIP API reference;
// there is no AMD GPU on the build machines, so this path is compiled here but runs untested.
#include "runtime/hip/hip_device.hpp"

#include <cstring>
#include <mutex>
#include <vector>

#include <fmt/format.h>

#include "codegen/error.hpp"
#include "runtime/hip/hip_library.hpp"

namespace mlajit::runtime::hip {

namespace {

// ---- discovery ------------------------------------------------------------------------------
struct Discovery {
  int count = 0;
  std::string reason;  // why count is 0
};

Discovery discover() {
  Discovery d;
  const Runtime& r = runtime();
  if (!r.loaded()) {
    d.reason = r.failure;
    return d;
  }
  // Without a GPU (or without access to /dev/kfd) hipInit fails: ROCm 5.2 says hipErrorInvalidDevice.
  if (hipError_t e = r.init(0); e != k_hip_success) {
    d.reason = describe(e, "hipInit") + " - no usable AMD GPU";
    return d;
  }
  if (hipError_t e = r.device_count(&d.count); e != k_hip_success) {
    d.count = 0;
    d.reason = describe(e, "hipGetDeviceCount");
    return d;
  }
  if (d.count == 0) d.reason = "the HIP runtime reports no device";
  return d;
}

const Discovery& discovery() {
  static const Discovery d = discover();
  return d;
}

// ---- device properties ----------------------------------------------------------------------
// hipDeviceProp_t changes layout between ROCm major versions, and only its gcnArchName (which
// hipDeviceGetAttribute cannot return on ROCm 6) is needed. It is read into a zeroed buffer far
// larger than any layout, at the offset of the layout the symbol promises:
//   hipGetDevicePropertiesR0600 (ROCm 6.0+, hipDeviceProp_tR0600, 1472 bytes):
//       gcnArchName at 1160, multiProcessorCount at 388 (offsets from ROCm 6's header, x86-64);
//   hipGetDevicePropertiesR0000 (ROCm 6.0+) and hipGetDeviceProperties (ROCm 5.x), the 5.x
//       hipDeviceProp_t (792 bytes in 5.2): gcnArchName at 396, multiProcessorCount at 336
//       (offsetof against /usr/include/hip of ROCm 5.2 here; unchanged through 5.x).
// multiProcessorCount is compared with hipDeviceGetAttribute's value to prove the layout.
struct PropertiesLayout {
  const char* call;
  hipError_t (*get)(void*, int);
  std::size_t arch_name_offset;
  std::size_t multiprocessor_offset;
};

constexpr std::size_t k_arch_name_bytes = 256;
constexpr std::size_t k_properties_buffer_bytes = 8192;

std::vector<PropertiesLayout> properties_layouts(const Runtime& r) {
  std::vector<PropertiesLayout> layouts;
  if (r.device_properties_r0600 != nullptr) {
    layouts.push_back({"hipGetDevicePropertiesR0600", r.device_properties_r0600, 1160, 388});
  }
  if (r.device_properties_r0000 != nullptr) {
    layouts.push_back({"hipGetDeviceProperties(R0000)", r.device_properties_r0000, 396, 336});
  }
  return layouts;
}

// "gfx90a" from "gfx90a:sramecc+:xnack-"; empty when the text is no gfx name.
std::string arch_from_gcn_name(const char* text) {
  const std::string full(text, strnlen(text, k_arch_name_bytes));
  const std::string arch = full.substr(0, full.find(':'));
  return arch.rfind("gfx", 0) == 0 && arch.size() > 3 ? arch : std::string();
}

// The arch if `layout` fits this runtime (its multiProcessorCount matches); else empty, with why.
std::string read_arch(const PropertiesLayout& layout, int ordinal, int multiprocessors, std::string& why) {
  std::vector<std::uint64_t> buffer(k_properties_buffer_bytes / sizeof(std::uint64_t), 0);
  auto* bytes = reinterpret_cast<unsigned char*>(buffer.data());
  if (hipError_t e = layout.get(bytes, ordinal); e != k_hip_success) {
    why += "; " + describe(e, layout.call);
    return {};
  }
  int reported = 0;
  std::memcpy(&reported, bytes + layout.multiprocessor_offset, sizeof(reported));
  const std::string arch = arch_from_gcn_name(reinterpret_cast<const char*>(bytes + layout.arch_name_offset));
  if (reported == multiprocessors && !arch.empty()) return arch;
  why += fmt::format("; {} layout does not match (multiProcessorCount {} vs {})", layout.call, reported,
                     multiprocessors);
  return {};
}

std::string device_arch_name(const Runtime& r, int ordinal, int multiprocessors) {
  std::string why;
  for (const PropertiesLayout& layout : properties_layouts(r)) {
    if (std::string arch = read_arch(layout, ordinal, multiprocessors, why); !arch.empty()) return arch;
  }
  throw Error(ErrorCode::device_error,
              fmt::format("cannot read the architecture (gcnArchName) of HIP device {} from {} (HIP {}){}",
                          ordinal, r.path, hip_version_text(r.version),
                          why.empty() ? "; no hipGetDeviceProperties symbol" : why));
}

int device_attribute(const Runtime& r, int attribute, int ordinal) {
  int value = 0;
  check(r.device_attribute(&value, attribute, ordinal), "hipDeviceGetAttribute");
  return value;
}

DeviceInfo query_info(const Runtime& r, int ordinal) {
  DeviceInfo info;
  info.ordinal = ordinal;
  char name[256] = {};
  check(r.device_name(name, sizeof(name), ordinal), "hipDeviceGetName");
  info.name = name;
  info.multiprocessors = device_attribute(r, attribute::multiprocessor_count, ordinal);
  info.l2_bytes = static_cast<std::size_t>(device_attribute(r, attribute::l2_cache_size, ordinal));
  // AMD has no opt-in for LDS: the per-block maximum is usable by any launch.
  info.max_shared_per_block = device_attribute(r, attribute::max_shared_memory_per_block, ordinal);
  check(r.device_total_mem(&info.total_memory, ordinal), "hipDeviceTotalMem");
  // The arch is taken as the device reports it, not validated: info must describe any AMD GPU.
  info.target = Target{mlajit::Backend::hip, device_arch_name(r, ordinal, info.multiprocessors)};
  int driver = 0;
  check(r.driver_version(&driver), "hipDriverGetVersion");
  info.driver_version = hip_version_text(driver);
  return info;
}

// ---- kernel / module / device ---------------------------------------------------------------
class HipKernel final : public Kernel {
 public:
  HipKernel(std::string name, hipFunction_t function, int ordinal, int max_shared)
      : name_(std::move(name)), function_(function), ordinal_(ordinal), max_shared_(max_shared) {}

  const std::string& name() const override { return name_; }

  KernelResources resources() const override {
    KernelResources r;
    r.origin = "driver";
    r.registers = attribute(function_attribute::num_regs);
    r.shared_bytes = attribute(function_attribute::shared_size_bytes);
    r.local_bytes = attribute(function_attribute::local_size_bytes);
    return r;
  }

  // Dynamic LDS needs no opt-in on AMD; a request above the device limit would only fail at
  // launch, so it is refused here with the numbers.
  void reserve_shared(int bytes) override {
    if (bytes <= max_shared_) return;
    throw Error(ErrorCode::device_error,
                fmt::format("kernel {} asks for {} bytes of LDS; HIP device {} allows {} per block", name_,
                            bytes, ordinal_, max_shared_));
  }

  // The null stream is the current device's, so the module's device is made current first. HIP
  // has no programmatic dependent launch: every launch is in stream order.
  void launch(Dim3 grid, Dim3 block, int shared_bytes, Stream stream, void** args, LaunchOrder /*order*/) override {
    const Runtime& r = runtime();
    check(r.set_device(ordinal_), "hipSetDevice");
    check(r.module_launch_kernel(function_, grid.x, grid.y, grid.z, block.x, block.y, block.z,
                                 static_cast<unsigned>(shared_bytes), static_cast<hipStream_t>(stream), args,
                                 nullptr),
          "hipModuleLaunchKernel");
  }

 private:
  int attribute(int which) const {
    int value = -1;
    check(runtime().func_get_attribute(&value, which, function_), "hipFuncGetAttribute");
    return value;
  }

  std::string name_;
  hipFunction_t function_;
  int ordinal_;
  int max_shared_;
};

class HipModule final : public Module {
 public:
  // hipModuleLoadData takes no size and does not promise to copy the image, so the module keeps
  // its own copy for as long as it lives.
  HipModule(std::vector<std::uint8_t> image, int ordinal, int max_shared)
      : image_(std::move(image)), ordinal_(ordinal), max_shared_(max_shared) {
    check(runtime().module_load_data(&module_, image_.data()), "hipModuleLoadData");
  }

  ~HipModule() override {
    const Runtime& r = runtime();
    r.set_device(ordinal_);
    r.module_unload(module_);
  }

  Kernel& kernel(const std::string& entry) override {
    std::lock_guard lock(mutex_);
    for (const auto& k : kernels_) {
      if (k->name() == entry) return *k;
    }
    hipFunction_t function = nullptr;
    if (hipError_t e = runtime().module_get_function(&function, module_, entry.c_str()); e != k_hip_success) {
      throw Error(ErrorCode::device_error, fmt::format("code object has no kernel named '{}' ({})", entry,
                                                       describe(e, "hipModuleGetFunction")));
    }
    kernels_.push_back(std::make_unique<HipKernel>(entry, function, ordinal_, max_shared_));
    return *kernels_.back();
  }

 private:
  std::vector<std::uint8_t> image_;
  hipModule_t module_ = nullptr;
  int ordinal_;
  int max_shared_;
  std::mutex mutex_;
  std::vector<std::unique_ptr<HipKernel>> kernels_;
};

class HipDevice final : public Device {
 public:
  explicit HipDevice(int ordinal) : runtime_(require_runtime()) {
    check(runtime_.set_device(ordinal), "hipSetDevice");
    info_ = query_info(runtime_, ordinal);
  }

  const DeviceInfo& info() const override { return info_; }

  std::unique_ptr<Module> load(const CodeObject& code) override {
    if (code.format != "hsaco") {
      throw Error(ErrorCode::invalid_argument,
                  fmt::format("a HIP device loads hsaco code objects, not '{}'", code.format));
    }
    make_current();
    return std::make_unique<HipModule>(code.binary, info_.ordinal, info_.max_shared_per_block);
  }

  void* allocate(std::size_t bytes) override {
    make_current();
    void* pointer = nullptr;
    check(runtime_.mem_alloc(&pointer, bytes), "hipMalloc");
    return pointer;
  }

  void release(void* device_pointer) noexcept override { runtime_.mem_free(device_pointer); }

  void copy_to_device(void* dst, const void* src, std::size_t bytes) override {
    make_current();
    // hipMemcpyHtoD takes a non-const source pointer but only reads it.
    check(runtime_.memcpy_htod(dst, const_cast<void*>(src), bytes), "hipMemcpyHtoD");
  }

  void copy_to_host(void* dst, const void* src, std::size_t bytes) override {
    make_current();
    check(runtime_.memcpy_dtoh(dst, const_cast<void*>(src), bytes), "hipMemcpyDtoH");
  }

  void fill_bytes(void* dst, std::uint8_t value, std::size_t bytes) override {
    make_current();
    check(runtime_.mem_set(dst, value, bytes), "hipMemset");
  }

  void synchronize() override {
    make_current();
    check(runtime_.device_synchronize(), "hipDeviceSynchronize");
  }

  void make_current() override { check(runtime_.set_device(info_.ordinal), "hipSetDevice"); }

 private:
  const Runtime& runtime_;
  DeviceInfo info_;
};

}  // namespace

int visible_device_count() { return discovery().count; }

std::string device_unavailable_reason() { return discovery().reason; }

std::unique_ptr<Device> open_hip_device(int ordinal) { return std::make_unique<HipDevice>(ordinal); }

}  // namespace mlajit::runtime::hip
