// The table of MLAJIT_* variables and the one function that reads them.
#include "cache/environment.hpp"

#include <cstdlib>

#include "codegen/error.hpp"

namespace mlajit {

namespace {
constexpr EnvironmentVariable k_variables[] = {
    {"MLAJIT_CACHE_DIR", "root of the on-disk kernel cache (default $XDG_CACHE_HOME/mlajit or ~/.cache/mlajit)"},
    {"MLAJIT_CACHE_SYSTEM_DIR", "read-only cache layer searched before the user cache (pre-warmed by an admin; never written)"},
    {"MLAJIT_CACHE_MAX_SIZE", "byte budget of the user cache (K/M/G/T suffixes); least recently used entries are evicted"},
    {"MLAJIT_DISABLE_CACHE", "1: never read or write the disk cache (compile in memory only)"},
    {"MLAJIT_DISABLE_PDL", "1: launch the split-K combine, the persistent stage 1 and the reduce in plain stream order instead of as programmatic dependents of the kernel before them (sm_90+)"},
    {"MLAJIT_DISABLE_JIT", "1: never compile; a kernel missing from the cache is an error (production with pre-warmed caches)"},
    {"MLAJIT_COMPILE_OPTIONS", "extra compiler options for every kernel, space-separated, part of the cache key (for developers, e.g. -lineinfo for profilers)"},
    {"MLAJIT_CUDA_LIBRARY", "path of libcuda.so to load instead of libcuda.so.1"},
    {"MLAJIT_NVRTC_LIBRARY", "path of libnvrtc.so to load instead of the search list"},
    {"MLAJIT_HIP_LIBRARY", "path of libamdhip64.so to load instead of the search list"},
    {"MLAJIT_HIPRTC_LIBRARY", "path of the hipRTC library when it is separate from libamdhip64"},
    {"MLAJIT_LIBRARY", "path of libmlajit.so for the Python package (python/mlajit)"},
    {"MLAJIT_LOG", "1: print compile and cache events to stderr"},
    {"MLAJIT_PERSISTENT_OVERHEAD", "persistent decode's scheduling cost of a work item beyond its KV, in 64-token blocks, 0..1024 (default 5, FlashMLA's; for developers sweeping the schedule)"},
    {"MLAJIT_TUNING_DIR", "directory of the user's tuning databases (<generation>.json, e.g. sm_90.json), overriding the shipped ones (default <cache root>/tuning)"},
};
}  // namespace

std::span<const EnvironmentVariable> environment_variables() { return k_variables; }

std::optional<std::string> read_environment(std::string_view name) {
  for (const EnvironmentVariable& v : k_variables) {
    if (v.name == name) {
      const char* value = std::getenv(std::string(name).c_str());
      if (value == nullptr || *value == '\0') return std::nullopt;
      return std::string(value);
    }
  }
  throw Error(ErrorCode::internal, "undocumented environment variable " + std::string(name));
}

}  // namespace mlajit
