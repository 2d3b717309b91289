// Portable (SIMT) MLA decode, stage 1. Runs on every target and every valid Spec; it is the
// correctness baseline the matrix-core families are checked against.
//
// Grid: x = group of Cfg::kHeadsPerCta query rows (row = token * heads + head, flattened over the
// request's query tokens), y = request, z = KV split. Each CTA streams its split's KV tokens
// through shared memory once for all of its rows, with an online softmax in base 2.
// num_splits == 1: writes the final output (+ LSE). Otherwise: normalised fp32 partials and the
// natural-log LSE of its split, merged by decode_combine. Empty ranges give 0 and LSE = -inf.
// Fused RoPE (Cfg::kRope) rotates q while staging it and each query token's own key in its tile.
// The body is decode_portable_work over a DecodeWork (decode/work.cuh); decode_stage1_portable
// (the grid above) and decode_persistent_portable (work items of decode/schedule.cuh) derive it.
#pragma once

#include "decode/numeric.cuh"
#include "decode/params.cuh"
#include "decode/rope.cuh"
#include "decode/work.cuh"

namespace mlj {

// The body of the portable kernel, over an explicit work description. Block-wide: every thread
// of the CTA calls it with the same work. Uses the whole dynamic shared memory; a caller running
// several works in a row needs a barrier between them.
template <class Cfg>
MLJ_DEVICE void decode_portable_work(const MljDecodeParams& p, const DecodeWork& work) {
  constexpr int kRows = Cfg::kHeadsPerCta;
  constexpr int kTile = Cfg::kTokensPerTile;
  constexpr int kWarps = Cfg::kWarps;
  constexpr int kThreads = kWarps * MLJ_WARP_SIZE;
  constexpr int kHeads = Cfg::kHeads;
  constexpr int kPageSize = Cfg::kPageSize;
  constexpr int kQkDim = Cfg::kKvLoraRank + Cfg::kRopeDim;
  constexpr int kVDim = Cfg::kKvLoraRank;
  constexpr int kColsPerThread = (kVDim + kThreads - 1) / kThreads;
  constexpr int kDimPerLane = (kQkDim + MLJ_WARP_SIZE - 1) / MLJ_WARP_SIZE;
  using QType = typename Cfg::QType;
  using KvType = typename Cfg::KvType;
  using OutType = typename Cfg::OutType;
  using KvStorage = typename KvType::storage;
  constexpr int kVecElems = 16 / (int)sizeof(KvStorage);
  constexpr int kVecsPerRow = kQkDim / kVecElems;

  const int tid = threadIdx.x;
  const int lane = tid % MLJ_WARP_SIZE;
  const int warp = tid / MLJ_WARP_SIZE;
  const int row0 = work.row0;

  const int q_begin = work.span.q_begin;
  const int q_count = work.span.q_count;
  const int rows_in_request = q_count * kHeads;
  if (row0 >= rows_in_request) return;  // rows past this request's query tokens: nothing to do

  const int page_begin = work.span.page_begin;
  const int kv_len = work.span.kv_len;

  const int kv_lo = work.kv_begin;
  const int kv_hi = work.kv_end;
  // Keys past the causal limit of the CTA's last query token are never needed.
  const int last_token = min_int(q_count - 1, (row0 + kRows - 1) / kHeads);
  const int cta_kv_end = Cfg::kCausal ? max_int(kv_lo, min_int(kv_hi, kv_len - q_count + last_token + 1)) : kv_hi;

  unsigned char* shared = mlj_dynamic_shared();
  float* q_s = reinterpret_cast<float*>(shared);                     // [kRows][kQkDim]
  KvStorage* kv_s = reinterpret_cast<KvStorage*>(q_s + kRows * kQkDim);  // [kTile][kQkDim]
  float* p_s = reinterpret_cast<float*>(kv_s + kTile * kQkDim);       // [kRows][kTile]
  float* m_s = p_s + kRows * kTile;                                   // running max (log2 units)
  float* l_s = m_s + kRows;                                           // running sum
  float* alpha_s = l_s + kRows;                                       // rescale of this step

  // Logits are sm_scale * q_scale * kv_scale * <q, k>; without a soft-cap log2(e) is folded in too.
  const float logit_scale = p.sm_scale * p.q_scale * p.kv_scale;
  const float q_prescale = Cfg::kLogitCap > 0.0f ? logit_scale : logit_scale * kLog2e;
  const typename QType::storage* q_base = static_cast<const typename QType::storage*>(p.q);
  for (int i = tid; i < kRows * kQkDim; i += kThreads) {
    const int r = i / kQkDim;
    const int d = i - r * kQkDim;
    const int row = row0 + r;
    float v = 0.0f;
    if (row < rows_in_request) {
      const int t = row / kHeads;
      const int h = row - t * kHeads;
      const typename QType::storage* q_row =
          q_base + (long long)(q_begin + t) * p.q_token_stride + (long long)h * kQkDim;
      v = QType::to_float(q_element<Cfg, QType>(q_row, d, q_begin + t, p)) * q_prescale;
    }
    q_s[i] = v;
  }
  if constexpr (Cfg::kRope != RopeStyle::none) {
    rope_zero_keyless_tokens<Cfg, KvType>(kv_len, q_begin, q_count, row0, kRows, work.zero_keyless, tid,
                                          kThreads, p);
  }
  if (tid < kRows) {
    m_s[tid] = mlj_neg_inf();
    l_s[tid] = 0.0f;
  }

  float acc[kColsPerThread][kRows];
#pragma unroll
  for (int c = 0; c < kColsPerThread; ++c)
#pragma unroll
    for (int r = 0; r < kRows; ++r) acc[c][r] = 0.0f;

  const KvStorage* kv_base = static_cast<const KvStorage*>(p.kv);
  for (int tile_start = kv_lo; tile_start < cta_kv_end; tile_start += kTile) {
    mlj_barrier();  // the previous step's readers of kv_s / p_s are done
    for (int i = tid; i < kTile * kVecsPerRow; i += kThreads) {
      const int j = i / kVecsPerRow;
      const int v = i - j * kVecsPerRow;
      const int pos = tile_start + j;
      Vec16 value = {{0u, 0u, 0u, 0u}};  // zero-fill past the end: 0 * p stays finite
      if (pos < cta_kv_end) {
        const int page = p.kv_indices[page_begin + pos / kPageSize];
        const long long offset = (long long)page * p.kv_page_stride + (long long)(pos % kPageSize) * kQkDim;
        value = reinterpret_cast<const Vec16*>(kv_base + offset)[v];
      }
      reinterpret_cast<Vec16*>(kv_s + j * kQkDim)[v] = value;
    }
    mlj_barrier();
    if constexpr (Cfg::kRope != RopeStyle::none) {
      const int tile_end = min_int(tile_start + kTile, cta_kv_end);
      if (rope_own_keys<Cfg, KvType>(kv_s, kQkDim, tile_start, tile_end, kv_len, q_begin, q_count, row0, kRows, tid,
                                     kThreads, p)) {
        mlj_barrier();  // the rotated keys are visible to every warp
      }
    }

    // Scores: one warp per key token, lanes split the qk dimension, one reduction per row.
    for (int j = warp; j < kTile; j += kWarps) {
      float k_part[kDimPerLane];
#pragma unroll
      for (int e = 0; e < kDimPerLane; ++e) {
        const int d = lane + e * MLJ_WARP_SIZE;
        k_part[e] = d < kQkDim ? KvType::to_float(kv_s[j * kQkDim + d]) : 0.0f;
      }
      const int pos = tile_start + j;
#pragma unroll
      for (int r = 0; r < kRows; ++r) {
        float dot = 0.0f;
#pragma unroll
        for (int e = 0; e < kDimPerLane; ++e) {
          const int d = lane + e * MLJ_WARP_SIZE;
          if (d < kQkDim) dot += q_s[r * kQkDim + d] * k_part[e];
        }
        dot = warp_sum(dot);
        if (lane == 0) {
          const int row = row0 + r;
          const int t = row / kHeads;
          const int row_kv_end = Cfg::kCausal ? min_int(kv_hi, kv_len - q_count + t + 1) : kv_hi;
          const bool visible = row < rows_in_request && pos < row_kv_end;
          float s = dot;
          if (Cfg::kLogitCap > 0.0f) s = Cfg::kLogitCap * mlj_tanh(s / Cfg::kLogitCap) * kLog2e;
          p_s[r * kTile + j] = visible ? s : mlj_neg_inf();
        }
      }
    }
    mlj_barrier();

    // Online softmax: one warp per row updates the running max / sum and turns scores into p.
    for (int r = warp; r < kRows; r += kWarps) {
      float tile_max = mlj_neg_inf();
      for (int j = lane; j < kTile; j += MLJ_WARP_SIZE) tile_max = fmaxf(tile_max, p_s[r * kTile + j]);
      tile_max = warp_max(tile_max);
      const float m_old = m_s[r];
      const float m_new = fmaxf(m_old, tile_max);
      const bool any_visible = m_new != mlj_neg_inf();
      float sum = 0.0f;
      for (int j = lane; j < kTile; j += MLJ_WARP_SIZE) {
        const float pj = any_visible ? mlj_exp2(p_s[r * kTile + j] - m_new) : 0.0f;
        p_s[r * kTile + j] = pj;
        sum += pj;
      }
      sum = warp_sum(sum);
      if (lane == 0) {
        const float alpha = any_visible ? mlj_exp2(m_old - m_new) : 1.0f;
        alpha_s[r] = alpha;
        l_s[r] = l_s[r] * alpha + sum;
        m_s[r] = m_new;
      }
    }
    mlj_barrier();

    // P @ V: each thread owns kColsPerThread V columns for all rows.
#pragma unroll
    for (int ci = 0; ci < kColsPerThread; ++ci) {
      const int c = tid + ci * kThreads;
      if (c < kVDim) {
#pragma unroll
        for (int r = 0; r < kRows; ++r) acc[ci][r] *= alpha_s[r];
        for (int j = 0; j < kTile; ++j) {
          const float v = KvType::to_float(kv_s[j * kQkDim + c]);
#pragma unroll
          for (int r = 0; r < kRows; ++r) acc[ci][r] += p_s[r * kTile + j] * v;
        }
      }
    }
  }
  mlj_barrier();

  const bool final_output = work.partial_out == nullptr;
  typename OutType::storage* out_base = static_cast<typename OutType::storage*>(p.out);
#pragma unroll
  for (int ci = 0; ci < kColsPerThread; ++ci) {
    const int c = tid + ci * kThreads;
    if (c >= kVDim) continue;
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      const int row = row0 + r;
      if (row >= rows_in_request) continue;
      const float l = l_s[r];
      const float o = l > 0.0f ? acc[ci][r] / l * p.kv_scale : 0.0f;
      const long long q_row = (long long)q_begin * kHeads + row;  // == (q_begin + t) * heads + h
      if (final_output) {
        out_base[q_row * kVDim + c] = OutType::from_float(o);
      } else {
        work.partial_out[(work.partial_base + row) * kVDim + c] = o;
      }
    }
  }
  if (tid < kRows && row0 + tid < rows_in_request) {
    const float l = l_s[tid];
    const float lse = l > 0.0f ? (m_s[tid] + mlj_log2(l)) * kLn2 : mlj_neg_inf();
    const long long q_row = (long long)q_begin * kHeads + row0 + tid;
    if (!final_output) {
      work.partial_lse[work.partial_base + row0 + tid] = lse;
    } else if (Cfg::kWriteLse) {
      p.lse[q_row] = lse;
    }
  }
}

// Grid: x = group of Cfg::kHeadsPerCta query rows, y = request, z = KV split (see the top).
template <class Cfg>
MLJ_DEVICE void decode_stage1_portable(const MljDecodeParams& p) {
  DecodeWork work;
  if (grid_work<Cfg, Cfg::kHeadsPerCta, Cfg::kTokensPerTile>(p, work)) decode_portable_work<Cfg>(p, work);
}

// Persistent decode: same block and dynamic shared memory as decode_stage1_portable; the items
// of decode/schedule.cuh (rows_per_item == Cfg::kHeadsPerCta) through persistent_walk.
template <class Cfg>
MLJ_DEVICE void decode_persistent_portable(const MljDecodeParams& p, const MljPersistentLayout& layout) {
  persistent_walk<Cfg, Cfg::kHeadsPerCta>(p, layout, [&](const DecodeWork& work) { decode_portable_work<Cfg>(p, work); });
}

}  // namespace mlj
