// MLA decode stage 2: merges the split partials of each (query token, head) by their LSE.
// Grid: x = total_q * heads; all splits of a row were written by stage 1 (empty ones as 0 / -inf).
#pragma once

#include "decode/numeric.cuh"
#include "decode/params.cuh"

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

}  // namespace mlj
