// The generator: (Spec, TileConfig, Target) -> Source. Pure: no I/O, no globals.
// Kernel bodies live in templates/ as real headers; only a small parameter stub is rendered.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "codegen/spec.hpp"
#include "codegen/target.hpp"

namespace mlajit {

// Bumped whenever generated code changes in a way neither the template hashes nor the rendered
// stub's hash (both in the kernel key, runtime/jit.cpp) would show.
inline constexpr int kGeneratorVersion = 3;

struct SourceHeader {
  std::string include_name;  // as written in #include "..."
  std::string_view text;     // embedded template text
  std::string_view sha256;
};

struct Source {
  std::string kernel_name;          // readable, e.g. mla_decode_q-bf16_kv-bf16_..._w8
  std::string text;                 // the rendered stub: the translation unit handed to the compiler
  std::vector<SourceHeader> headers;// templates the stub includes, given to the compiler in memory
  std::string stub_template;        // the template the stub was rendered from (with decode/config.cu.in)
  // extern "C" names of the kernels in the code object. Op::decode: stage 1 (grid: request x row
  // group x split) and the split-K combine. Op::persistent_decode: the persistent stage 1, its
  // reduce (as combine_entry) and the metadata kernel (schedule_entry; empty for Op::decode).
  std::string stage1_entry;
  std::string combine_entry;
  std::string schedule_entry;
  int stage1_threads = 0;
  int stage1_shared_bytes = 0;      // dynamic shared memory of stage 1
  int combine_threads = 0;
  int combine_warps = 0;            // warps of a combine / reduce CTA
  int schedule_threads = 0;
  int schedule_shared_bytes = 0;    // dynamic shared memory of the metadata kernel

  // Warps that merge a row of `partials` split partials in the combine (decode/combine.cuh's
  // merge_ways: about 2 partials a warp, a power of two up to the CTA's warps), and the combine's
  // CTAs for `rows` such rows.
  int combine_ways(int partials) const;
  unsigned combine_ctas(int rows, int ways) const;
  // The non-empty entry names above.
  std::vector<std::string> entries() const;
  // "path=sha256;..." over the stub templates and every header: part of the kernel key.
  std::string template_digest() const;
};

// Validates all three inputs (invalid_argument naming the field) and renders the stub.
Source generate(const Spec& spec, const TileConfig& tile, const Target& target);

// The full text a person would read: headers inlined in place of their #include lines.
std::string flatten(const Source& source);

}  // namespace mlajit
