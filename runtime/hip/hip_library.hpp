// The HIP runtime and hipRTC entry points mlajit uses, found with dlopen/dlsym on first use.
// Types are declared here as opaque handles and ints, so building needs no ROCm headers.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace mlajit::runtime::hip {

// ---- types (C ABI: enums are passed as int, handles as pointers) ----------------------------
using hipError_t = int;
using hiprtcResult = int;
using hipModule_t = struct ihipModule_t*;
using hipFunction_t = struct ihipModuleSymbol_t*;
using hipStream_t = struct ihipStream_t*;
using hiprtcProgram = struct _hiprtcProgram*;

inline constexpr hipError_t k_hip_success = 0;
inline constexpr hipError_t k_hip_error_no_device = 100;
inline constexpr hiprtcResult k_hiprtc_success = 0;

// hipDeviceAttribute_t values, read from ROCm 5.2's hip_runtime_api.h (/usr/include/hip, HIP
// 5.2.21153) and checked unchanged in ROCm 6.x, where the enum only grew at its end or turned
// entries into placeholders (hipDeviceAttributeGcnArchName, 10004, became Unused5 in 6.0, so the
// arch name is read from hipDeviceProp_t instead: see device_arch_name in hip_device.cpp).
// ROCm 4.x numbered this enum differently; the runtime is rejected below 5.0 (k_min_runtime).
namespace attribute {
inline constexpr int l2_cache_size = 19;                // hipDeviceAttributeL2CacheSize
inline constexpr int multiprocessor_count = 63;         // hipDeviceAttributeMultiprocessorCount
inline constexpr int max_shared_memory_per_block = 74;  // hipDeviceAttributeMaxSharedMemoryPerBlock
}  // namespace attribute

// hipFunction_attribute values: the CUDA numbering, identical in ROCm 5.x and 6.x.
namespace function_attribute {
inline constexpr int shared_size_bytes = 1;  // HIP_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES
inline constexpr int local_size_bytes = 3;   // HIP_FUNC_ATTRIBUTE_LOCAL_SIZE_BYTES
inline constexpr int num_regs = 4;           // HIP_FUNC_ATTRIBUTE_NUM_REGS
}  // namespace function_attribute

// HIP_VERSION encoding: major * 10'000'000 + minor * 100'000 + patch.
inline constexpr int k_min_runtime = 50'000'000;

// ---- libamdhip64 ----------------------------------------------------------------------------
struct Runtime {
  std::string path;     // the library that was loaded
  std::string failure;  // why loading failed; empty when loaded
  void* handle = nullptr;
  int version = 0;  // hipRuntimeGetVersion (HIP_VERSION encoding)

  hipError_t (*init)(unsigned flags) = nullptr;
  hipError_t (*runtime_version)(int* version) = nullptr;
  hipError_t (*driver_version)(int* version) = nullptr;
  hipError_t (*device_count)(int* count) = nullptr;
  hipError_t (*set_device)(int ordinal) = nullptr;
  hipError_t (*device_name)(char* name, int length, int ordinal) = nullptr;
  hipError_t (*device_attribute)(int* value, int attribute, int ordinal) = nullptr;
  hipError_t (*device_total_mem)(std::size_t* bytes, int ordinal) = nullptr;
  hipError_t (*device_synchronize)() = nullptr;
  hipError_t (*mem_alloc)(void** pointer, std::size_t bytes) = nullptr;
  hipError_t (*mem_free)(void* pointer) = nullptr;
  hipError_t (*memcpy_htod)(void* dst, void* src, std::size_t bytes) = nullptr;
  hipError_t (*memcpy_dtoh)(void* dst, void* src, std::size_t bytes) = nullptr;
  hipError_t (*mem_set)(void* dst, int value, std::size_t bytes) = nullptr;
  hipError_t (*module_load_data)(hipModule_t* module, const void* image) = nullptr;
  hipError_t (*module_unload)(hipModule_t module) = nullptr;
  hipError_t (*module_get_function)(hipFunction_t* function, hipModule_t module, const char* name) = nullptr;
  hipError_t (*func_get_attribute)(int* value, int attribute, hipFunction_t function) = nullptr;
  hipError_t (*module_launch_kernel)(hipFunction_t function, unsigned grid_x, unsigned grid_y,
                                     unsigned grid_z, unsigned block_x, unsigned block_y, unsigned block_z,
                                     unsigned shared_bytes, hipStream_t stream, void** args,
                                     void** extra) = nullptr;
  const char* (*error_string)(hipError_t error) = nullptr;
  // Optional: hipDeviceProp_t readers, one per layout (see device_arch_name).
  hipError_t (*device_properties_r0600)(void* properties, int ordinal) = nullptr;
  hipError_t (*device_properties_r0000)(void* properties, int ordinal) = nullptr;

  bool loaded() const { return failure.empty(); }
};

// ---- hipRTC (inside libamdhip64 up to ROCm 5.x, libhiprtc from ROCm 6) ----------------------
struct Compiler {
  std::string path;
  std::string failure;
  void* handle = nullptr;

  hiprtcResult (*version)(int* major, int* minor) = nullptr;
  hiprtcResult (*create_program)(hiprtcProgram* program, const char* source, const char* name,
                                 int header_count, const char* const* headers,
                                 const char* const* include_names) = nullptr;
  hiprtcResult (*compile_program)(hiprtcProgram program, int option_count,
                                  const char* const* options) = nullptr;
  hiprtcResult (*destroy_program)(hiprtcProgram* program) = nullptr;
  hiprtcResult (*program_log_size)(hiprtcProgram program, std::size_t* bytes) = nullptr;
  hiprtcResult (*program_log)(hiprtcProgram program, char* log) = nullptr;
  hiprtcResult (*code_size)(hiprtcProgram program, std::size_t* bytes) = nullptr;
  hiprtcResult (*code)(hiprtcProgram program, char* code) = nullptr;
  const char* (*error_string)(hiprtcResult result) = nullptr;

  // The gfx names the code-object manager (comgr) under hipRTC accepts, e.g. "gfx90a"; empty
  // when comgr could not be asked. ROCm 5.2's hipRTC aborts the process on an arch it does not
  // know (a double free in comgr), so compile checks this list before calling it.
  std::vector<std::string> architectures;

  bool loaded() const { return failure.empty(); }
};

// Loaded once per process (thread-safe); never throw: `failure` says what is missing.
const Runtime& runtime();
const Compiler& compiler();

// As above, but throw Error(backend_unavailable) with the failure.
const Runtime& require_runtime();
const Compiler& require_compiler();

// "5.2.21153" from a HIP_VERSION-encoded number (hipRuntimeGetVersion, hipDriverGetVersion).
std::string hip_version_text(int version);

// "hipMalloc: out of memory" style text for a failed call.
std::string describe(hipError_t error, const char* call);
// Throws Error(device_error, "<call>: <hipGetErrorString>") unless error is hipSuccess.
void check(hipError_t error, const char* call);

}  // namespace mlajit::runtime::hip
