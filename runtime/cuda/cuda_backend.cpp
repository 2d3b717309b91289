// CUDA backend over the driver API and NVRTC. Both libraries are dlopen()ed on first use;
// cuda.h / nvrtc.h are used for their types only, nothing links against libcuda or libnvrtc.
#include "runtime/cuda/cuda_backend.hpp"
#include "runtime/cuda/ptxas_log.hpp"

#include <cuda.h>
#include <dlfcn.h>
#include <nvrtc.h>

#include <chrono>
#include <mutex>
#include <algorithm>
#include <charconv>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "cache/environment.hpp"
#include "codegen/error.hpp"

namespace mlajit::runtime::cuda {

namespace {

void* open_first(const std::vector<std::string>& names, std::string& tried) {
  for (const std::string& name : names) {
    if (void* handle = dlopen(name.c_str(), RTLD_NOW | RTLD_LOCAL)) return handle;
    tried += (tried.empty() ? "" : ", ") + name;
  }
  return nullptr;
}

template <class Fn>
Fn symbol(void* library, const char* name) {
  return reinterpret_cast<Fn>(dlsym(library, name));
}

// ---- NVRTC -------------------------------------------------------------------------------
struct Nvrtc {
  decltype(&nvrtcVersion) version = nullptr;
  decltype(&nvrtcCreateProgram) create = nullptr;
  decltype(&nvrtcCompileProgram) compile = nullptr;
  decltype(&nvrtcGetProgramLogSize) log_size = nullptr;
  decltype(&nvrtcGetProgramLog) log = nullptr;
  decltype(&nvrtcGetCUBINSize) cubin_size = nullptr;
  decltype(&nvrtcGetCUBIN) cubin = nullptr;
  decltype(&nvrtcDestroyProgram) destroy = nullptr;
  decltype(&nvrtcGetErrorString) error_string = nullptr;
  std::string failure;  // why loading failed; empty when loaded

  bool loaded() const { return failure.empty(); }
};

const Nvrtc& nvrtc() {
  static const Nvrtc lib = [] {
    Nvrtc n;
    std::vector<std::string> names;
    if (auto path = read_environment("MLAJIT_NVRTC_LIBRARY")) names.push_back(*path);
    for (const char* name : {"libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so",
                             "/usr/local/cuda/lib64/libnvrtc.so.13", "/usr/local/cuda/lib64/libnvrtc.so.12",
                             "/usr/local/cuda/lib64/libnvrtc.so"}) {
      names.emplace_back(name);
    }
    std::string tried;
    void* h = open_first(names, tried);
    if (h == nullptr) {
      n.failure = "NVRTC not found (tried " + tried + "); set MLAJIT_NVRTC_LIBRARY to libnvrtc.so";
      return n;
    }
    n.version = symbol<decltype(n.version)>(h, "nvrtcVersion");
    n.create = symbol<decltype(n.create)>(h, "nvrtcCreateProgram");
    n.compile = symbol<decltype(n.compile)>(h, "nvrtcCompileProgram");
    n.log_size = symbol<decltype(n.log_size)>(h, "nvrtcGetProgramLogSize");
    n.log = symbol<decltype(n.log)>(h, "nvrtcGetProgramLog");
    n.cubin_size = symbol<decltype(n.cubin_size)>(h, "nvrtcGetCUBINSize");
    n.cubin = symbol<decltype(n.cubin)>(h, "nvrtcGetCUBIN");
    n.destroy = symbol<decltype(n.destroy)>(h, "nvrtcDestroyProgram");
    n.error_string = symbol<decltype(n.error_string)>(h, "nvrtcGetErrorString");
    if (!n.version || !n.create || !n.compile || !n.log_size || !n.log || !n.cubin_size || !n.cubin ||
        !n.destroy || !n.error_string) {
      n.failure = "the loaded NVRTC library lacks required symbols (NVRTC 11.2 or later needed)";
    }
    return n;
  }();
  return lib;
}

// ---- driver ------------------------------------------------------------------------------
struct Driver {
  decltype(&cuInit) init = nullptr;
  decltype(&cuDriverGetVersion) driver_version = nullptr;
  decltype(&cuDeviceGetCount) device_count = nullptr;
  decltype(&cuDeviceGet) device_get = nullptr;
  decltype(&cuDeviceGetName) device_name = nullptr;
  decltype(&cuDeviceGetAttribute) device_attribute = nullptr;
  decltype(&cuDeviceTotalMem) total_mem = nullptr;
  decltype(&cuDevicePrimaryCtxRetain) primary_retain = nullptr;
  decltype(&cuDevicePrimaryCtxRelease) primary_release = nullptr;
  decltype(&cuCtxSetCurrent) set_current = nullptr;
  decltype(&cuCtxSynchronize) synchronize = nullptr;
  decltype(&cuModuleLoadData) module_load = nullptr;
  decltype(&cuModuleUnload) module_unload = nullptr;
  decltype(&cuModuleGetFunction) module_function = nullptr;
  decltype(&cuFuncGetAttribute) func_attribute = nullptr;
  decltype(&cuFuncSetAttribute) func_set_attribute = nullptr;
  decltype(&cuLaunchKernel) launch = nullptr;
  decltype(&cuLaunchKernelEx) launch_ex = nullptr;  // optional: programmatic dependent launch (CUDA 12+)
  decltype(&cuMemAlloc) mem_alloc = nullptr;
  decltype(&cuMemFree) mem_free = nullptr;
  decltype(&cuMemcpyHtoD) copy_htod = nullptr;
  decltype(&cuMemcpyDtoH) copy_dtoh = nullptr;
  decltype(&cuMemsetD8) memset_d8 = nullptr;
  decltype(&cuGetErrorString) error_string = nullptr;
  decltype(&cuEventCreate) event_create = nullptr;
  decltype(&cuEventDestroy) event_destroy = nullptr;
  decltype(&cuEventRecord) event_record = nullptr;
  decltype(&cuEventSynchronize) event_synchronize = nullptr;
  decltype(&cuEventElapsedTime) event_elapsed = nullptr;
  // Streams and graph capture: optional (a driver without them still runs plain launches).
  decltype(&cuStreamCreate) stream_create = nullptr;
  decltype(&cuStreamDestroy) stream_destroy = nullptr;
  decltype(&cuStreamBeginCapture) begin_capture = nullptr;
  decltype(&cuStreamEndCapture) end_capture = nullptr;
  decltype(&cuGraphInstantiate) graph_instantiate = nullptr;
  decltype(&cuGraphLaunch) graph_launch = nullptr;
  decltype(&cuGraphDestroy) graph_destroy = nullptr;
  decltype(&cuGraphExecDestroy) graph_exec_destroy = nullptr;
  std::string failure;

  bool has_graphs() const {
    return stream_create && stream_destroy && begin_capture && end_capture && graph_instantiate && graph_launch &&
           graph_destroy && graph_exec_destroy;
  }

  bool loaded() const { return failure.empty(); }
};

const Driver& driver() {
  static const Driver lib = [] {
    Driver d;
    std::vector<std::string> names;
    if (auto path = read_environment("MLAJIT_CUDA_LIBRARY")) names.push_back(*path);
    names.emplace_back("libcuda.so.1");
    names.emplace_back("libcuda.so");
    std::string tried;
    void* h = open_first(names, tried);
    if (h == nullptr) {
      d.failure = "CUDA driver not found (tried " + tried + ")";
      return d;
    }
    // cuda.h maps several names to versioned symbols; dlsym needs the versioned ones.
    d.init = symbol<decltype(d.init)>(h, "cuInit");
    d.driver_version = symbol<decltype(d.driver_version)>(h, "cuDriverGetVersion");
    d.device_count = symbol<decltype(d.device_count)>(h, "cuDeviceGetCount");
    d.device_get = symbol<decltype(d.device_get)>(h, "cuDeviceGet");
    d.device_name = symbol<decltype(d.device_name)>(h, "cuDeviceGetName");
    d.device_attribute = symbol<decltype(d.device_attribute)>(h, "cuDeviceGetAttribute");
    d.total_mem = symbol<decltype(d.total_mem)>(h, "cuDeviceTotalMem_v2");
    d.primary_retain = symbol<decltype(d.primary_retain)>(h, "cuDevicePrimaryCtxRetain");
    d.primary_release = symbol<decltype(d.primary_release)>(h, "cuDevicePrimaryCtxRelease_v2");
    d.set_current = symbol<decltype(d.set_current)>(h, "cuCtxSetCurrent");
    d.synchronize = symbol<decltype(d.synchronize)>(h, "cuCtxSynchronize");
    d.module_load = symbol<decltype(d.module_load)>(h, "cuModuleLoadData");
    d.module_unload = symbol<decltype(d.module_unload)>(h, "cuModuleUnload");
    d.module_function = symbol<decltype(d.module_function)>(h, "cuModuleGetFunction");
    d.func_attribute = symbol<decltype(d.func_attribute)>(h, "cuFuncGetAttribute");
    d.func_set_attribute = symbol<decltype(d.func_set_attribute)>(h, "cuFuncSetAttribute");
    d.launch = symbol<decltype(d.launch)>(h, "cuLaunchKernel");
    d.launch_ex = symbol<decltype(d.launch_ex)>(h, "cuLaunchKernelEx");
    d.mem_alloc = symbol<decltype(d.mem_alloc)>(h, "cuMemAlloc_v2");
    d.mem_free = symbol<decltype(d.mem_free)>(h, "cuMemFree_v2");
    d.copy_htod = symbol<decltype(d.copy_htod)>(h, "cuMemcpyHtoD_v2");
    d.copy_dtoh = symbol<decltype(d.copy_dtoh)>(h, "cuMemcpyDtoH_v2");
    d.memset_d8 = symbol<decltype(d.memset_d8)>(h, "cuMemsetD8_v2");
    d.error_string = symbol<decltype(d.error_string)>(h, "cuGetErrorString");
    d.event_create = symbol<decltype(d.event_create)>(h, "cuEventCreate");
    d.event_destroy = symbol<decltype(d.event_destroy)>(h, "cuEventDestroy_v2");
    d.event_record = symbol<decltype(d.event_record)>(h, "cuEventRecord");
    d.event_synchronize = symbol<decltype(d.event_synchronize)>(h, "cuEventSynchronize");
    d.event_elapsed = symbol<decltype(d.event_elapsed)>(h, "cuEventElapsedTime_v2");
    if (d.event_elapsed == nullptr) d.event_elapsed = symbol<decltype(d.event_elapsed)>(h, "cuEventElapsedTime");
    d.stream_create = symbol<decltype(d.stream_create)>(h, "cuStreamCreate");
    d.stream_destroy = symbol<decltype(d.stream_destroy)>(h, "cuStreamDestroy_v2");
    d.begin_capture = symbol<decltype(d.begin_capture)>(h, "cuStreamBeginCapture_v2");
    d.end_capture = symbol<decltype(d.end_capture)>(h, "cuStreamEndCapture");
    d.graph_instantiate = symbol<decltype(d.graph_instantiate)>(h, "cuGraphInstantiateWithFlags");
    d.graph_launch = symbol<decltype(d.graph_launch)>(h, "cuGraphLaunch");
    d.graph_destroy = symbol<decltype(d.graph_destroy)>(h, "cuGraphDestroy");
    d.graph_exec_destroy = symbol<decltype(d.graph_exec_destroy)>(h, "cuGraphExecDestroy");
    const void* all[] = {(void*)d.init, (void*)d.driver_version, (void*)d.device_count, (void*)d.device_get,
                         (void*)d.device_name, (void*)d.device_attribute, (void*)d.total_mem,
                         (void*)d.primary_retain, (void*)d.primary_release, (void*)d.set_current,
                         (void*)d.synchronize, (void*)d.module_load, (void*)d.module_unload,
                         (void*)d.module_function, (void*)d.func_attribute, (void*)d.func_set_attribute,
                         (void*)d.launch, (void*)d.mem_alloc, (void*)d.mem_free, (void*)d.copy_htod,
                         (void*)d.copy_dtoh, (void*)d.memset_d8, (void*)d.error_string,
                         (void*)d.event_create, (void*)d.event_destroy, (void*)d.event_record,
                         (void*)d.event_synchronize, (void*)d.event_elapsed};
    for (const void* fn : all) {
      if (fn == nullptr) {
        d.failure = "the loaded CUDA driver lacks required symbols (driver too old)";
        return d;
      }
    }
    if (CUresult r = d.init(0); r != CUDA_SUCCESS) {
      const char* text = nullptr;
      d.error_string(r, &text);
      d.failure = fmt::format("cuInit failed: {}", text ? text : "unknown error");
    }
    return d;
  }();
  return lib;
}

void check(CUresult result, const char* call) {
  if (result == CUDA_SUCCESS) return;
  const char* text = nullptr;
  driver().error_string(result, &text);
  throw Error(ErrorCode::device_error, fmt::format("{} failed: {} ({})", call, text ? text : "unknown error", int(result)));
}

const Driver& require_driver() {
  const Driver& d = driver();
  if (!d.loaded()) throw Error(ErrorCode::backend_unavailable, d.failure);
  return d;
}

const Driver& require_graphs() {
  const Driver& d = require_driver();
  if (!d.has_graphs()) {
    throw Error(ErrorCode::unsupported, "the loaded CUDA driver lacks stream capture / graph symbols (CUDA 11.4+ needed)");
  }
  return d;
}

// ---- kernel / module / device ------------------------------------------------------------
class CudaKernel final : public Kernel {
 public:
  CudaKernel(std::string name, CUfunction function, bool programmatic_launch)
      : name_(std::move(name)), function_(function), programmatic_launch_(programmatic_launch) {}
  const std::string& name() const override { return name_; }

  KernelResources resources() const override {
    const Driver& d = driver();
    KernelResources r;
    r.origin = "driver";
    int value = 0;
    check(d.func_attribute(&value, CU_FUNC_ATTRIBUTE_NUM_REGS, function_), "cuFuncGetAttribute");
    r.registers = value;
    check(d.func_attribute(&value, CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES, function_), "cuFuncGetAttribute");
    r.shared_bytes = value;
    check(d.func_attribute(&value, CU_FUNC_ATTRIBUTE_LOCAL_SIZE_BYTES, function_), "cuFuncGetAttribute");
    r.local_bytes = value;
    return r;
  }

  void reserve_shared(int bytes) override {
    std::lock_guard lock(mutex_);
    if (bytes <= reserved_shared_) return;
    check(driver().func_set_attribute(function_, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, bytes),
          "cuFuncSetAttribute(MAX_DYNAMIC_SHARED_SIZE_BYTES)");
    reserved_shared_ = bytes;
  }

  void launch(Dim3 grid, Dim3 block, int shared_bytes, Stream stream, void** args, LaunchOrder order) override {
    if (order == LaunchOrder::overlap_previous && programmatic_launch_) {
      CUlaunchAttribute attribute{};
      attribute.id = CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION;
      attribute.value.programmaticStreamSerializationAllowed = 1;
      CUlaunchConfig config{};
      config.gridDimX = grid.x;
      config.gridDimY = grid.y;
      config.gridDimZ = grid.z;
      config.blockDimX = block.x;
      config.blockDimY = block.y;
      config.blockDimZ = block.z;
      config.sharedMemBytes = unsigned(shared_bytes);
      config.hStream = static_cast<CUstream>(stream);
      config.attrs = &attribute;
      config.numAttrs = 1;
      check(driver().launch_ex(&config, function_, args, nullptr), "cuLaunchKernelEx (programmatic dependent)");
      return;
    }
    check(driver().launch(function_, grid.x, grid.y, grid.z, block.x, block.y, block.z, unsigned(shared_bytes),
                          static_cast<CUstream>(stream), args, nullptr),
          "cuLaunchKernel");
  }

 private:
  std::string name_;
  CUfunction function_;
  std::mutex mutex_;
  bool programmatic_launch_;
  int reserved_shared_ = 48 * 1024;  // available without opting in
};

class CudaModule final : public Module {
 public:
  CudaModule(CUmodule module, bool programmatic_launch) : module_(module), programmatic_launch_(programmatic_launch) {}
  ~CudaModule() override { driver().module_unload(module_); }

  Kernel& kernel(const std::string& entry) override {
    std::lock_guard lock(mutex_);
    for (auto& k : kernels_) {
      if (k->name() == entry) return *k;
    }
    CUfunction f = nullptr;
    CUresult r = driver().module_function(&f, module_, entry.c_str());
    if (r != CUDA_SUCCESS) {
      throw Error(ErrorCode::device_error, "code object has no kernel named '" + entry + "'");
    }
    kernels_.push_back(std::make_unique<CudaKernel>(entry, f, programmatic_launch_));
    return *kernels_.back();
  }

 private:
  CUmodule module_;
  bool programmatic_launch_;
  std::mutex mutex_;
  std::vector<std::unique_ptr<CudaKernel>> kernels_;
};

std::string arch_for(int major, int minor) {
  // Hopper and later get the arch-specific target so wgmma / setmaxnreg are available.
  if (major >= 9) return fmt::format("sm_{}{}a", major, minor);
  return fmt::format("sm_{}{}", major, minor);
}

class CudaDevice final : public Device {
 public:
  explicit CudaDevice(int ordinal) {
    const Driver& d = require_driver();
    check(d.device_get(&device_, ordinal), "cuDeviceGet");
    check(d.primary_retain(&context_, device_), "cuDevicePrimaryCtxRetain");
    make_current();
    char name[256] = {};
    check(d.device_name(name, sizeof(name), device_), "cuDeviceGetName");
    int major = 0, minor = 0, sms = 0, l2 = 0, shared_optin = 0, version = 0;
    check(d.device_attribute(&major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, device_), "cuDeviceGetAttribute");
    check(d.device_attribute(&minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, device_), "cuDeviceGetAttribute");
    check(d.device_attribute(&sms, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, device_), "cuDeviceGetAttribute");
    check(d.device_attribute(&l2, CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE, device_), "cuDeviceGetAttribute");
    check(d.device_attribute(&shared_optin, CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN, device_),
          "cuDeviceGetAttribute");
    check(d.driver_version(&version), "cuDriverGetVersion");
    std::size_t memory = 0;
    check(d.total_mem(&memory, device_), "cuDeviceTotalMem");
    info_.ordinal = ordinal;
    info_.name = name;
    info_.target = Target{mlajit::Backend::cuda, arch_for(major, minor)};
    info_.multiprocessors = sms;
    info_.total_memory = memory;
    info_.l2_bytes = std::size_t(l2);
    info_.max_shared_per_block = shared_optin;
    info_.driver_version = fmt::format("{}.{}", version / 1000, (version % 1000) / 10);
    // Programmatic dependent launch: Hopper and later, a driver with cuLaunchKernelEx, not disabled.
    programmatic_launch_ = major >= 9 && d.launch_ex != nullptr && read_environment("MLAJIT_DISABLE_PDL") != "1";
  }
  ~CudaDevice() override { driver().primary_release(device_); }

  const DeviceInfo& info() const override { return info_; }

  std::unique_ptr<Module> load(const CodeObject& code) override {
    make_current();
    CUmodule module = nullptr;
    check(driver().module_load(&module, code.binary.data()), "cuModuleLoadData");
    return std::make_unique<CudaModule>(module, programmatic_launch_);
  }

  void* allocate(std::size_t bytes) override {
    make_current();
    CUdeviceptr p = 0;
    check(driver().mem_alloc(&p, bytes), "cuMemAlloc");
    return reinterpret_cast<void*>(p);
  }
  void release(void* p) noexcept override { driver().mem_free(reinterpret_cast<CUdeviceptr>(p)); }
  void copy_to_device(void* dst, const void* src, std::size_t bytes) override {
    make_current();
    check(driver().copy_htod(reinterpret_cast<CUdeviceptr>(dst), src, bytes), "cuMemcpyHtoD");
  }
  void copy_to_host(void* dst, const void* src, std::size_t bytes) override {
    make_current();
    check(driver().copy_dtoh(dst, reinterpret_cast<CUdeviceptr>(src), bytes), "cuMemcpyDtoH");
  }
  void fill_bytes(void* dst, std::uint8_t value, std::size_t bytes) override {
    make_current();
    check(driver().memset_d8(reinterpret_cast<CUdeviceptr>(dst), value, bytes), "cuMemsetD8");
  }
  void synchronize() override {
    make_current();
    check(driver().synchronize(), "cuCtxSynchronize");
  }
  void make_current() override { check(driver().set_current(context_), "cuCtxSetCurrent"); }

  void* create_event() override {
    make_current();
    CUevent e = nullptr;
    check(driver().event_create(&e, CU_EVENT_DEFAULT), "cuEventCreate");
    return e;
  }
  void destroy_event(void* e) noexcept override { driver().event_destroy(static_cast<CUevent>(e)); }
  void record_event(void* e, Stream stream) override {
    check(driver().event_record(static_cast<CUevent>(e), static_cast<CUstream>(stream)), "cuEventRecord");
  }
  float elapsed_ms(void* start, void* end) override {
    check(driver().event_synchronize(static_cast<CUevent>(end)), "cuEventSynchronize");
    float ms = 0;
    check(driver().event_elapsed(&ms, static_cast<CUevent>(start), static_cast<CUevent>(end)), "cuEventElapsedTime");
    return ms;
  }

  Stream create_stream() override {
    const Driver& d = require_graphs();
    make_current();
    CUstream stream = nullptr;
    check(d.stream_create(&stream, CU_STREAM_NON_BLOCKING), "cuStreamCreate");
    return stream;
  }
  void destroy_stream(Stream stream) noexcept override {
    if (stream != nullptr && driver().stream_destroy != nullptr) driver().stream_destroy(static_cast<CUstream>(stream));
  }
  void begin_capture(Stream stream) override {
    const Driver& d = require_graphs();
    if (stream == nullptr) throw_invalid("stream", "must not be the default stream for graph capture", "null");
    make_current();
    check(d.begin_capture(static_cast<CUstream>(stream), CU_STREAM_CAPTURE_MODE_GLOBAL), "cuStreamBeginCapture");
  }
  void* end_capture(Stream stream) override {
    const Driver& d = require_graphs();
    CUgraph graph = nullptr;
    check(d.end_capture(static_cast<CUstream>(stream), &graph), "cuStreamEndCapture");
    CUgraphExec exec = nullptr;
    const CUresult r = d.graph_instantiate(&exec, graph, 0);
    d.graph_destroy(graph);  // the executable graph keeps what it needs
    check(r, "cuGraphInstantiate");
    return exec;
  }
  void launch_graph(void* graph, Stream stream) override {
    check(require_graphs().graph_launch(static_cast<CUgraphExec>(graph), static_cast<CUstream>(stream)), "cuGraphLaunch");
  }
  void destroy_graph(void* graph) noexcept override {
    if (graph != nullptr && driver().graph_exec_destroy != nullptr) {
      driver().graph_exec_destroy(static_cast<CUgraphExec>(graph));
    }
  }

 private:
  CUdevice device_ = 0;
  CUcontext context_ = nullptr;
  DeviceInfo info_;
  bool programmatic_launch_ = false;
};

// ---- backend -----------------------------------------------------------------------------
class CudaBackend final : public Backend {
 public:
  mlajit::Backend kind() const override { return mlajit::Backend::cuda; }

  bool compiler_available() const override { return nvrtc().loaded(); }

  CompilerInfo compiler_info() override {
    const Nvrtc& n = require_nvrtc();
    int major = 0, minor = 0;
    n.version(&major, &minor);
    return CompilerInfo{"nvrtc", fmt::format("{}.{}", major, minor)};
  }

  CodeObject compile(const Source& source, const Target& target) override {
    if (target.backend != mlajit::Backend::cuda) {
      throw Error(ErrorCode::invalid_argument, "the CUDA backend cannot compile for " + target.arch);
    }
    const Nvrtc& n = require_nvrtc();
    const auto start = std::chrono::steady_clock::now();
    std::vector<const char*> header_texts, header_names;
    std::vector<std::string> owned_texts;
    owned_texts.reserve(source.headers.size());
    for (const SourceHeader& h : source.headers) {
      owned_texts.emplace_back(h.text);
      header_texts.push_back(owned_texts.back().c_str());
      header_names.push_back(h.include_name.c_str());
    }
    nvrtcProgram program = nullptr;
    const std::string file_name = source.kernel_name + ".cu";
    if (nvrtcResult r = n.create(&program, source.text.c_str(), file_name.c_str(), int(header_texts.size()),
                                 header_texts.data(), header_names.data());
        r != NVRTC_SUCCESS) {
      throw Error(ErrorCode::compile_failed, fmt::format("nvrtcCreateProgram: {}", n.error_string(r)));
    }
    const std::vector<std::string> options = compile_options(target);
    std::vector<const char*> option_ptrs;
    for (const std::string& o : options) option_ptrs.push_back(o.c_str());
    const nvrtcResult result = n.compile(program, int(option_ptrs.size()), option_ptrs.data());
    std::size_t log_size = 0;
    n.log_size(program, &log_size);
    std::string log(log_size, '\0');
    if (log_size > 0) n.log(program, log.data());
    while (!log.empty() && (log.back() == '\0' || log.back() == '\n')) log.pop_back();
    if (result != NVRTC_SUCCESS) {
      n.destroy(&program);
      throw Error(ErrorCode::compile_failed, fmt::format("NVRTC failed to compile {} for {}: {}\n{}",
                                                         source.kernel_name, target.arch, n.error_string(result), log));
    }
    CodeObject code;
    std::size_t size = 0;
    n.cubin_size(program, &size);
    code.binary.resize(size);
    n.cubin(program, reinterpret_cast<char*>(code.binary.data()));
    n.destroy(&program);
    code.format = "cubin";
    code.log = log;
    code.resources = parse_ptxas_log(log);
    code.compile_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    return code;
  }

  int device_count() override {
    const Driver& d = driver();
    if (!d.loaded()) return 0;
    int count = 0;
    if (d.device_count(&count) != CUDA_SUCCESS) return 0;
    return count;
  }

  std::string unavailable_reason() override {
    const Driver& d = driver();
    if (!d.loaded()) return d.failure;
    return device_count() == 0 ? "the CUDA driver reports no device" : "";
  }

  std::unique_ptr<Device> open_device(int ordinal) override {
    const int count = device_count();
    if (ordinal < 0 || ordinal >= count) {
      if (count == 0) throw Error(ErrorCode::backend_unavailable, "no CUDA device: " + unavailable_reason());
      throw Error(ErrorCode::invalid_argument,
                  fmt::format("invalid argument 'device': must be in [0, {}) (got {})", count, ordinal));
    }
    return std::make_unique<CudaDevice>(ordinal);
  }

  std::vector<std::string> compile_options(const Target& target) const override {
    std::vector<std::string> options = {"--gpu-architecture=" + target.arch, "-std=c++17", "--ptxas-options=-v"};
    for (std::string& o : extra_compile_options()) options.push_back(std::move(o));
    return options;
  }

 private:
  static const Nvrtc& require_nvrtc() {
    const Nvrtc& n = nvrtc();
    if (!n.loaded()) throw Error(ErrorCode::backend_unavailable, n.failure);
    return n;
  }
};

}  // namespace

Backend& instance() {
  static CudaBackend backend;
  return backend;
}

}  // namespace mlajit::runtime::cuda
