// Generate -> key -> cache -> compile: the path every kernel takes to become a code object,
// with or without a device (ahead of time).
#pragma once

#include <optional>
#include <string>

#include "cache/kernel_cache.hpp"
#include "runtime/backend.hpp"

namespace mlajit::runtime {

struct JitResult {
  Source source;
  cache::KernelKey key;
  CodeObject code;
  cache::Outcome outcome = cache::Outcome::compiled;
  // Non-empty when a damaged cache entry of this key was quarantined first (the reason), so the
  // compile was a recompile.
  std::string quarantined;
};

// The cache the process uses: the default root (with MLAJIT_CACHE_SYSTEM_DIR as its read-only
// layer and MLAJIT_CACHE_MAX_SIZE as its budget) unless MLAJIT_DISABLE_CACHE=1 (then none).
const cache::DiskStore* default_store();

// The key of a kernel: spec, kernel-shaping tile fields, target, compiler identity and options,
// generator version, the templates' hashes and the rendered stub's hash.
cache::KernelKey kernel_key(const Source& source, const Spec& spec, const TileConfig& tile,
                            const Target& target, Backend& backend);

// Generates and compiles through `store` (nullptr: compile in memory only). Throws
// invalid_argument for a bad spec/tile, compile_failed with the log, backend_unavailable, and
// cache_error on a miss when MLAJIT_DISABLE_JIT=1.
JitResult jit_compile(const Spec& spec, const TileConfig& tile, const Target& target,
                      const cache::DiskStore* store);

}  // namespace mlajit::runtime
