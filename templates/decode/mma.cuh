// Matrix-core MLA decode, stage 1 (mma.sync m16n8k16 + ldmatrix + cp.async; sm_80 and later).
//
// One CTA = 16 query rows (token x head, flattened) x one request x one KV range, 8 warps; the
// range comes from the grid (split-K) or from a persistent worker's items (decode/work.cuh).
// KV tiles of kTile tokens stream through a kStages-deep cp.async ring; each KV row is read from
// DRAM once per CTA and serves both QK^T (all 576 columns) and PV (its first 512 columns).
//   S = Q K^T : warp w computes tokens [(w % 2) * kTile/2, +kTile/2) over a quarter of the qk
//               dimension (w / 2); the four partial sums meet in shared memory.
//   softmax   : every warp rebuilds the same online-softmax state for its fragment's rows and
//               turns P into mma A fragments in registers.
//   O += P V  : warp w owns V columns [w * v_dim/8, +v_dim/8).
// Rows past the request's query tokens are computed on zeros and never written.
// Fused RoPE (Cfg::kRope): q is rotated while staged, each query token's own key in its tile.
#pragma once

#include "decode/numeric.cuh"
#include "decode/params.cuh"
#include "decode/rope.cuh"
#include "decode/work.cuh"

namespace mlj {

template <class Cfg>
struct MmaDecodeLayout {
  static constexpr int kRows = 16;
  static constexpr int kWarps = 8;
  static constexpr int kTile = Cfg::kTokensPerTile;
  static constexpr int kStages = Cfg::kStages;
  static constexpr int kQkDim = Cfg::kKvLoraRank + Cfg::kRopeDim;
  static constexpr int kVDim = Cfg::kKvLoraRank;
  static constexpr int kRowElems = kQkDim + 8;  // +16 B per row: ldmatrix rows land in distinct banks
  static constexpr int kKSplit = 4;             // warps sharing one token group's qk dimension
  static constexpr int kKStepsPerWarp = kQkDim / 16 / kKSplit;
  static constexpr int kTokensPerWarp = kTile / 2;
  static constexpr int kNTilesPerWarp = kTokensPerWarp / 8;
  static constexpr int kVColsPerWarp = kVDim / kWarps;
  static constexpr int kVNTiles = kVColsPerWarp / 8;
  static constexpr int kChunksPerRow = kQkDim * 2 / 16;  // 16-byte copies per KV row
  static constexpr int kThreadsPerToken = kWarps * 32 / kTile;  // threads copying one KV row
  static constexpr int kChunksPerThread = kChunksPerRow / kThreadsPerToken;
  static constexpr int kScoreStride = kTile + 8;  // floats; float2 accesses of a fragment hit distinct banks
  // Shared memory, in bytes.
  static constexpr int kStageBytes = kTile * kRowElems * 2;
  static constexpr int kQBytes = kRows * kRowElems * 2;
  static constexpr int kPartialBytes = kKSplit * kRows * kScoreStride * 4;
  static constexpr int kScoreBytes = kRows * kScoreStride * 4;
  static constexpr int kTotalBytes = kStages * kStageBytes + kQBytes + kPartialBytes + kScoreBytes;
};

// The body of the mma kernel, over one DecodeWork (decode/work.cuh). Block-wide; uses the whole
// dynamic shared memory and drains its cp.async ring before returning.
template <class Cfg>
MLJ_DEVICE void decode_mma_work(const MljDecodeParams& p, const DecodeWork& work) {
  using L = MmaDecodeLayout<Cfg>;
  constexpr int kHeads = Cfg::kHeads;
  constexpr int kPageSize = Cfg::kPageSize;
  constexpr bool kBf16 = Cfg::kMmaBf16;
  constexpr float kLog2e = 1.4426950408889634f;
  constexpr float kLn2 = 0.6931471805599453f;
  using Storage = unsigned short;
  using OutType = typename Cfg::OutType;
  static_assert(L::kQkDim % 64 == 0 && L::kVDim % 128 == 0, "mma decode needs qk_dim % 64 == 0, v_dim % 128 == 0");
  static_assert(L::kTile % 32 == 0, "tokens per tile must be a multiple of 32");
  static_assert(L::kTotalBytes == Cfg::kSharedBytes, "host and kernel disagree on shared memory");
  static_assert(L::kChunksPerRow % L::kThreadsPerToken == 0, "a KV row must split evenly over its threads");

  const int tid = threadIdx.x;
  const int lane = tid % 32;
  const int warp = tid / 32;
  const int batch_index = work.request;
  const int row0 = work.row0;

  const int q_begin = p.qo_indptr[batch_index];
  const int q_count = p.qo_indptr[batch_index + 1] - q_begin;
  const int rows_in_request = q_count * kHeads;
  if (row0 >= rows_in_request) return;

  const int page_begin = p.kv_indptr[batch_index];
  const int kv_len = request_kv_len<kPageSize>(p, batch_index);
  const int kv_lo = work.kv_begin;
  const int kv_hi = work.kv_end;
  const int last_token = min_int(q_count - 1, (row0 + L::kRows - 1) / kHeads);
  const int cta_kv_end = Cfg::kCausal ? max_int(kv_lo, min_int(kv_hi, kv_len - q_count + last_token + 1)) : kv_hi;
  const int num_tiles = ceil_div(cta_kv_end - kv_lo, L::kTile);

  unsigned char* shared = mlj_dynamic_shared();
  Storage* kv_s = reinterpret_cast<Storage*>(shared);                              // [kStages][kTile][kRowElems]
  Storage* q_s = reinterpret_cast<Storage*>(shared + L::kStages * L::kStageBytes);  // [16][kRowElems]
  float* partial_s = reinterpret_cast<float*>(shared + L::kStages * L::kStageBytes + L::kQBytes);  // [4][16][kTile]
  float* score_s = partial_s + L::kKSplit * L::kRows * L::kScoreStride;                 // [16][kTile]

  const Storage* kv_base = static_cast<const Storage*>(p.kv);
  // Each thread copies kChunksPerThread 16-byte pieces of one token's row per tile. The row's
  // address (a page-table lookup) is resolved one tile ahead, so the index load's latency hides
  // behind the current tile's math instead of stalling the copy loop.
  const int my_token = tid / L::kThreadsPerToken;
  const int my_sub = tid % L::kThreadsPerToken;
  auto row_source = [&](int tile) -> const Storage* {
    const int pos = kv_lo + tile * L::kTile + my_token;
    if (tile >= num_tiles || pos >= cta_kv_end) return nullptr;
    const int page = p.kv_indices[page_begin + pos / kPageSize];
    return kv_base + (long long)page * p.kv_page_stride + (long long)(pos % kPageSize) * L::kQkDim;
  };
  auto load_tile = [&](const Storage* src, int slot) {
    Storage* dst = kv_s + slot * L::kTile * L::kRowElems + my_token * L::kRowElems;
#pragma unroll
    for (int k = 0; k < L::kChunksPerThread; ++k) {
      const int c = my_sub + k * L::kThreadsPerToken;
      // A null source (past the range) zero-fills: 0 * p stays finite.
      mlj_cp_async16(dst + c * 8, src != nullptr ? src + c * 8 : kv_base, src != nullptr ? 16 : 0);
    }
  };

  // Start the KV pipeline, then stage Q (zeros for rows outside the request).
#pragma unroll
  for (int s = 0; s < L::kStages - 1; ++s) {
    if (s < num_tiles) load_tile(row_source(s), s);
    mlj_cp_async_commit();
  }
  const Storage* prefetched_source = row_source(L::kStages - 1);
  const Storage* q_base = static_cast<const Storage*>(p.q);
  for (int i = tid; i < L::kRows * (L::kQkDim / 8); i += L::kWarps * 32) {
    const int r = i / (L::kQkDim / 8);
    const int c = i - r * (L::kQkDim / 8);
    const int row = row0 + r;
    Vec16 v = {{0u, 0u, 0u, 0u}};
    if (row < rows_in_request) {
      const int t = row / kHeads;
      const int h = row - t * kHeads;
      const Storage* q_row = q_base + (long long)(q_begin + t) * p.q_token_stride + (long long)h * L::kQkDim;
      if constexpr (Cfg::kRope != RopeStyle::none) {
        v = q_chunk16<Cfg, typename Cfg::QType>(q_row, c, q_begin + t, p);
      } else {
        v = reinterpret_cast<const Vec16*>(q_row)[c];
      }
    }
    reinterpret_cast<Vec16*>(q_s + r * L::kRowElems)[c] = v;
  }
  if constexpr (Cfg::kRope != RopeStyle::none) {
    rope_zero_keyless_tokens<Cfg, typename Cfg::KvType>(kv_len, q_begin, q_count, row0, L::kRows,
                                                        work.zero_keyless, tid,
                                                        L::kWarps * 32, p);
  }
  mlj_barrier();

  // Warp roles for S: a token half of the tile and a quarter of the qk dimension.
  const int token_group = warp % 2;
  const int k_quarter = warp / 2;

  // Per-thread softmax state for the fragment rows lane/4 and lane/4 + 8.
  const int frag_row0 = lane / 4;
  const int frag_row1 = frag_row0 + 8;
  float m_run[2] = {mlj_neg_inf(), mlj_neg_inf()};
  float l_run[2] = {0.0f, 0.0f};
  float acc[L::kVNTiles][4];
#pragma unroll
  for (int n = 0; n < L::kVNTiles; ++n) acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.0f;

  const float logit_scale = p.sm_scale * p.q_scale * p.kv_scale;
  // Causal limit (exclusive) of each CTA row, for masking scores.
  for (int tile = 0; tile < num_tiles; ++tile) {
    mlj_cp_async_wait<L::kStages - 2>();
    mlj_barrier();  // tile `tile` has landed for all threads; slot (tile - 1) is free
    {
      const int next = tile + L::kStages - 1;
      if (next < num_tiles) load_tile(prefetched_source, next % L::kStages);
      mlj_cp_async_commit();
      prefetched_source = row_source(next + 1);
    }
    const Storage* k_tile = kv_s + (tile % L::kStages) * L::kTile * L::kRowElems;
    const int tile_start = kv_lo + tile * L::kTile;
    if constexpr (Cfg::kRope != RopeStyle::none) {
      Storage* own_tile = kv_s + (tile % L::kStages) * L::kTile * L::kRowElems;
      if (rope_own_keys<Cfg, typename Cfg::KvType>(own_tile, L::kRowElems, tile_start,
                                                   min_int(tile_start + L::kTile, cta_kv_end), kv_len, q_begin, q_count,
                                                   row0, L::kRows, tid, L::kWarps * 32, p)) {
        mlj_barrier();  // the rotated keys are visible to every warp
      }
    }

    // ---- S partial = Q[:, quarter] K[tokens of this warp, quarter]^T
    float s_acc[L::kNTilesPerWarp][4];
#pragma unroll
    for (int n = 0; n < L::kNTilesPerWarp; ++n) s_acc[n][0] = s_acc[n][1] = s_acc[n][2] = s_acc[n][3] = 0.0f;
#pragma unroll
    for (int ks = 0; ks < L::kKStepsPerWarp; ++ks) {
      const int k0 = (k_quarter * L::kKStepsPerWarp + ks) * 16;
      // Q fragments come from shared memory each tile: registers stay free for occupancy.
      unsigned int q_frag[4];
      mlj_ldmatrix_x4(q_frag, q_s + (lane % 16) * L::kRowElems + k0 + (lane / 16) * 8);
#pragma unroll
      for (int n = 0; n < L::kNTilesPerWarp; n += 2) {
        const int mat = lane / 8;
        const int token = token_group * L::kTokensPerWarp + n * 8 + (mat / 2) * 8 + lane % 8;
        unsigned int b[4];
        mlj_ldmatrix_x4(b, k_tile + token * L::kRowElems + k0 + (mat % 2) * 8);
        mlj_mma_16816<kBf16>(s_acc[n], q_frag, b[0], b[1]);
        mlj_mma_16816<kBf16>(s_acc[n + 1], q_frag, b[2], b[3]);
      }
    }
    float* my_partial = partial_s + k_quarter * L::kRows * L::kScoreStride;
#pragma unroll
    for (int n = 0; n < L::kNTilesPerWarp; ++n) {
      const int col = token_group * L::kTokensPerWarp + n * 8 + (lane % 4) * 2;
      *reinterpret_cast<Float2*>(my_partial + frag_row0 * L::kScoreStride + col) = Float2{s_acc[n][0], s_acc[n][1]};
      *reinterpret_cast<Float2*>(my_partial + frag_row1 * L::kScoreStride + col) = Float2{s_acc[n][2], s_acc[n][3]};
    }
    mlj_barrier();

    // ---- reduce the four partials, scale (log2 domain), soft-cap, mask
    for (int i = tid; i < L::kRows * L::kTile; i += L::kWarps * 32) {
      const int r = i / L::kTile;
      const int j = i - r * L::kTile;
      const int at = r * L::kScoreStride + j;
      constexpr int kPart = L::kRows * L::kScoreStride;
      float s = partial_s[at] + partial_s[at + kPart] + partial_s[at + 2 * kPart] + partial_s[at + 3 * kPart];
      s *= logit_scale;
      if (Cfg::kLogitCap > 0.0f) s = Cfg::kLogitCap * mlj_tanh(s / Cfg::kLogitCap);
      s *= kLog2e;
      const int row = row0 + r;
      const int t = row / kHeads;
      const int row_kv_end = Cfg::kCausal ? min_int(kv_hi, kv_len - q_count + t + 1) : kv_hi;
      const bool visible = row < rows_in_request && tile_start + j < row_kv_end;
      score_s[at] = visible ? s : mlj_neg_inf();
    }
    mlj_barrier();

    // ---- online softmax on this thread's two fragment rows; P as mma A fragments
    constexpr int kPSteps = L::kTile / 16;
    float pv[2][kPSteps][4];  // [row][k step][cols c, c+1, c+8, c+9]
    float tile_max[2] = {mlj_neg_inf(), mlj_neg_inf()};
#pragma unroll
    for (int rr = 0; rr < 2; ++rr) {
      const float* srow = score_s + (rr == 0 ? frag_row0 : frag_row1) * L::kScoreStride;
#pragma unroll
      for (int kk = 0; kk < kPSteps; ++kk) {
        const int c = kk * 16 + (lane % 4) * 2;
        const Float2 lo = *reinterpret_cast<const Float2*>(srow + c);
        const Float2 hi = *reinterpret_cast<const Float2*>(srow + c + 8);
        pv[rr][kk][0] = lo.x;
        pv[rr][kk][1] = lo.y;
        pv[rr][kk][2] = hi.x;
        pv[rr][kk][3] = hi.y;
        tile_max[rr] = fmaxf(tile_max[rr], fmaxf(fmaxf(pv[rr][kk][0], pv[rr][kk][1]), fmaxf(pv[rr][kk][2], pv[rr][kk][3])));
      }
    }
    float alpha[2];
#pragma unroll
    for (int rr = 0; rr < 2; ++rr) {
      tile_max[rr] = fmaxf(tile_max[rr], mlj_shfl_xor(tile_max[rr], 1));
      tile_max[rr] = fmaxf(tile_max[rr], mlj_shfl_xor(tile_max[rr], 2));
      const float m_new = fmaxf(m_run[rr], tile_max[rr]);
      const bool any = m_new != mlj_neg_inf();
      alpha[rr] = any ? mlj_exp2(m_run[rr] - m_new) : 1.0f;
      float sum = 0.0f;
#pragma unroll
      for (int kk = 0; kk < kPSteps; ++kk)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          pv[rr][kk][e] = any ? mlj_exp2(pv[rr][kk][e] - m_new) : 0.0f;
          sum += pv[rr][kk][e];
        }
      sum += mlj_shfl_xor(sum, 1);
      sum += mlj_shfl_xor(sum, 2);
      l_run[rr] = l_run[rr] * alpha[rr] + sum;
      m_run[rr] = m_new;
    }
#pragma unroll
    for (int n = 0; n < L::kVNTiles; ++n) {
      acc[n][0] *= alpha[0];
      acc[n][1] *= alpha[0];
      acc[n][2] *= alpha[1];
      acc[n][3] *= alpha[1];
    }

    // ---- O += P V for this warp's V columns
#pragma unroll
    for (int kk = 0; kk < kPSteps; ++kk) {
      unsigned int a[4];
      a[0] = mlj_pack2<kBf16>(pv[0][kk][0], pv[0][kk][1]);
      a[1] = mlj_pack2<kBf16>(pv[1][kk][0], pv[1][kk][1]);
      a[2] = mlj_pack2<kBf16>(pv[0][kk][2], pv[0][kk][3]);
      a[3] = mlj_pack2<kBf16>(pv[1][kk][2], pv[1][kk][3]);
#pragma unroll
      for (int n = 0; n < L::kVNTiles; n += 2) {
        const int mat = lane / 8;
        const int token = kk * 16 + (mat % 2) * 8 + lane % 8;
        const int col = warp * L::kVColsPerWarp + n * 8 + (mat / 2) * 8;
        unsigned int b[4];
        mlj_ldmatrix_x4_trans(b, k_tile + token * L::kRowElems + col);
        mlj_mma_16816<kBf16>(acc[n], a, b[0], b[1]);
        mlj_mma_16816<kBf16>(acc[n + 1], a, b[2], b[3]);
      }
    }
  }
  mlj_cp_async_wait<0>();

  // ---- epilogue: normalise and write (final output when num_splits == 1, else fp32 partials)
  const bool final_output = work.partial_out == nullptr;
  typename OutType::storage* out_base = static_cast<typename OutType::storage*>(p.out);
#pragma unroll
  for (int rr = 0; rr < 2; ++rr) {
    const int r = rr == 0 ? frag_row0 : frag_row1;
    const int row = row0 + r;
    if (row >= rows_in_request) continue;
    const float inv_l = l_run[rr] > 0.0f ? p.kv_scale / l_run[rr] : 0.0f;
    const long long q_row = (long long)q_begin * kHeads + row;
#pragma unroll
    for (int n = 0; n < L::kVNTiles; ++n) {
      const int col = warp * L::kVColsPerWarp + n * 8 + (lane % 4) * 2;
      const float o0 = acc[n][rr * 2] * inv_l;
      const float o1 = acc[n][rr * 2 + 1] * inv_l;
      if (final_output) {
        out_base[q_row * L::kVDim + col] = OutType::from_float(o0);
        out_base[q_row * L::kVDim + col + 1] = OutType::from_float(o1);
      } else {
        float* dst = work.partial_out + (work.partial_base + row) * L::kVDim + col;
        dst[0] = o0;
        dst[1] = o1;
      }
    }
    if (warp == 0 && lane % 4 == 0) {
      const float lse = l_run[rr] > 0.0f ? (m_run[rr] + mlj_log2(l_run[rr])) * kLn2 : mlj_neg_inf();
      if (!final_output) {
        work.partial_lse[work.partial_base + row] = lse;
      } else if (Cfg::kWriteLse) {
        p.lse[q_row] = lse;
      }
    }
  }
}

// Grid: x = group of 16 query rows, y = request, z = KV split.
template <class Cfg>
MLJ_DEVICE void decode_stage1_mma(const MljDecodeParams& p) {
  using L = MmaDecodeLayout<Cfg>;
  DecodeWork work;
  if (grid_work<Cfg, L::kRows, L::kTile>(p, work)) decode_mma_work<Cfg>(p, work);
}

// Persistent decode: same block and dynamic shared memory as decode_stage1_mma; the items of
// decode/schedule.cuh (rows_per_item == 16) through persistent_walk.
template <class Cfg>
MLJ_DEVICE void decode_persistent_mma(const MljDecodeParams& p, const MljPersistentLayout& layout) {
  using L = MmaDecodeLayout<Cfg>;
  persistent_walk<L::kRows>(p, layout, [&](const DecodeWork& work) { decode_mma_work<Cfg>(p, work); });
}

}  // namespace mlj
