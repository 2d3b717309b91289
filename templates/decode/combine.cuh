// MLA decode stage 2: merges the split partials of each (query token, head) by their LSE, a warp
// (or 2-8 warps) a row; all splits of a row were written by stage 1 (empty ones as 0 / -inf).
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

// Developers (MLAJIT_COMPILE_OPTIONS, e.g. -DMLJ_MERGE_LOADS=16 -DMLJ_COMBINE_MIN_BLOCKS=2):
// vectors of 16 B a lane keeps in flight, and partials a warp takes before the persistent
// reduce gives a row another warp (the grid combine's warps a row come from the host's
// Source::combine_ways, which follows the default).
#ifndef MLJ_MERGE_LOADS
#define MLJ_MERGE_LOADS 8
#endif
#ifndef MLJ_MERGE_PARTIALS_PER_WARP
#define MLJ_MERGE_PARTIALS_PER_WARP 2
#endif

// How one warp covers a row of kVDim fp32 columns: vectors of kVec floats (16 bytes when kVDim
// allows), lane l taking the row's vectors l, l + W, l + 2W, ... (W = MLJ_WARP_SIZE), and kUnroll
// partials' loads in flight at a time (MLJ_MERGE_LOADS vectors a lane).
template <int kVDim>
struct RowShape {
  static constexpr int kVec = kVDim % 4 == 0 ? 4 : kVDim % 2 == 0 ? 2 : 1;
  static constexpr int kGroups = kVDim / kVec;  // vectors per row
  static constexpr int kPerLane = (kGroups + MLJ_WARP_SIZE - 1) / MLJ_WARP_SIZE;
  static constexpr int kUnroll = kPerLane >= MLJ_MERGE_LOADS ? 1 : MLJ_MERGE_LOADS / kPerLane;

  // The row's vector that is vector i of the lane; -1 past the row.
  static MLJ_DEVICE int vector(int lane, int i) {
    const int g = lane + i * MLJ_WARP_SIZE;
    return g < kGroups ? g : -1;
  }
};

// Warps of a combine / reduce CTA.
template <class Cfg>
constexpr int kCombineWarps = Cfg::kCombineThreads / MLJ_WARP_SIZE;

// Warps that merge one row of n partials (a power of two, at most the CTA's warps): each takes
// about 2 of them, whose loads are in flight at once (at 512 columns). The grid combine's host side uses the same
// rule (mlajit::Source::combine_ways) to size its grid and passes the result in.
template <class Cfg>
MLJ_DEVICE int merge_ways(int n) {
  int ways = 1;
  while (ways < kCombineWarps<Cfg> && MLJ_MERGE_PARTIALS_PER_WARP * ways < n) ways *= 2;
  return ways;
}

// The one merge of split partials, for decode_combine and decode_persistent_reduce. A CTA merges
// kCombineWarps / ways rows, `ways` warps a row (ways uniform over the CTA, a power of two that
// divides kCombineWarps): warp w takes row slot w / ways and, of that row's partials, those with
// k % ways == w % ways; their sums meet in shared memory. Every thread of the CTA calls it (one
// barrier when ways > 1); a warp whose row slot has no row passes active = false. Partial k
// (0 <= k < n) is fp32 row partial_row(k) (a long long: partial_out[row * kVDim ..],
// partial_lse[row], natural log); writes out[out_row] = sum_k exp(lse_k - m) o_k /
// sum_k exp(lse_k - m) (m = max_k lse_k) as Cfg::OutType and, when Cfg::kWriteLse,
// lse[out_row] = m + log(sum). A row whose partials all have LSE -inf (or n == 0) gets 0 and LSE
// -inf. A partial of weight 0 contributes nothing, even when its row was never written (NaN):
// the first kUnroll of a warp's partials are read with the LSEs, before the weights are known,
// and dropped when their weight is 0; later ones are not read. Every warp of a row reads all its
// LSEs once (lane l: partials l, l + W, ...; it keeps the rows and LSEs of the first two, handed
// to the other lanes by shuffles), then its own partials' rows, kUnroll at a time.
// Every thread calls ready() (uniformly: it may hold a barrier) once the partials' rows are
// known and before any partial or LSE is read (the persistent reduce waits there for its tile).
// partial_out must be 16-byte aligned. kStampPhases: the persistent reduce's merge steps go to
// the phases trace (decode/trace.cuh; nothing without MLJ_TRACE / MLJ_TRACE_PHASES).
template <class Cfg, bool kStampPhases = false, class PartialRow, class Ready>
MLJ_DEVICE void merge_partials(const float* partial_out, const float* partial_lse, int n, PartialRow partial_row,
                               Ready ready, void* out, float* lse, long long out_row, bool active, int ways) {
  constexpr int kVDim = Cfg::kKvLoraRank;
  constexpr int kWarp = MLJ_WARP_SIZE;
  constexpr int kWarps = kCombineWarps<Cfg>;
  using S = RowShape<kVDim>;
  using Vec = FloatVec<S::kVec>;
  using OutType = typename Cfg::OutType;
  static_assert((kWarps & (kWarps - 1)) == 0, "merge_partials: a power-of-two number of warps a CTA");
  // Ways 1.. of row slot r hand their sums to way 0 at way_s[r * (ways - 1) + way - 1].
  MLJ_SHARED Vec way_s[kWarps > 1 ? kWarps - 1 : 1][S::kGroups];

  const int lane = int(threadIdx.x) % kWarp;
  const int warp = int(threadIdx.x) / kWarp;
  const int way = warp % ways;
  // Lane l keeps the row and weight of partials l and l + W (the first 2W), read once; later
  // ones are read where they are used.
  long long held_row[2] = {0, 0};
  float held_lse[2] = {mlj_neg_inf(), mlj_neg_inf()};
  float m = mlj_neg_inf(), sum = 0.0f;
  float acc[S::kPerLane][S::kVec] = {};
  // The row of this warp's partial k (uniform over the warp): from the lane that holds it.
  auto row_of = [&](int k) {
    return k < 2 * kWarp ? shfl_long(k >= kWarp ? held_row[1] : held_row[0], k % kWarp) : partial_row(k);
  };
  // kStampPhases: this warp's time once its sums (both ends of a lane's) are computed.
  auto stamp_after_sums = [&](int phase) {
    if (kStampPhases && lane == 0) trace_phase_now_last_after(phase, acc[0][0] + acc[S::kPerLane - 1][S::kVec - 1]);
  };
  auto accumulate = [&](const float (&w)[S::kUnroll], const Vec (&v)[S::kUnroll][S::kPerLane]) {
#pragma unroll
    for (int u = 0; u < S::kUnroll; ++u) {
#pragma unroll
      for (int i = 0; i < S::kPerLane; ++i) {
#pragma unroll
        for (int e = 0; e < S::kVec; ++e) acc[i][e] = mlj_fma(w[u], v[u][i].v[e], acc[i][e]);
      }
    }
  };
  if (active) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      if (lane + h * kWarp < n) held_row[h] = partial_row(lane + h * kWarp);
    }
  }
  ready();  // the partials may be read from here on
  // The first kUnroll of this warp's partials are read together with the LSEs, before their
  // weights are known (one round trip instead of two on the merge's path; a partial of weight 0,
  // possibly never written, is dropped after the read) - when the registers allow: the rows held
  // meanwhile and the sums (kPerLane vectors a lane) both live (at 512 columns, not at 1024).
  constexpr bool kReadAhead = S::kPerLane * S::kVec <= 16;
  Vec first[S::kUnroll][S::kPerLane];
  const int mine = active ? (n - way + ways - 1) / ways : 0;  // this warp's partials k = way + ways * j
  auto read_first = [&](bool wanted[S::kUnroll]) {
#pragma unroll
    for (int u = 0; u < S::kUnroll; ++u) {
      const long long r = wanted[u] ? row_of(way + ways * u) : 0;  // wanted[u]: uniform over the warp
      const Vec* src = reinterpret_cast<const Vec*>(partial_out + r * kVDim);
#pragma unroll
      for (int i = 0; i < S::kPerLane; ++i) {
        const int g = S::vector(lane, i);
        first[u][i] = Vec{};
        if (wanted[u] && g >= 0) first[u][i] = src[g];
      }
    }
  };
  if (active) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      if (lane + h * kWarp < n) held_lse[h] = partial_lse[held_row[h]];
    }
    if (kReadAhead) {
      bool real[S::kUnroll];
#pragma unroll
      for (int u = 0; u < S::kUnroll; ++u) real[u] = u < mine;
      read_first(real);
    }
    m = fmaxf(held_lse[0], held_lse[1]);
    for (int k = lane + 2 * kWarp; k < n; k += kWarp) m = fmaxf(m, partial_lse[partial_row(k)]);
    m = warp_max(m);
    if (kStampPhases && lane == 0) trace_phase_now_last_after(kPhaseMergeLseLast, m);
  }
  const bool empty = m == mlj_neg_inf();  // uniform over the warp
  auto weight = [&](float l) { return empty ? 0.0f : mlj_exp2((l - m) * kLog2e); };
  if (active && !empty) {
    const float held_weight[2] = {weight(held_lse[0]), weight(held_lse[1])};
    sum = held_weight[0] + held_weight[1];
    for (int k = lane + 2 * kWarp; k < n; k += kWarp) sum += weight(partial_lse[partial_row(k)]);
    sum = warp_sum(sum);
    // The weight of this warp's partial j (0 past its last).
    auto weight_of = [&](int j) {
      const int k = way + ways * j;  // uniform over the warp
      if (j >= mine) return 0.0f;
      if (k < 2 * kWarp) return mlj_shfl(k >= kWarp ? held_weight[1] : held_weight[0], k % kWarp);
      return weight(partial_lse[partial_row(k)]);
    };
    {
      float w[S::kUnroll];
      bool weighted[S::kUnroll];
#pragma unroll
      for (int u = 0; u < S::kUnroll; ++u) {
        w[u] = weight_of(u);
        weighted[u] = w[u] != 0.0f;
      }
      if (!kReadAhead) read_first(weighted);
#pragma unroll
      for (int u = 0; u < S::kUnroll; ++u) {
#pragma unroll
        for (int i = 0; i < S::kPerLane; ++i) {
          if (!weighted[u]) first[u][i] = Vec{};
        }
      }
      accumulate(w, first);
    }
    for (int j0 = S::kUnroll; j0 < mine; j0 += S::kUnroll) {
      float w[S::kUnroll];
      Vec v[S::kUnroll][S::kPerLane];
#pragma unroll
      for (int u = 0; u < S::kUnroll; ++u) {
        w[u] = weight_of(j0 + u);
        const long long r = w[u] != 0.0f ? row_of(way + ways * (j0 + u)) : 0;
        const Vec* src = reinterpret_cast<const Vec*>(partial_out + r * kVDim);
#pragma unroll
        for (int i = 0; i < S::kPerLane; ++i) {
          const int g = S::vector(lane, i);
          v[u][i] = Vec{};
          if (w[u] != 0.0f && g >= 0) v[u][i] = src[g];
        }
      }
      accumulate(w, v);
    }
    stamp_after_sums(kPhaseMergeSummedLast);
  }
  if (ways > 1) {  // uniform over the CTA
    Vec* handed = way_s[(warp / ways) * (ways - 1) + way - 1];
    if (active && !empty && way > 0) {
#pragma unroll
      for (int i = 0; i < S::kPerLane; ++i) {
        const int g = S::vector(lane, i);
        if (g < 0) continue;
#pragma unroll
        for (int e = 0; e < S::kVec; ++e) handed[g].v[e] = acc[i][e];
      }
    }
    mlj_barrier();
    if (active && !empty && way == 0) {
      for (int other = 1; other < ways; ++other) {
        const Vec* part = way_s[(warp / ways) * (ways - 1) + other - 1];
#pragma unroll
        for (int i = 0; i < S::kPerLane; ++i) {
          const int g = S::vector(lane, i);
          if (g < 0) continue;
#pragma unroll
          for (int e = 0; e < S::kVec; ++e) acc[i][e] += part[g].v[e];
        }
      }
    }
  }
  if (!active || way > 0) return;
  stamp_after_sums(kPhaseMergeExchangedLast);
  typename OutType::storage* o = static_cast<typename OutType::storage*>(out) + out_row * kVDim;
#pragma unroll
  for (int i = 0; i < S::kPerLane; ++i) {
    const int g = S::vector(lane, i);
    if (g < 0) continue;
#pragma unroll
    for (int e = 0; e < S::kVec; ++e) o[g * S::kVec + e] = OutType::from_float(empty ? 0.0f : acc[i][e] / sum);
  }
  if (Cfg::kWriteLse && lane == 0) lse[out_row] = empty ? mlj_neg_inf() : m + mlj_log2(sum) * kLn2;
}

// Grid x = ceil(total_q * heads * ways / kCombineWarps) (ways = p.ways, the host's
// combine_ways(num_splits)), Cfg::kCombineThreads threads: row slot s of CTA x merges row
// x * kCombineWarps / ways + s (q_row * heads + head), whose splits k = 0 .. num_splits-1 are
// partial rows k * rows + row.
template <class Cfg>
MLJ_DEVICE void decode_combine(const MljCombineParams& p) {
  trace_print_stage1();  // MLJ_TRACE only (decode/trace.cuh)
  const long long rows = (long long)p.total_q * Cfg::kHeads;
  const int rows_per_cta = kCombineWarps<Cfg> / p.ways;
  const long long row = (long long)blockIdx.x * rows_per_cta + int(threadIdx.x) / MLJ_WARP_SIZE / p.ways;
  merge_partials<Cfg>(p.partial_out, p.partial_lse, p.num_splits, [=](int k) { return k * rows + row; }, [] {},
                      p.out, p.lse, row, row < rows, p.ways);
}

// Persistent decode, reduce (decode/schedule.cuh's design note). Fixed grid, graph-safe:
// x = rows_per_item, y = max_split_tiles (persistent_layout; launch nothing when it is 0), so the
// CTAs of this run's split tiles are dispatched first; Cfg::kCombineThreads threads. CTA (y, i)
// exits when i >= header[1] (split tiles of this run),
// else takes split tile t = reduce_tiles[i], whose n partial slots are
// reduce_partial_map[reduce_indptr[t] .. reduce_indptr[t+1]), and merges them (merge_partials,
// as decode_combine merges splits, ways = merge_ways(n) warps a row) for rows
// r = y * R .. y * R + R - 1 (R = kCombineWarps / ways; none when y * R >= rows_per_item, and
// only rows below rows_per_item), writing o (+ LSE) of row g * rows_per_item + r of request b
// (t = b * groups + g). Waits for stage 1's n pieces of tile t (layout.pieces_done), not the grid;
// the tile's last CTA past that wait zeroes its counts for the next decode (layout.pieces_taken).
template <class Cfg>
MLJ_DEVICE void decode_persistent_reduce(const MljDecodeParams& p, const MljPersistentLayout& layout) {
  trace_phase_first(kPhaseReduceIn);  // MLJ_TRACE / MLJ_TRACE_PHASES only (decode/trace.cuh)
  if (threadIdx.x == 0) trace_phase_now_last(kPhaseReduceInLast);  // whether reduce CTAs get SMs late
  const int i = blockIdx.y;
  if (i >= layout.header[1]) return;  // the CTA as a whole
  const int t = layout.reduce_tiles[i];
  const int* slots = layout.reduce_partial_map + layout.reduce_indptr[t];
  const int n = layout.reduce_indptr[t + 1] - layout.reduce_indptr[t];
  const int ways = merge_ways<Cfg>(n);
  const int rows_per_cta = kCombineWarps<Cfg> / ways;
  const int rows_per_item = layout.rows_per_item;
  if (int(blockIdx.x) * rows_per_cta >= rows_per_item) return;  // the CTA as a whole
  const int r = int(blockIdx.x) * rows_per_cta + int(threadIdx.x) / MLJ_WARP_SIZE / ways;
  const int b = t / layout.groups;
  const int g = t - b * layout.groups;
  const int row = g * rows_per_item + r;
  const int q_begin = p.qo_indptr[b];
  const bool active = r < rows_per_item && row < (p.qo_indptr[b + 1] - q_begin) * Cfg::kHeads;
  // Everything above is the metadata kernel's or the caller's, complete before stage 1 let this
  // grid launch (it calls launch_dependents after its own wait); so it is read while stage 1
  // runs, and so are the partials' slots (merge_partials reads them before `ready`). The
  // partials wait for their own tile only: stage 1 counts each piece once written
  // (layout.pieces_done, zeroed by the metadata kernel), so a tile's merge runs on an SM a
  // finished worker freed while the others still stream (stage 1 fills every SM while it runs,
  // and all its CTAs are resident before any of these launch: a wait here cannot block them).
  // The tile's last reduce CTA past this wait zeroes both counts (none reads them again in this
  // decode), so the same metadata serves the next decode, whose stage 1 starts after this grid.
  int* const done = layout.pieces_done + t;
  int* const taken = layout.pieces_taken + t;
  const auto pieces_written = [=] {
    if (threadIdx.x == 0) {
      while (mlj_load_acquire(done) < n) mlj_spin_pause();
      trace_phase_now_last(kPhaseReduceWaitedLast);  // MLJ_TRACE / MLJ_TRACE_PHASES only (decode/trace.cuh)
      const int users = min_int(int(gridDim.x), ceil_div(rows_per_item, rows_per_cta));  // CTAs not returned above
      if (mlj_atomic_add(taken, 1) == users - 1) {
        *taken = 0;
        *done = 0;
      }
    }
    mlj_barrier();
    trace_phase_first(kPhaseReduceWaited);
  };
  merge_partials<Cfg, true>(p.partial_out, p.partial_lse, n,
                      [=](int k) { return (long long)slots[k] * rows_per_item + r; }, pieces_written, p.out, p.lse,
                      (long long)q_begin * Cfg::kHeads + row, active, ways);
  trace_phase_last(kPhaseReduceOut);
}

}  // namespace mlj
