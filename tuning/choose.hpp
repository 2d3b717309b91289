// Tile and split-K choice for a decode call, from a cost model (no measurement). Pure.
#pragma once

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
  double max_kv_tokens = 0;   // longest request when known (tuning sweeps); 0 = take the mean
};

// The split-K cost model's parameters. `mlajit tune` refits them per arch from its sweep and the
// tuning database carries them (metadata "model"); without a database the defaults apply.
struct ModelParams {
  // Fixed cost of one stage-1 CTA (q load, pipeline fill, epilogue) in KV tokens of work:
  // AITER's constant, fitted on MI300 for its assembly kernel.
  double split_overhead_tokens = 84.1;
  // A wave that is not full, whose busiest SM holds m of its k resident CTAs, costs
  // floor + (1 - floor) * m / k of a full wave. 1 is AITER's rule (any wave costs a full one);
  // 0 would mean one CTA alone gets the whole SM. 0.5: one CTA cannot hide its own barriers and
  // load latency (that is why two share an SM), so alone it runs ~1.3x faster, not 2x.
  double tail_wave_floor = 0.5;
  // Stage 2 exists only when splits > 1: a launch cost in tokens, plus the split traffic (stage 1
  // writes fp32 partials instead of the output; stage 2 reads them back and writes the output)
  // priced at stage 1's bandwidth and scaled by combine_traffic_factor (0 = ignore it).
  double combine_launch_tokens = 32.0;
  double combine_traffic_factor = 1.0;
  int max_splits = 64;

  bool operator==(const ModelParams&) const = default;
};

// Defaults for a target (the same today on every target; the database refits them per arch).
ModelParams default_params(const Target& target);
// AITER's rule: no combine cost, a partial wave costs a full one.
ModelParams aiter_params();

// The model's verdict on one split count. Costs are in "slot tokens": the time one resident CTA
// slot takes to stream one KV row while every slot of the device is busy.
struct SplitScore {
  int splits = 1;
  double score = 0;           // ideal / cost: 1 = every slot does useful work all the time
  int ctas = 0;               // stage-1 CTAs
  double waves = 0;           // full waves + the partial wave's cost fraction
  double tokens_per_cta = 0;  // the busiest CTA's KV tokens (whole tiles, as the kernel splits)
  double stage1_cost = 0;
  double combine_cost = 0;
  double cost = 0;            // stage1_cost + combine_cost
};

// Kernel shape for a spec on a target: the fastest family that serves it (wgmma where
// wgmma_family_supports, else mma where mma_family_supports, else portable) with its
// heads_per_cta, tokens_per_tile, warps, stages.
TileConfig choose_tile(const Spec& spec, const Target& target);
// The shape the model picks within one family; throws invalid_argument when the family cannot
// serve the spec on this target.
TileConfig choose_tile(const Spec& spec, const Target& target, KernelFamily family);

// Modelled cost of `splits` for a tile (shape.ctas_per_sm resident CTAs per SM):
//   tokens_per_cta(i) = ceil(ceil(kv / i) / tile) * tile         (the kernel splits in whole tiles)
//   W(i)       = tokens_per_cta(i) + overhead + [i > 1] * partial write of one CTA, in tokens
//   waves(i)   = full waves + (floor + (1 - floor) * m / k) for a partial last wave
//   stage1(i)  = max(waves(i) * W(i), solo * W_longest(i)),  solo = floor + (1 - floor) / k
//   combine(i) = [i > 1] * (launch + factor * stage-2 bytes / (slots * KV row bytes))
//   score(i)   = (CTAs per split * kv / slots) / (stage1(i) + combine(i))
// With aiter_params() this is AITER's score(i) = wave efficiency * kv / (kv + 84.1 i), except
// that the kernel's whole-tile split ranges replace kv / i.
SplitScore split_score(const Spec& spec, const TileConfig& tile, const DecodeShape& shape,
                       const ModelParams& params, int splits);

// The best split count by split_score over 1..min(max_splits, KV tiles of the longest request)
// (the first maximum wins, as in AITER). `scores` receives every count considered.
int choose_splits(const Spec& spec, const TileConfig& tile, const DecodeShape& shape,
                  const ModelParams& params = ModelParams{}, std::vector<SplitScore>* scores = nullptr);

}  // namespace mlajit::tuning
