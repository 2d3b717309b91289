// Finds libamdhip64 and hipRTC with dlopen and binds the entry points of hip_library.hpp.
#include "runtime/hip/hip_library.hpp"

#include <dlfcn.h>

#include <initializer_list>
#include <optional>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "cache/environment.hpp"
#include "codegen/error.hpp"

namespace mlajit::runtime::hip {

namespace {

constexpr const char* k_hip_variable = "MLAJIT_HIP_LIBRARY";
constexpr const char* k_hiprtc_variable = "MLAJIT_HIPRTC_LIBRARY";

struct Opened {
  void* handle = nullptr;
  std::string path;
  std::string failure;  // every name tried with dlerror's reason
};

// `name`, plus dlerror's reason unless it is plain absence (a missing dependency, a wrong ELF
// class and the like are worth reading).
std::string describe_attempt(const std::string& name) {
  const char* error = dlerror();
  std::string reason = error != nullptr ? error : "unknown dlopen error";
  if (reason.rfind(name + ": ", 0) == 0) reason.erase(0, name.size() + 2);
  if (reason == "cannot open shared object file: No such file or directory") return name;
  return fmt::format("{} ({})", name, reason);
}

// An explicit path from `variable` is the only candidate when set: silently loading another
// library than the one a user named would hide a typo or a wrong ROCm install.
Opened open_first(const char* variable, std::initializer_list<const char*> names) {
  std::vector<std::string> candidates;
  const std::optional<std::string> chosen = read_environment(variable);
  if (chosen) {
    candidates.push_back(*chosen);
  } else {
    candidates.assign(names.begin(), names.end());
  }
  Opened opened;
  std::vector<std::string> attempts;
  for (const std::string& name : candidates) {
    if (void* handle = dlopen(name.c_str(), RTLD_NOW | RTLD_LOCAL)) {
      opened.handle = handle;
      opened.path = name;
      return opened;
    }
    attempts.push_back(describe_attempt(name));
  }
  const std::string& first = attempts.front();
  opened.failure =
      chosen ? fmt::format("could not load {}={}", variable,
                           first == *chosen ? first + " (no such file)" : first)
             : fmt::format("tried {}; set {} to the library's path", fmt::join(attempts, ", "), variable);
  return opened;
}

const Opened& amdhip64() {
  static const Opened opened =
      open_first(k_hip_variable,
                 {"libamdhip64.so", "libamdhip64.so.6", "libamdhip64.so.5", "/opt/rocm/lib/libamdhip64.so"});
  return opened;
}

// Binds `name` into `fn`; a required symbol that is absent is added to `missing`.
template <class Fn>
void bind(void* handle, const char* name, Fn& fn, std::string* missing) {
  fn = reinterpret_cast<Fn>(dlsym(handle, name));
  if (fn == nullptr && missing != nullptr) *missing += (missing->empty() ? "" : ", ") + std::string(name);
}

std::string bind_runtime(Runtime& r) {
  std::string missing;
  void* h = r.handle;
  bind(h, "hipInit", r.init, &missing);
  bind(h, "hipRuntimeGetVersion", r.runtime_version, &missing);
  bind(h, "hipDriverGetVersion", r.driver_version, &missing);
  bind(h, "hipGetDeviceCount", r.device_count, &missing);
  bind(h, "hipSetDevice", r.set_device, &missing);
  bind(h, "hipDeviceGetName", r.device_name, &missing);
  bind(h, "hipDeviceGetAttribute", r.device_attribute, &missing);
  bind(h, "hipDeviceTotalMem", r.device_total_mem, &missing);
  bind(h, "hipDeviceSynchronize", r.device_synchronize, &missing);
  bind(h, "hipMalloc", r.mem_alloc, &missing);
  bind(h, "hipFree", r.mem_free, &missing);
  bind(h, "hipMemcpyHtoD", r.memcpy_htod, &missing);
  bind(h, "hipMemcpyDtoH", r.memcpy_dtoh, &missing);
  bind(h, "hipMemset", r.mem_set, &missing);
  bind(h, "hipModuleLoadData", r.module_load_data, &missing);
  bind(h, "hipModuleUnload", r.module_unload, &missing);
  bind(h, "hipModuleGetFunction", r.module_get_function, &missing);
  bind(h, "hipFuncGetAttribute", r.func_get_attribute, &missing);
  bind(h, "hipModuleLaunchKernel", r.module_launch_kernel, &missing);
  bind(h, "hipGetErrorString", r.error_string, &missing);
  // ROCm 6 renamed the property query per struct layout; ROCm 5 has only the plain name.
  bind(h, "hipGetDevicePropertiesR0600", r.device_properties_r0600, nullptr);
  bind(h, "hipGetDevicePropertiesR0000", r.device_properties_r0000, nullptr);
  if (r.device_properties_r0000 == nullptr && r.device_properties_r0600 == nullptr) {
    bind(h, "hipGetDeviceProperties", r.device_properties_r0000, nullptr);
  }
  return missing;
}

Runtime load_runtime() {
  Runtime r;
  const Opened& lib = amdhip64();
  if (lib.handle == nullptr) {
    r.failure = "HIP runtime (libamdhip64) not found: " + lib.failure;
    return r;
  }
  r.handle = lib.handle;
  r.path = lib.path;
  if (std::string missing = bind_runtime(r); !missing.empty()) {
    r.failure = fmt::format("{} lacks {} (ROCm 5.0 or later needed)", r.path, missing);
    return r;
  }
  // hipRuntimeGetVersion does not initialise the runtime, so it is safe without a GPU.
  if (r.runtime_version(&r.version) != k_hip_success || r.version < k_min_runtime) {
    r.failure = fmt::format("{} is HIP {}; ROCm 5.0 or later is needed", r.path, hip_version_text(r.version));
  }
  return r;
}

std::string bind_compiler(Compiler& c) {
  std::string missing;
  void* h = c.handle;
  bind(h, "hiprtcVersion", c.version, &missing);
  bind(h, "hiprtcCreateProgram", c.create_program, &missing);
  bind(h, "hiprtcCompileProgram", c.compile_program, &missing);
  bind(h, "hiprtcDestroyProgram", c.destroy_program, &missing);
  bind(h, "hiprtcGetProgramLogSize", c.program_log_size, &missing);
  bind(h, "hiprtcGetProgramLog", c.program_log, &missing);
  bind(h, "hiprtcGetCodeSize", c.code_size, &missing);
  bind(h, "hiprtcGetCode", c.code, &missing);
  bind(h, "hiprtcGetErrorString", c.error_string, &missing);
  return missing;
}

// comgr as hipRTC already loaded it (RTLD_NOLOAD), else the first one that opens.
void* open_comgr() {
  constexpr const char* k_names[] = {"libamd_comgr.so.3", "libamd_comgr.so.2", "libamd_comgr.so"};
  for (int flags : {RTLD_NOW | RTLD_LOCAL | RTLD_NOLOAD, RTLD_NOW | RTLD_LOCAL}) {
    for (const char* name : k_names) {
      if (void* handle = dlopen(name, flags)) return handle;
    }
  }
  return nullptr;
}

// "gfx90a" for each "amdgcn-amd-amdhsa--gfx90a[:feature...]" ISA comgr lists.
std::vector<std::string> comgr_architectures() {
  std::vector<std::string> names;
  void* comgr = open_comgr();
  if (comgr == nullptr) return names;
  int (*isa_count)(std::size_t*) = nullptr;
  int (*isa_name)(std::size_t, const char**) = nullptr;
  bind(comgr, "amd_comgr_get_isa_count", isa_count, nullptr);
  bind(comgr, "amd_comgr_get_isa_name", isa_name, nullptr);
  std::size_t count = 0;
  if (isa_count == nullptr || isa_name == nullptr || isa_count(&count) != 0) return names;
  for (std::size_t i = 0; i < count; ++i) {
    const char* isa = nullptr;
    if (isa_name(i, &isa) != 0 || isa == nullptr) continue;
    const std::string text(isa);
    const std::size_t dashes = text.rfind("--");
    const std::string arch = text.substr(dashes == std::string::npos ? 0 : dashes + 2);
    names.push_back(arch.substr(0, arch.find(':')));
  }
  return names;
}

// ROCm 6 ships hipRTC as libhiprtc; ROCm 5.x (Debian's 5.2 here) keeps it inside libamdhip64.
Compiler find_compiler() {
  Compiler c;
  const Opened separate = open_first(
      k_hiprtc_variable, {"libhiprtc.so", "libhiprtc.so.6", "libhiprtc.so.5", "/opt/rocm/lib/libhiprtc.so"});
  if (separate.handle != nullptr) {
    c.handle = separate.handle;
    c.path = separate.path;
    if (std::string missing = bind_compiler(c); !missing.empty()) {
      c.failure = fmt::format("{} lacks {}", c.path, missing);
    }
    return c;
  }
  if (read_environment(k_hiprtc_variable)) {
    c.failure = "hipRTC not found: " + separate.failure;
    return c;
  }
  const Opened& hip = amdhip64();
  if (hip.handle == nullptr) {
    c.failure = fmt::format("hipRTC not found: no separate library ({}); no libamdhip64 to look in ({})",
                            separate.failure, hip.failure);
    return c;
  }
  c.handle = hip.handle;
  c.path = hip.path;
  if (std::string missing = bind_compiler(c); !missing.empty()) {
    c.failure = fmt::format("hipRTC not found: {} lacks {}, and no separate library ({})", hip.path, missing,
                            separate.failure);
  }
  return c;
}

Compiler load_compiler() {
  Compiler c = find_compiler();
  if (c.loaded()) c.architectures = comgr_architectures();
  return c;
}

}  // namespace

const Runtime& runtime() {
  static const Runtime r = load_runtime();
  return r;
}

const Compiler& compiler() {
  static const Compiler c = load_compiler();
  return c;
}

const Runtime& require_runtime() {
  const Runtime& r = runtime();
  if (!r.loaded()) throw Error(ErrorCode::backend_unavailable, r.failure);
  return r;
}

const Compiler& require_compiler() {
  const Compiler& c = compiler();
  if (!c.loaded()) throw Error(ErrorCode::backend_unavailable, c.failure);
  return c;
}

std::string hip_version_text(int version) {
  return fmt::format("{}.{}.{}", version / 10'000'000, version / 100'000 % 100, version % 100'000);
}

std::string describe(hipError_t error, const char* call) {
  const char* text = runtime().error_string != nullptr ? runtime().error_string(error) : nullptr;
  return fmt::format("{}: {} (hipError_t {})", call, text != nullptr ? text : "unknown error", error);
}

void check(hipError_t error, const char* call) {
  if (error != k_hip_success) throw Error(ErrorCode::device_error, describe(error, call));
}

}  // namespace mlajit::runtime::hip
