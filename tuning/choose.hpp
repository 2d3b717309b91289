// Tile and split-K choice for a decode call, from a model (no measurement). Pure.
#pragma once

#include <string>
#include <vector>

#include "codegen/spec.hpp"
#include "codegen/target.hpp"

namespace mlajit::tuning {

// What the host knows about a decode call without reading device memory.
struct DecodeShape {
  int batch = 1;
  double mean_kv_tokens = 0;  // AITER: kv_indices length / batch, in tokens
  int multiprocessors = 132;  // SMs / CUs of the device
  int ctas_per_sm = 1;        // stage-1 CTAs resident per SM (decode_ctas_per_sm)
};

struct SplitScore {
  int splits;
  double score;
};

struct Choice {
  TileConfig tile;
  std::vector<SplitScore> scores;  // the model's score per split count considered (for --explain)
};

// Kernel shape for a spec on a target: the fastest family that serves it (mma where
// mma_family_supports, else portable) with its heads_per_cta, tokens_per_tile, warps, stages.
TileConfig choose_tile(const Spec& spec, const Target& target);
// The shape the model picks within one family; throws invalid_argument when the family cannot
// serve the spec on this target.
TileConfig choose_tile(const Spec& spec, const Target& target, KernelFamily family);

// AITER's split rule (mla-semantics §1.3), widened to 64 splits and capped so each split has
// at least one KV tile: score(i) = wave efficiency(i) * kv / (kv + overhead * i), where a wave
// is multiprocessors * ctas_per_sm CTAs.
int choose_splits(const Spec& spec, const TileConfig& tile, const DecodeShape& shape,
                  std::vector<SplitScore>* scores = nullptr);

Choice choose(const Spec& spec, const Target& target, const DecodeShape& shape);

}  // namespace mlajit::tuning
