// The split-K / tile model.
#include "tuning/choose.hpp"

#include <algorithm>
#include <cmath>

#include "codegen/dtype.hpp"

namespace mlajit::tuning {

ModelParams default_params(const Target&) { return ModelParams{}; }

ModelParams aiter_params() {
  ModelParams p;
  p.tail_wave_floor = 1.0;
  p.combine_launch_tokens = 0.0;
  p.combine_traffic_factor = 0.0;
  return p;
}

namespace {

// The mma family's model tile, which may not fit the target's shared memory (sm_86 / sm_89).
// Rows per CTA: the smallest of 16 / 32 / 64 covering heads * s_q, capped at 64 — one CTA streams
// a request's KV for all its rows (KERNELS.md: read each KV row once per request), and more than
// 64 rows would need more than 128 fp32 accumulators per thread. 32-token KV tiles throughout.
// 16 rows: two cp.async stages, ~103 KiB, so two CTAs share an SM and one's barriers hide behind
// the other's math. 32 / 64 rows run one CTA per SM (Q alone is 37 / 73 KiB and the
// accumulators take 64 / 128 registers), so they keep more tiles in flight instead: 4 / 3
// stages (~195 / ~198 KiB on sm_90), fewer where the target has less shared memory.
// 64 rows take all 255 registers; anything more per thread (fused RoPE, the soft-cap, fp32
// output, the persistent walker) makes ptxas spill, so those specs stop at 32 rows.
bool mma_64_rows_fit_registers(const Spec& spec) {
  return spec.op == Op::decode && spec.rope == RopeStyle::none && spec.logit_cap == 0.0f &&
         spec.out_dtype != DType::fp32;
}

TileConfig mma_model_tile(const Spec& spec, const Target& target) {
  TileConfig tile;
  tile.family = KernelFamily::mma;
  const int rows = spec.heads * spec.s_q;
  tile.heads_per_cta = rows <= 16 ? 16 : rows <= 32 || !mma_64_rows_fit_registers(spec) ? 32 : 64;
  tile.warps = 8;
  tile.tokens_per_tile = 32;
  tile.stages = tile.heads_per_cta == 16 ? 2 : tile.heads_per_cta == 32 ? 4 : 3;
  while (decode_shared_bytes(spec, tile) > target.max_shared_bytes()) {
    if (tile.stages > 2) {
      --tile.stages;
    } else if (tile.heads_per_cta > 16) {
      tile.heads_per_cta /= 2;
    } else {
      break;  // nothing fits: validate says so
    }
  }
  return tile;
}

// The wgmma family's model tile: the wide tile (64 rows) from 64 rows up where it serves (S2 201 us
// vs 269 us for 4 x 32 rows, S6 135 vs 153, H200, bench/NOTES.md), else rows per CTA (the wgmma
// N) a multiple of 8 up to 32 (24 with an fp8 cache), balanced over the fewest CTAs (20 rows ->
// one CTA of 24, 100 rows -> 4 x 32 without the wide tile); 64-token tiles, 2 stages; fewer rows
// where a wide latent leaves less shared memory.
TileConfig wgmma_model_tile(const Spec& spec, const Target& target) {
  TileConfig tile;
  tile.family = KernelFamily::wgmma;
  tile.warps = 12;
  tile.tokens_per_tile = 64;
  tile.stages = wgmma_stages(tile);
  const int rows = spec.heads * spec.s_q;
  if (rows >= 64 && wgmma_wide_tile_supports(spec)) {
    tile.heads_per_cta = 64;
    if (decode_shared_bytes(spec, tile) <= target.max_shared_bytes()) return tile;
  }
  // 32 rows with an fp8 cache (the in-place widening's registers) spill a little under NVRTC at
  // 168 registers a thread (soft-cap, fp32 output, the persistent walker): fp8 stops at 24.
  const int max_rows = spec.kv_dtype == DType::fp8_e4m3 ? 24 : 32;
  const int groups = (rows + max_rows - 1) / max_rows;
  tile.heads_per_cta = ((rows + groups - 1) / groups + 7) / 8 * 8;
  while (tile.heads_per_cta > 8 && decode_shared_bytes(spec, tile) > target.max_shared_bytes()) tile.heads_per_cta -= 8;
  return tile;
}

}  // namespace

TileConfig choose_tile(const Spec& spec, const Target& target) {
  // sm_90a: the Hopper family wherever it serves (measured faster than mma on every suite shape
  // it runs, bench/NOTES.md), else mma, else portable.
  if (wgmma_family_supports(spec, target)) {
    const TileConfig wgmma = wgmma_model_tile(spec, target);
    if (decode_shared_bytes(spec, wgmma) <= target.max_shared_bytes()) {
      validate(wgmma, spec, target);
      return wgmma;
    }
  }
  if (mma_family_supports(spec, target)) {
    const TileConfig mma = mma_model_tile(spec, target);
    if (decode_shared_bytes(spec, mma) <= target.max_shared_bytes()) {
      validate(mma, spec, target);
      return mma;
    }
  }
  return choose_tile(spec, target, KernelFamily::portable);
}

TileConfig choose_tile(const Spec& spec, const Target& target, KernelFamily family) {
  TileConfig tile;
  if (family == KernelFamily::mma || family == KernelFamily::wgmma) {
    tile = family == KernelFamily::mma ? mma_model_tile(spec, target) : wgmma_model_tile(spec, target);
    validate(tile, spec, target);
    return tile;
  }
  const int rows = spec.heads * spec.s_q;
  // Balance rows over the fewest CTAs of at most 16 rows, so 20 heads become 2 x 10, not 16 + 4.
  const int max_rows = 16;
  const int groups = (rows + max_rows - 1) / max_rows;
  tile.heads_per_cta = (rows + groups - 1) / groups;
  tile.warps = target.backend == Backend::cuda ? 8 : 4;  // 256 threads either way
  tile.tokens_per_tile = 32;
  tile.stages = 1;
  // Fit the target's shared memory (AMD LDS is 64 KiB).
  while (tile.tokens_per_tile > 8 &&
         decode_shared_bytes(spec, tile) > target.max_shared_bytes()) {
    tile.tokens_per_tile /= 2;
  }
  while (tile.heads_per_cta > 1 && decode_shared_bytes(spec, tile) > target.max_shared_bytes()) {
    tile.heads_per_cta = (tile.heads_per_cta + 1) / 2;
  }
  return tile;
}

namespace {

long long ceil_div(long long a, long long b) { return (a + b - 1) / b; }

// split_score's terms that do not depend on the split count, computed once per call of
// choose_splits (which runs on every decode: the loop body is a few multiplies and two divisions).
struct SplitModel {
  long long ctas_per_split, sms, per_sm, slots, tokens, longest_tokens, tile_tokens;
  double kv, floor, solo, overhead, partial_write, combine_launch, combine_per_split, combine_fixed, ideal;

  SplitModel(const Spec& spec, const TileConfig& tile, const DecodeShape& shape, const ModelParams& p) {
    const int rows = spec.heads * spec.s_q;
    ctas_per_split = (long long)std::max(1, shape.batch) * ceil_div(rows, tile.heads_per_cta);
    sms = std::max(1, shape.multiprocessors);
    per_sm = std::max(1, shape.ctas_per_sm);
    slots = sms * per_sm;
    kv = std::max(1.0, shape.mean_kv_tokens);
    tokens = (long long)std::ceil(kv);
    longest_tokens = std::max(tokens, (long long)std::ceil(shape.max_kv_tokens));
    tile_tokens = std::max(1, tile.tokens_per_tile);
    floor = std::clamp(p.tail_wave_floor, 0.0, 1.0);
    solo = floor + (1.0 - floor) / double(per_sm);
    overhead = p.split_overhead_tokens;
    const double kv_row_bytes = double(spec.qk_dim()) * double(dtype_size(spec.kv_dtype));
    const double out_bytes = double(dtype_size(spec.out_dtype));
    // Split traffic of one CTA: fp32 partial rows + LSE instead of output rows.
    partial_write = p.combine_traffic_factor * tile.heads_per_cta * ((spec.v_dim() + 1) * 4.0 - spec.v_dim() * out_bytes) /
                    kv_row_bytes;
    // Stage 2 reads every split's partials and writes the output once.
    const double rows_total = double(std::max(1, shape.batch)) * rows;
    const double per_slot_token = double(slots) * kv_row_bytes;
    combine_launch = p.combine_launch_tokens;
    combine_per_split = p.combine_traffic_factor * rows_total * (spec.v_dim() + 1) * 4.0 / per_slot_token;
    combine_fixed = p.combine_traffic_factor * rows_total * spec.v_dim() * out_bytes / per_slot_token;
    ideal = double(ctas_per_split) * kv / double(slots);
  }

  // The kernel gives each split ceil(ceil(tokens / splits) / tile) whole tiles
  // (templates/decode/*.cuh), which is ceil(tokens / (splits * tile)).
  double split_tokens(long long request_tokens, int splits) const {
    // 32-bit division where it fits (tokens and splits * tile do): this runs 64 times a call.
    const unsigned long long span = (unsigned long long)splits * (unsigned long long)tile_tokens;
    if (request_tokens < (1LL << 31) && span < (1ULL << 31)) {
      const unsigned t = unsigned(request_tokens), d = unsigned(span);
      return double((t + d - 1) / d) * double(tile_tokens);
    }
    return double(ceil_div(request_tokens, (long long)span) * tile_tokens);
  }

  SplitScore score(int splits) const {
    SplitScore s;
    s.splits = splits;
    const long long ctas = ctas_per_split * splits;
    s.ctas = int(std::min<long long>(ctas, 1LL << 30));
    const double partial = splits > 1 ? partial_write : 0.0;
    s.tokens_per_cta = split_tokens(tokens, splits);
    const double work = s.tokens_per_cta + overhead + partial;
    const long long full = ctas / slots;
    const long long remainder = ctas - full * slots;
    s.waves = double(full);
    if (remainder > 0) {
      long long busiest = 1;  // CTAs on the busiest SM: min(per_sm, ceil(remainder / sms))
      while (busiest < per_sm && remainder > busiest * sms) ++busiest;
      s.waves += floor + (1.0 - floor) * double(busiest) / double(per_sm);
    }
    s.stage1_cost = s.waves * work;
    // The longest request's CTAs cannot finish before they have streamed their range, however
    // empty the machine is (matters for ragged batches only).
    if (longest_tokens > tokens) {
      s.stage1_cost = std::max(s.stage1_cost, solo * (split_tokens(longest_tokens, splits) + overhead + partial));
    }
    s.combine_cost = splits > 1 ? combine_launch + combine_per_split * splits + combine_fixed : 0.0;
    s.cost = s.stage1_cost + s.combine_cost;
    s.score = ideal / s.cost;
    return s;
  }

  // No split count from `splits` on can cost less than this (full waves >= CTAs / slots - 1, each
  // CTA streams >= kv / splits tokens + overhead; the bound grows with splits). Valid once
  // ctas >= slots and for non-negative overhead and traffic.
  double lower_bound(int splits) const {
    return (double(ctas_per_split) * splits / double(slots) - 1.0) * (kv / splits + overhead);
  }
};

}  // namespace

SplitScore split_score(const Spec& spec, const TileConfig& tile, const DecodeShape& shape,
                       const ModelParams& params, int splits) {
  return SplitModel(spec, tile, shape, params).score(splits);
}

int choose_splits(const Spec& spec, const TileConfig& tile, const DecodeShape& shape, const ModelParams& params,
                  std::vector<SplitScore>* scores) {
  const SplitModel model(spec, tile, shape, params);
  const long long tiles = ceil_div(model.longest_tokens, model.tile_tokens);
  const int max_useful = int(std::clamp<long long>(tiles, 1, std::max(1, params.max_splits)));
  const bool may_stop = scores == nullptr && params.split_overhead_tokens >= 0 && params.combine_traffic_factor >= 0 &&
                        params.combine_launch_tokens >= 0;
  int best = 1;
  double best_cost = 0;
  for (int i = 1; i <= max_useful; ++i) {
    if (may_stop && i > 1 && model.ctas_per_split * i >= model.slots && model.lower_bound(i) > best_cost) break;
    const SplitScore s = model.score(i);
    if (scores != nullptr) scores->push_back(s);
    if (i == 1 || s.cost < best_cost) {  // the same ideal for every count: least cost = best score; first wins
      best = i;
      best_cost = s.cost;
    }
  }
  return best;
}

}  // namespace mlajit::tuning
