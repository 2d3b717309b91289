// Runs hipRTC on a generated Source and reads the resulting hsaco's resource notes.
#include "runtime/hip/hip_compiler.hpp"

#include <algorithm>
#include <chrono>
#include <mutex>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "codegen/error.hpp"
#include "runtime/hip/code_object_notes.hpp"
#include "runtime/hip/hip_library.hpp"

namespace mlajit::runtime::hip {

namespace {

// Owns a hiprtcProgram for the length of one compile.
class Program {
 public:
  Program(const Compiler& compiler, const Source& source) : compiler_(compiler) {
    // Header texts are views into embedded data; hipRTC wants NUL-terminated strings.
    texts_.reserve(source.headers.size());
    for (const SourceHeader& header : source.headers) {
      texts_.emplace_back(header.text);
      text_pointers_.push_back(texts_.back().c_str());
      name_pointers_.push_back(header.include_name.c_str());
    }
    const std::string file_name = source.kernel_name + ".hip";
    const hiprtcResult result =
        compiler_.create_program(&program_, source.text.c_str(), file_name.c_str(),
                                 int(text_pointers_.size()), text_pointers_.data(), name_pointers_.data());
    if (result != k_hiprtc_success) {
      throw Error(ErrorCode::compile_failed, fmt::format("hiprtcCreateProgram failed for {}: {}",
                                                         source.kernel_name, compiler_.error_string(result)));
    }
  }
  ~Program() { compiler_.destroy_program(&program_); }
  Program(const Program&) = delete;
  Program& operator=(const Program&) = delete;

  hiprtcProgram get() const { return program_; }

 private:
  const Compiler& compiler_;
  hiprtcProgram program_ = nullptr;
  std::vector<std::string> texts_;
  std::vector<const char*> text_pointers_;
  std::vector<const char*> name_pointers_;
};

std::string program_log(const Compiler& compiler, hiprtcProgram program) {
  std::size_t size = 0;
  if (compiler.program_log_size(program, &size) != k_hiprtc_success || size == 0) return {};
  std::string log(size, '\0');
  if (compiler.program_log(program, log.data()) != k_hiprtc_success) return {};
  while (!log.empty() && (log.back() == '\0' || log.back() == '\n')) log.pop_back();
  return log;
}

std::vector<std::uint8_t> program_code(const Compiler& compiler, hiprtcProgram program,
                                       const Source& source) {
  std::size_t size = 0;
  hiprtcResult result = compiler.code_size(program, &size);
  std::vector<std::uint8_t> code(size);
  if (result == k_hiprtc_success && size > 0) {
    result = compiler.code(program, reinterpret_cast<char*>(code.data()));
  }
  if (result != k_hiprtc_success || size == 0) {
    throw Error(ErrorCode::compile_failed,
                fmt::format("hipRTC produced no code object for {}: {}", source.kernel_name,
                            result == k_hiprtc_success ? "empty output" : compiler.error_string(result)));
  }
  return code;
}

// Resources from the notes; the source's entries that the notes do not cover stay unknown (-1).
std::map<std::string, KernelResources> resources_of(const std::vector<std::uint8_t>& binary,
                                                    const Source& source) {
  CodeObjectNotes notes = read_code_object_notes(binary);
  for (const std::string& entry : source.entries()) {
    if (notes.kernels.count(entry) != 0) continue;
    KernelResources unknown;
    unknown.origin =
        "unknown (" + (notes.failure.empty() ? "kernel absent from the notes" : notes.failure) + ")";
    notes.kernels[entry] = unknown;
  }
  return std::move(notes.kernels);
}

// Refuses an arch the loaded hipRTC does not know, instead of letting it abort the process.
void require_known_arch(const Compiler& compiler, const Target& target) {
  const std::vector<std::string>& known = compiler.architectures;
  if (known.empty() || std::find(known.begin(), known.end(), target.arch) != known.end()) return;
  throw Error(ErrorCode::unsupported,
              fmt::format("hipRTC {} ({}) cannot compile for {}: its code-object manager knows only {}",
                          hiprtc_info().version, compiler.path, target.arch, fmt::join(known, ", ")));
}

}  // namespace

std::vector<std::string> hiprtc_options(const Target& target) {
  std::vector<std::string> options = {"--offload-arch=" + target.arch, "-O3", "-std=c++17"};
  for (std::string& o : extra_compile_options()) options.push_back(std::move(o));
  return options;
}

// hiprtcVersion alone says little (ROCm 5.x reports 9.0 whatever the release), so the HIP runtime
// version is added when libamdhip64 loads: the string enters kernel keys.
CompilerInfo hiprtc_info() {
  const Compiler& compiler = require_compiler();
  int major = 0, minor = 0;
  compiler.version(&major, &minor);
  std::string version = fmt::format("{}.{}", major, minor);
  if (const Runtime& r = runtime(); r.loaded()) version += " (HIP " + hip_version_text(r.version) + ")";
  return CompilerInfo{"hiprtc", version};
}

CodeObject compile_hsaco(const Source& source, const Target& target) {
  if (target.backend != mlajit::Backend::hip) {
    throw Error(ErrorCode::invalid_argument, "the HIP backend cannot compile for " + target.arch);
  }
  const Compiler& compiler = require_compiler();
  require_known_arch(compiler, target);
  // One hipRTC compile at a time: ROCm 5.2's hipRTC crashed inside hiprtcCompileProgram when two
  // overlapped in a process that had also loaded NVRTC (`mlajit warm --arch sm_90a --arch gfx90a
  // --jobs 2`); it gains nothing from parallel compiles anyway (48 gfx90a kernels: 40.7 s with 1
  // job, 41.6 s with 2).
  static std::mutex one_at_a_time;
  std::lock_guard serial(one_at_a_time);
  const auto start = std::chrono::steady_clock::now();
  Program program(compiler, source);
  const std::vector<std::string> options = hiprtc_options(target);
  std::vector<const char*> option_pointers;
  for (const std::string& option : options) option_pointers.push_back(option.c_str());
  const hiprtcResult result =
      compiler.compile_program(program.get(), int(option_pointers.size()), option_pointers.data());
  CodeObject code;
  code.log = program_log(compiler, program.get());
  if (result != k_hiprtc_success) {
    throw Error(ErrorCode::compile_failed,
                fmt::format("hipRTC failed to compile {} for {}: {}\n{}", source.kernel_name, target.arch,
                            compiler.error_string(result), code.log));
  }
  code.binary = program_code(compiler, program.get(), source);
  code.format = "hsaco";
  code.compile_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  code.resources = resources_of(code.binary, source);
  return code;
}

}  // namespace mlajit::runtime::hip
