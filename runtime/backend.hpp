// One interface for every GPU backend: compile (NVRTC / hipRTC), discover devices, load code
// objects, move memory and launch. Vendor libraries are dlopen()ed on first use, so a build runs
// on NVIDIA, AMD and GPU-less machines alike (ahead-of-time compilation needs only the compiler).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "codegen/generator.hpp"
#include "codegen/target.hpp"

namespace mlajit::runtime {

struct CompilerInfo {
  std::string name;     // "nvrtc" | "hiprtc"
  std::string version;  // e.g. "13.0"
};

// Resource use of one kernel in a code object; -1 = not known for this code object.
struct KernelResources {
  int registers = -1;        // per thread (VGPRs on AMD)
  int shared_bytes = -1;     // static shared memory / LDS
  int local_bytes = -1;      // per-thread local memory (stack + spills)
  int spill_stores = -1;     // bytes
  int spill_loads = -1;      // bytes
  std::string origin;        // "driver", "ptxas", "code-object notes"
};

struct CodeObject {
  std::vector<std::uint8_t> binary;  // cubin / hsaco
  std::string format;                // "cubin" | "hsaco"
  std::string log;                   // compiler log (warnings), may be empty
  double compile_ms = 0.0;
  std::map<std::string, KernelResources> resources;  // by entry name, where the compiler tells
};

struct DeviceInfo {
  int ordinal = 0;
  std::string name;
  Target target;               // backend + arch the device runs (sm_90a on H100 / H200)
  int multiprocessors = 0;     // SMs / CUs
  std::size_t total_memory = 0;
  std::size_t l2_bytes = 0;
  int max_shared_per_block = 0;  // opt-in maximum
  std::string driver_version;
};

struct Dim3 {
  unsigned x = 1, y = 1, z = 1;
};

using Stream = void*;  // CUstream / hipStream_t; nullptr = the default stream

// How a launch orders against the stream's previous kernel: after it has completed, or as its
// programmatic dependent (CUDA sm_90+, unless MLAJIT_DISABLE_PDL=1): the grid may be scheduled while
// the previous one finishes, and the kernel waits (mlj_wait_for_previous_grid) before it reads
// anything. Where the device or driver lacks it, overlap_previous launches in stream order.
enum class LaunchOrder { after_previous, overlap_previous };

class Kernel {
 public:
  virtual ~Kernel() = default;
  virtual const std::string& name() const = 0;
  virtual KernelResources resources() const = 0;  // from the driver
  // Raises the dynamic shared memory limit when `bytes` needs the opt-in (done once per size).
  virtual void reserve_shared(int bytes) = 0;
  // args: pointers to each argument, as cuLaunchKernel / hipModuleLaunchKernel take them.
  virtual void launch(Dim3 grid, Dim3 block, int shared_bytes, Stream stream, void** args, LaunchOrder order) = 0;
};

class Module {
 public:
  virtual ~Module() = default;
  // The kernel named `entry`; throws Error(device_error) naming it when absent. Owned by the module.
  virtual Kernel& kernel(const std::string& entry) = 0;
};

class Device {
 public:
  virtual ~Device() = default;
  virtual const DeviceInfo& info() const = 0;
  virtual std::unique_ptr<Module> load(const CodeObject& code) = 0;

  virtual void* allocate(std::size_t bytes) = 0;
  virtual void release(void* device_pointer) noexcept = 0;
  virtual void copy_to_device(void* dst, const void* src, std::size_t bytes) = 0;
  virtual void copy_to_host(void* dst, const void* src, std::size_t bytes) = 0;
  virtual void fill_bytes(void* dst, std::uint8_t value, std::size_t bytes) = 0;
  virtual void synchronize() = 0;
  // Makes this device's context current on the calling thread.
  virtual void make_current() = 0;

  // GPU-event timing (for benchmarks): opaque events recorded on a stream.
  virtual void* create_event();
  virtual void destroy_event(void* event) noexcept;
  virtual void record_event(void* event, Stream stream);
  // Milliseconds between two recorded events; waits for `end`.
  virtual float elapsed_ms(void* start, void* end);

  // Streams and graphs (CUDA graphs): what a caller needs to capture the kernels enqueued on a
  // stream once and replay them (tests, benchmarks). Graphs are opaque executable graphs.
  virtual Stream create_stream();
  virtual void destroy_stream(Stream stream) noexcept;
  // Starts capturing `stream` (not the default stream; global capture mode, as PyTorch): until
  // end_capture, work enqueued on it is recorded, not run, and a synchronising call fails.
  virtual void begin_capture(Stream stream);
  // Ends the capture and instantiates what was recorded.
  virtual void* end_capture(Stream stream);
  virtual void launch_graph(void* graph, Stream stream);
  virtual void destroy_graph(void* graph) noexcept;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual mlajit::Backend kind() const = 0;
  // True when the compiler library can be loaded (no device needed).
  virtual bool compiler_available() const = 0;
  // Throws Error(backend_unavailable) saying which library is missing and how to point at it.
  virtual CompilerInfo compiler_info() = 0;
  // Compiles for target.arch without needing a device. Throws Error(compile_failed) with the log.
  virtual CodeObject compile(const Source& source, const Target& target) = 0;
  // The options compile() passes to the compiler for `target` (they enter the kernel key).
  virtual std::vector<std::string> compile_options(const Target& target) const { (void)target; return {}; }
  // 0 when the driver is missing or sees no device (never throws for that).
  virtual int device_count() = 0;
  // Why device_count() is 0, for `mlajit info` ("libcuda.so.1 not found", ...); empty otherwise.
  virtual std::string unavailable_reason() = 0;
  virtual std::unique_ptr<Device> open_device(int ordinal) = 0;
};

// The process-wide backend objects (libraries are loaded lazily inside).
Backend& backend(mlajit::Backend kind);

// MLAJIT_COMPILE_OPTIONS split at spaces (empty when unset): appended to every backend's
// compile_options(), so they enter the kernel key.
std::vector<std::string> extra_compile_options();

// RAII device buffer, for tools and tests.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(Device& device, std::size_t bytes);
  ~DeviceBuffer();
  DeviceBuffer(DeviceBuffer&& other) noexcept;
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  void* get() const { return pointer_; }
  std::size_t size() const { return bytes_; }
  template <class T>
  T* as() const { return static_cast<T*>(pointer_); }

 private:
  Device* device_ = nullptr;
  void* pointer_ = nullptr;
  std::size_t bytes_ = 0;
};

}  // namespace mlajit::runtime
