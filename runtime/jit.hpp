// Generate -> key -> cache -> compile: the path every kernel takes to become a code object,
// with or without a device (ahead of time).
#pragma once

#include <optional>

#include "cache/kernel_cache.hpp"
#include "runtime/backend.hpp"

namespace mlajit::runtime {

struct JitResult {
  Source source;
  cache::KernelKey key;
  CodeObject code;
  cache::Outcome outcome = cache::Outcome::compiled;
};

// The cache the process uses: the default root unless MLAJIT_DISABLE_CACHE=1 (then none).
const cache::DiskStore* default_store();

// The key of a kernel: spec, kernel-shaping tile fields, target, compiler identity and options,
// generator version and template hashes.
cache::KernelKey kernel_key(const Source& source, const Spec& spec, const TileConfig& tile,
                            const Target& target, Backend& backend);

// Generates and compiles through `store` (nullptr: compile in memory only). Throws
// invalid_argument for a bad spec/tile, compile_failed with the log, backend_unavailable.
JitResult jit_compile(const Spec& spec, const TileConfig& tile, const Target& target,
                      const cache::DiskStore* store);

}  // namespace mlajit::runtime
