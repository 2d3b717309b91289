// MLA decode stage 2: merges the split partials of each (query token, head) by their LSE.
// Grid: x = total_q * heads; all splits of a row were written by stage 1 (empty ones as 0 / -inf).
#pragma once

#include "decode/numeric.cuh"
#include "decode/params.cuh"
#include "decode/schedule.cuh"

namespace mlj {

template <class Cfg>
MLJ_DEVICE void decode_combine(const MljCombineParams& p) {
  constexpr int kHeads = Cfg::kHeads;
  constexpr int kVDim = Cfg::kKvLoraRank;
  constexpr int kThreads = Cfg::kCombineThreads;
  using OutType = typename Cfg::OutType;

  const long long row = blockIdx.x;  // q_row * heads + head
  const long long rows = (long long)p.total_q * kHeads;
  float m = mlj_neg_inf();
  for (int k = 0; k < p.num_splits; ++k) m = fmaxf(m, p.partial_lse[k * rows + row]);
  const bool empty = m == mlj_neg_inf();
  float sum = 0.0f;
  if (!empty) {
    for (int k = 0; k < p.num_splits; ++k) sum += mlj_exp2((p.partial_lse[k * rows + row] - m) * 1.4426950408889634f);
  }
  typename OutType::storage* out = static_cast<typename OutType::storage*>(p.out);
  for (int c = threadIdx.x; c < kVDim; c += kThreads) {
    float o = 0.0f;
    if (!empty) {
      for (int k = 0; k < p.num_splits; ++k) {
        const float w = mlj_exp2((p.partial_lse[k * rows + row] - m) * 1.4426950408889634f);
        o += w * p.partial_out[(k * rows + row) * kVDim + c];
      }
      o /= sum;
    }
    out[row * kVDim + c] = OutType::from_float(o);
  }
  if (Cfg::kWriteLse && threadIdx.x == 0) {
    p.lse[row] = empty ? mlj_neg_inf() : m + mlj_log2(sum) * 0.6931471805599453f;
  }
}

// Persistent decode, reduce (decode/schedule.cuh's design note). Fixed grid, graph-safe:
// x = max_split_tiles (persistent_layout; launch nothing when it is 0), y = rows_per_item;
// Cfg::kCombineThreads threads. CTA (i, r) exits when i >= header[1] (split tiles of this run),
// else merges row r of split tile t = reduce_tiles[i] over its partial slots
// reduce_partial_map[reduce_indptr[t] .. reduce_indptr[t+1]) as decode_combine merges splits and
// writes o (+ LSE) of row g * rows_per_item + r of request b (t = b * groups + g).
template <class Cfg>
MLJ_DEVICE void decode_persistent_reduce(const MljDecodeParams& p, const MljPersistentLayout& layout) {
  constexpr int kHeads = Cfg::kHeads;
  constexpr int kVDim = Cfg::kKvLoraRank;
  constexpr int kThreads = Cfg::kCombineThreads;
  using OutType = typename Cfg::OutType;

  const int i = blockIdx.x;
  const int r = blockIdx.y;
  if (i >= layout.header[1]) return;
  const int t = layout.reduce_tiles[i];
  const int b = t / layout.groups;
  const int g = t - b * layout.groups;
  const int row = g * layout.rows_per_item + r;
  const int q_begin = p.qo_indptr[b];
  if (row >= (p.qo_indptr[b + 1] - q_begin) * kHeads) return;
  const long long out_row = (long long)q_begin * kHeads + row;
  const int* slots = layout.reduce_partial_map;
  const int k0 = layout.reduce_indptr[t];
  const int k1 = layout.reduce_indptr[t + 1];

  float m = mlj_neg_inf();
  for (int k = k0; k < k1; ++k) m = fmaxf(m, p.partial_lse[(long long)slots[k] * layout.rows_per_item + r]);
  const bool empty = m == mlj_neg_inf();
  float sum = 0.0f;
  if (!empty) {
    for (int k = k0; k < k1; ++k) {
      sum += mlj_exp2((p.partial_lse[(long long)slots[k] * layout.rows_per_item + r] - m) * 1.4426950408889634f);
    }
  }
  typename OutType::storage* out = static_cast<typename OutType::storage*>(p.out);
  for (int c = threadIdx.x; c < kVDim; c += kThreads) {
    float o = 0.0f;
    if (!empty) {
      for (int k = k0; k < k1; ++k) {
        const long long slot_row = (long long)slots[k] * layout.rows_per_item + r;
        const float w = mlj_exp2((p.partial_lse[slot_row] - m) * 1.4426950408889634f);
        o += w * p.partial_out[slot_row * kVDim + c];
      }
      o /= sum;
    }
    out[out_row * kVDim + c] = OutType::from_float(o);
  }
  if (Cfg::kWriteLse && threadIdx.x == 0) {
    p.lse[out_row] = empty ? mlj_neg_inf() : m + mlj_log2(sum) * 0.6931471805599453f;
  }
}

}  // namespace mlj
