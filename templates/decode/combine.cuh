// MLA decode stage 2: merges the split partials of each (query token, head) by their LSE.
// Grid: x = total_q * heads; all splits of a row were written by stage 1 (empty ones as 0 / -inf).
// The persistent reduce merges the partial slots of a split tile the same way (merge_partials).
#pragma once

#include "decode/numeric.cuh"
#include "decode/params.cuh"
#include "decode/schedule.cuh"
#include "decode/trace.cuh"

namespace mlj {

template <int N>
struct alignas(4 * N) FloatVec {
  float v[N];
};

// How kThreads threads cover a row of kVDim fp32 columns: vectors of kVec floats (16 bytes when
// kVDim allows), kColThreads threads across the row's vectors, and, when a row has fewer vectors
// than the CTA has threads, kWays (at most 8) groups of them each taking every kWays-th split
// (their sums meet in shared memory); threads past kWays * kColThreads sit out the column phase.
// Each thread keeps kUnroll splits x kPerThread vectors of loads in flight.
template <int kThreads, int kVDim>
struct CombineShape {
  static constexpr int kVec = kVDim % 4 == 0 ? 4 : kVDim % 2 == 0 ? 2 : 1;
  static constexpr int kGroups = kVDim / kVec;  // vectors per row
  static constexpr int kColThreads = kGroups < kThreads ? kGroups : kThreads;
  static constexpr int kWays = kThreads / kColThreads < 8 ? kThreads / kColThreads : 8;
  static constexpr int kPerThread = (kGroups + kColThreads - 1) / kColThreads;
  static constexpr bool kRagged = kGroups % kColThreads != 0;  // the last vector of some threads is past the row
  static constexpr int kUnroll = kPerThread >= 8 ? 1 : 8 / kPerThread;

  // The row's vector that is vector i of the thread at column slot col; -1 past the row.
  static MLJ_DEVICE int vector(int col, int i) {
    const int g = col + i * kColThreads;
    return kRagged && g >= kGroups ? -1 : g;
  }
};

// The one merge of split partials, for decode_combine and decode_persistent_reduce. Every thread
// of a Cfg::kCombineThreads CTA calls it with the same arguments. Partial k (0 <= k < n) is fp32
// row partial_row(k) (a long long: partial_out[row * kVDim ..], partial_lse[row], natural log);
// writes out[out_row] = sum_k exp(lse_k - m) o_k / sum_k exp(lse_k - m) (m = max_k lse_k) as
// Cfg::OutType and, when Cfg::kWriteLse, lse[out_row] = m + log(sum). A row whose partials all
// have LSE -inf (or n == 0) gets 0 and LSE -inf, reading no partial output. Splits of weight 0
// are not read. LSEs are read once for n <= kThreads (once more per chunk of kThreads beyond):
// block max and sum, then the per-split weights and rows staged in shared memory, chunk by chunk.
// partial_out must be 16-byte aligned (rows are read as kVec-float vectors).
template <class Cfg, class PartialRow>
MLJ_DEVICE void merge_partials(const float* partial_out, const float* partial_lse, int n, PartialRow partial_row,
                               void* out, float* lse, long long out_row) {
  constexpr int kThreads = Cfg::kCombineThreads;
  constexpr int kVDim = Cfg::kKvLoraRank;
  using S = CombineShape<kThreads, kVDim>;
  using Vec = FloatVec<S::kVec>;
  using OutType = typename Cfg::OutType;

  MLJ_SHARED float reduce_s[2][kThreads / MLJ_WARP_SIZE];
  MLJ_SHARED float weight_s[kThreads];  // exp(lse - m) of the chunk's splits
  MLJ_SHARED long long row_s[kThreads];  // partial_row of the chunk's splits
  MLJ_SHARED Vec way_s[S::kWays > 1 ? (S::kWays - 1) * S::kGroups : 1];

  const int tid = int(threadIdx.x);
  long long my_row = 0;  // split tid: the first chunk's, kept in registers
  float my_lse = mlj_neg_inf();
  if (tid < n) {
    my_row = partial_row(tid);
    my_lse = partial_lse[my_row];
  }
  float m = my_lse;
  for (int k = tid + kThreads; k < n; k += kThreads) m = fmaxf(m, partial_lse[partial_row(k)]);
  m = block_reduce<kThreads, true>(m, reduce_s[0]);
  const bool empty = m == mlj_neg_inf();
  auto weight = [&](float l) { return empty ? 0.0f : mlj_exp2((l - m) * kLog2e); };
  const float my_weight = weight(my_lse);
  float sum = my_weight;
  for (int k = tid + kThreads; k < n; k += kThreads) sum += weight(partial_lse[partial_row(k)]);
  if (tid < n) {
    weight_s[tid] = my_weight;
    row_s[tid] = my_row;
  }
  sum = block_reduce<kThreads, false>(sum, reduce_s[1]);  // its barrier also publishes weight_s / row_s

  const int col = tid % S::kColThreads;
  const int way = tid / S::kColThreads;
  float acc[S::kPerThread][S::kVec] = {};
  if (!empty) {  // uniform: m is the block's
    for (int c = 0; c < n; c += kThreads) {
      if (c > 0) {
        mlj_barrier();  // the previous chunk's readers are done
        if (c + tid < n) {
          const long long r = partial_row(c + tid);
          row_s[tid] = r;
          weight_s[tid] = weight(partial_lse[r]);
        }
        mlj_barrier();
      }
      const int count = min_int(n - c, kThreads);
      if (way >= S::kWays) continue;
      for (int k0 = way; k0 < count; k0 += S::kWays * S::kUnroll) {
        float w[S::kUnroll];
        Vec v[S::kUnroll][S::kPerThread];
#pragma unroll
        for (int u = 0; u < S::kUnroll; ++u) {
          const int k = k0 + u * S::kWays;
          long long r = 0;
          w[u] = 0.0f;
          if (k < count) {
            w[u] = weight_s[k];
            r = row_s[k];
          }
          const Vec* src = reinterpret_cast<const Vec*>(partial_out + r * kVDim);
#pragma unroll
          for (int i = 0; i < S::kPerThread; ++i) {
            const int g = S::vector(col, i);
            v[u][i] = Vec{};
            if (w[u] != 0.0f && g >= 0) v[u][i] = src[g];
          }
        }
#pragma unroll
        for (int u = 0; u < S::kUnroll; ++u) {
#pragma unroll
          for (int i = 0; i < S::kPerThread; ++i) {
#pragma unroll
            for (int e = 0; e < S::kVec; ++e) acc[i][e] = mlj_fma(w[u], v[u][i].v[e], acc[i][e]);
          }
        }
      }
    }
  }

  if constexpr (S::kWays > 1) {  // ways 1.. hand their sums to way 0
    if (way > 0 && way < S::kWays) {
#pragma unroll
      for (int i = 0; i < S::kPerThread; ++i) {
        const int g = S::vector(col, i);
        if (g < 0) continue;
        Vec& dst = way_s[(way - 1) * S::kGroups + g];
#pragma unroll
        for (int e = 0; e < S::kVec; ++e) dst.v[e] = acc[i][e];
      }
    }
    mlj_barrier();
    if (way == 0) {
#pragma unroll
      for (int other = 1; other < S::kWays; ++other) {
#pragma unroll
        for (int i = 0; i < S::kPerThread; ++i) {
          const int g = S::vector(col, i);
          if (g < 0) continue;
          const Vec& part = way_s[(other - 1) * S::kGroups + g];
#pragma unroll
          for (int e = 0; e < S::kVec; ++e) acc[i][e] += part.v[e];
        }
      }
    }
  }
  if (way == 0) {
    typename OutType::storage* o = static_cast<typename OutType::storage*>(out) + out_row * kVDim;
#pragma unroll
    for (int i = 0; i < S::kPerThread; ++i) {
      const int g = S::vector(col, i);
      if (g < 0) continue;
#pragma unroll
      for (int e = 0; e < S::kVec; ++e) o[g * S::kVec + e] = OutType::from_float(empty ? 0.0f : acc[i][e] / sum);
    }
  }
  if (Cfg::kWriteLse && tid == 0) lse[out_row] = empty ? mlj_neg_inf() : m + mlj_log2(sum) * kLn2;
}

// Grid x = total_q * heads rows, Cfg::kCombineThreads threads: row's splits k = 0 .. num_splits-1
// are partial rows k * rows + row.
template <class Cfg>
MLJ_DEVICE void decode_combine(const MljCombineParams& p) {
  trace_print_stage1();  // MLJ_TRACE only (decode/trace.cuh)
  const long long row = blockIdx.x;  // q_row * heads + head
  const long long rows = (long long)p.total_q * Cfg::kHeads;
  merge_partials<Cfg>(p.partial_out, p.partial_lse, p.num_splits, [=](int k) { return k * rows + row; }, p.out,
                      p.lse, row);
}

// Persistent decode, reduce (decode/schedule.cuh's design note). Fixed grid, graph-safe:
// x = max_split_tiles (persistent_layout; launch nothing when it is 0), y = rows_per_item;
// Cfg::kCombineThreads threads. CTA (i, r) exits when i >= header[1] (split tiles of this run),
// else merges row r of split tile t = reduce_tiles[i] over its partial slots
// reduce_partial_map[reduce_indptr[t] .. reduce_indptr[t+1]) with merge_partials (as
// decode_combine merges splits) and writes o (+ LSE) of row g * rows_per_item + r of request b
// (t = b * groups + g). Waits for the previous grid (stage 1) itself, after the map reads.
template <class Cfg>
MLJ_DEVICE void decode_persistent_reduce(const MljDecodeParams& p, const MljPersistentLayout& layout) {
  trace_phase_first(kPhaseReduceIn);  // MLJ_TRACE only (decode/trace.cuh)
  const int i = blockIdx.x;
  const int r = blockIdx.y;
  if (i >= layout.header[1]) return;  // the early exits are the CTA's as a whole
  const int t = layout.reduce_tiles[i];
  const int b = t / layout.groups;
  const int g = t - b * layout.groups;
  const int row = g * layout.rows_per_item + r;
  const int q_begin = p.qo_indptr[b];
  if (row >= (p.qo_indptr[b + 1] - q_begin) * Cfg::kHeads) return;
  const int* slots = layout.reduce_partial_map + layout.reduce_indptr[t];
  const int n = layout.reduce_indptr[t + 1] - layout.reduce_indptr[t];
  const int rows_per_item = layout.rows_per_item;
  // Everything above is the metadata kernel's or the caller's, complete before stage 1 let this
  // grid launch (it calls launch_dependents after its own wait); so it is read while stage 1
  // finishes, and only the partials wait for stage 1.
  mlj_wait_for_previous_grid();
  trace_phase_first(kPhaseReduceWaited);
  merge_partials<Cfg>(p.partial_out, p.partial_lse, n,
                      [=](int k) { return (long long)slots[k] * rows_per_item + r; }, p.out, p.lse,
                      (long long)q_begin * Cfg::kHeads + row);
  trace_phase_block_last(kPhaseReduceOut);
}

}  // namespace mlj
