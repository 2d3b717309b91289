// The split-K / tile model.
#include "tuning/choose.hpp"

#include <algorithm>
#include <cmath>

namespace mlajit::tuning {

namespace {
constexpr int k_max_splits = 64;
constexpr double k_split_overhead_tokens = 84.1;  // AITER's fitted per-split cost, in KV tokens
}  // namespace

TileConfig choose_tile(const Spec& spec, const Target& target) {
  if (mma_family_supports(spec, target)) {
    const TileConfig mma = choose_tile(spec, target, KernelFamily::mma);
    if (decode_shared_bytes(spec, mma) <= target.max_shared_bytes()) return mma;
  }
  return choose_tile(spec, target, KernelFamily::portable);
}

TileConfig choose_tile(const Spec& spec, const Target& target, KernelFamily family) {
  TileConfig tile;
  if (family == KernelFamily::mma) {
    // 16 rows per CTA (one mma M tile), 32-token KV tiles, two cp.async stages: ~106 KiB of
    // shared memory, so two CTAs share an SM and one's barriers hide behind the other's math.
    tile.family = KernelFamily::mma;
    tile.heads_per_cta = 16;
    tile.warps = 8;
    tile.tokens_per_tile = 32;
    tile.stages = 2;
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

int choose_splits(const Spec& spec, const TileConfig& tile, const DecodeShape& shape,
                  std::vector<SplitScore>* scores) {
  const int rows = spec.heads * spec.s_q;
  const int row_groups = (rows + tile.heads_per_cta - 1) / tile.heads_per_cta;
  const double ctas_per_split = double(std::max(1, shape.batch)) * row_groups;
  const double kv = std::max(1.0, shape.mean_kv_tokens);
  const int cu = std::max(1, shape.multiprocessors) * shape.ctas_per_sm;
  const int max_useful = std::max(1, int(std::ceil(kv / tile.tokens_per_tile)));
  int best = 1;
  double best_score = -1.0;
  for (int i = 1; i <= std::min(k_max_splits, max_useful); ++i) {
    const double ctas = ctas_per_split * i;
    const double waves = std::ceil(ctas / cu);
    const double efficiency = ctas / (waves * cu);
    const double score = efficiency * kv / (kv + k_split_overhead_tokens * i);
    if (scores != nullptr) scores->push_back({i, score});
    if (score > best_score) {  // first maximum wins, as in AITER
      best = i;
      best_score = score;
    }
  }
  return best;
}

Choice choose(const Spec& spec, const Target& target, const DecodeShape& shape) {
  Choice choice;
  choice.tile = choose_tile(spec, target);
  DecodeShape resident = shape;
  resident.ctas_per_sm = decode_ctas_per_sm(spec, choice.tile, target);
  choice.tile.num_splits = choose_splits(spec, choice.tile, resident, &choice.scores);
  return choice;
}

}  // namespace mlajit::tuning
