// Matrix-core MLA decode, stage 1 (mma.sync m16n8k16 + ldmatrix + cp.async; sm_80 and later).
//
// One CTA = kRows = 16 * kMTiles query rows (token x head, flattened; kMTiles = heads_per_cta / 16
// in {1, 2, 4}) x one request x one KV range, 8 warps; the range comes from the grid (split-K) or
// from a persistent worker's items (decode/work.cuh). KV tiles of kTile tokens stream through a
// kStages-deep cp.async ring; each KV row is read from DRAM once per CTA and serves both QK^T (all
// 576 columns) and PV (its first 512 columns) for all kRows rows, so a request with more than 16
// rows re-streams its KV ceil(rows / kRows) times instead of ceil(rows / 16) times.
//   S = Q K^T : warp w computes M tile (w / 2) % kMTiles, tokens [(w % 2) * kTile/2, +kTile/2),
//               over a 1/kKSplit share of the qk dimension (kKSplit = 4 / kMTiles: 4, 2, 1). The
//               8 warps always cover kMTiles x 2 x kKSplit = 8 blocks, each warp's mma count per
//               tile is the same for every kMTiles, and the kKSplit partial sums meet in shared
//               memory (one partial, no reduction, at 64 rows).
//   softmax   : once per row, not once per warp: kThreadsPerRow = 256 / kRows consecutive lanes
//               own a row (kTile / kThreadsPerRow tokens each), sum its partials, scale, mask,
//               keep its running max / sum in registers, and write P (bf16 / fp16) and the row's
//               rescale factor to shared memory. (Recomputing it in every warp, as v2 did, costs
//               8x the exp2s: at 64 rows that is ~1000 SFU cycles per 32-token tile.)
//   O += P V  : warp w owns V columns [w * v_dim/8, +v_dim/8) for all kMTiles M tiles: each V
//               fragment (ldmatrix.trans) feeds kMTiles mmas; P fragments come by ldmatrix
//               from shared memory. Accumulators: kMTiles * 8 n-tiles * 4 fp32 per thread.
// Rows past the request's query tokens are computed on zeros and never written.
// Fused RoPE (Cfg::kRope): q is rotated while staged, each query token's own key in its tile.
// fp8 (e4m3) KV cache: the ring carries the raw 1-byte rows (half the bytes of a 16-bit cache);
// after a tile lands, the CTA widens it to the mma type (exact) into one 16-bit tile buffer with
// the padded row layout the ldmatrix code reads, then runs the same math on it: one more barrier
// per tile. An fp8 q is widened while staged. The mma type is bf16 unless q is fp16
// (Cfg::kMmaBf16; codegen decides). No fused RoPE with an fp8 cache (codegen keeps it portable).
#pragma once

#include "decode/fp8.cuh"
#include "decode/numeric.cuh"
#include "decode/params.cuh"
#include "decode/rope.cuh"
#include "decode/work.cuh"

namespace mlj {

template <class Cfg>
struct MmaDecodeLayout {
  static constexpr int kMTiles = Cfg::kHeadsPerCta / 16;  // 1, 2 or 4 mma M tiles
  static constexpr int kRows = 16 * kMTiles;
  static constexpr int kWarps = 8;
  static constexpr int kThreads = kWarps * 32;
  static constexpr int kTile = Cfg::kTokensPerTile;
  static constexpr int kStages = Cfg::kStages;
  static constexpr int kQkDim = Cfg::kKvLoraRank + Cfg::kRopeDim;
  static constexpr int kVDim = Cfg::kKvLoraRank;
  static constexpr int kRowElems = kQkDim + 8;  // +16 B per row: ldmatrix rows land in distinct banks
  // S: 2 token groups x kMTiles M tiles x kKSplit shares of the qk dimension = 8 warps.
  static constexpr int kKSplit = kWarps / 2 / kMTiles;
  static constexpr int kKStepsPerWarp = kQkDim / 16 / kKSplit;
  static constexpr int kTokensPerWarp = kTile / 2;
  static constexpr int kNTilesPerWarp = kTokensPerWarp / 8;
  static constexpr int kVColsPerWarp = kVDim / kWarps;
  static constexpr int kVNTiles = kVColsPerWarp / 8;
  // KV ring rows: the cache's elements; 16-bit rows are padded like Q, fp8 rows are not (they are
  // only copied in and read back linearly by the widening pass).
  static constexpr bool kFp8Kv = sizeof(typename Cfg::KvType::storage) == 1;
  static constexpr bool kFp8Q = sizeof(typename Cfg::QType::storage) == 1;
  static constexpr int kRingRowElems = kFp8Kv ? kQkDim : kRowElems;
  static constexpr int kRingElemBytes = kFp8Kv ? 1 : 2;
  static constexpr int kChunkElems = 16 / kRingElemBytes;  // cache elements per 16-byte copy
  static constexpr int kChunksPerRow = kQkDim / kChunkElems;  // 16-byte copies per KV row
  static constexpr int kThreadsPerToken = kThreads / kTile;  // threads copying one KV row
  // ceil: an fp8 row of 576 B is 36 copies, 4.5 per thread at 8 threads per token (32-token tiles);
  // thread `sub` of a token copies chunks sub, sub + 8, ... below 36 (5 copies for sub < 4, else 4).
  static constexpr int kChunksPerThread = (kChunksPerRow + kThreadsPerToken - 1) / kThreadsPerToken;
  static constexpr bool kChunksEven = kChunksPerRow % kThreadsPerToken == 0;
  // Widening (fp8 KV): 8 consecutive threads own a token's row, 8-byte pieces (8 elements -> one
  // 16-byte store) sub, sub + 8, ...; kThreads / 8 = 32 tokens per pass, kTile / 32 passes. Each
  // thread's addresses are two bases plus constants, and every quarter warp reads / writes 64 /
  // 128 contiguous bytes of one row (no bank conflicts).
  static constexpr int kWidenTokensPerPass = kThreads / 8;
  static constexpr int kWidenPasses = kTile / kWidenTokensPerPass;
  static constexpr int kWidenPiecesPerRow = kQkDim / 64;  // per thread: 8-byte pieces of one row
  // Softmax: kThreadsPerRow consecutive lanes of one warp own a row, kSegTokens tokens each.
  static constexpr int kThreadsPerRow = kThreads / kRows;
  static constexpr int kSegTokens = kTile / kThreadsPerRow;
  static constexpr int kScoreStride = kTile + 8;  // floats; float2 accesses of a fragment hit distinct banks
  static constexpr int kPStride = kTile + 8;      // 16-bit P elements; 80 / 144 B rows: ldmatrix conflict-free
  // Shared memory, in bytes.
  static constexpr int kStageBytes = kTile * kRingRowElems * kRingElemBytes;
  static constexpr int kWideBytes = kFp8Kv ? kTile * kRowElems * 2 : 0;  // the widened tile (fp8 KV only)
  static constexpr int kQBytes = kRows * kRowElems * 2;
  static constexpr int kPartialBytes = kKSplit * kRows * kScoreStride * 4;  // 64 rows' worth for every kMTiles
  static constexpr int kPBytes = kRows * kPStride * 2;
  static constexpr int kRowStateBytes = 3 * kRows * 4;  // per row: rescale factor, final max, final sum
  static constexpr int kTotalBytes =
      kStages * kStageBytes + kWideBytes + kQBytes + kPartialBytes + kPBytes + kRowStateBytes;
};

// The body of the mma kernel, over one DecodeWork (decode/work.cuh). Block-wide; uses the whole
// dynamic shared memory and drains its cp.async ring before returning.
template <class Cfg>
MLJ_DEVICE void decode_mma_work(const MljDecodeParams& p, const DecodeWork& work) {
  using L = MmaDecodeLayout<Cfg>;
  constexpr int kHeads = Cfg::kHeads;
  constexpr int kPageSize = Cfg::kPageSize;
  constexpr bool kBf16 = Cfg::kMmaBf16;
  using Storage = unsigned short;  // bf16 / fp16 bits: Q, the widened KV tile, P
  using KvStorage = typename Cfg::KvType::storage;  // the ring's elements (16-bit or fp8)
  using QStorage = typename Cfg::QType::storage;
  using OutType = typename Cfg::OutType;
  static_assert(Cfg::kHeadsPerCta == 16 || Cfg::kHeadsPerCta == 32 || Cfg::kHeadsPerCta == 64,
                "mma decode: heads_per_cta must be 16, 32 or 64");
  static_assert(Cfg::kWarps == L::kWarps, "mma decode runs 8 warps");
  static_assert(L::kQkDim % 64 == 0 && L::kVDim % 128 == 0, "mma decode needs qk_dim % 64 == 0, v_dim % 128 == 0");
  static_assert((L::kQkDim / 16) % L::kKSplit == 0, "the qk dimension must split evenly over kKSplit warps");
  static_assert(L::kTile % 32 == 0, "tokens per tile must be a multiple of 32");
  static_assert(L::kTotalBytes == Cfg::kSharedBytes, "host and kernel disagree on shared memory");
  static_assert(L::kFp8Kv || L::kChunksEven, "a 16-bit KV row must split evenly over its threads");
  static_assert(L::kChunksPerRow * L::kChunkElems == L::kQkDim, "KV rows are whole 16-byte chunks");
  static_assert(!L::kFp8Kv || (L::kTile % L::kWidenTokensPerPass == 0 && L::kQkDim % 64 == 0),
                "the widening pass splits evenly");
  static_assert(!L::kFp8Kv || Cfg::kRope == RopeStyle::none, "fused RoPE with an fp8 cache runs on the portable family");
  static_assert(!L::kFp8Q || L::kFp8Kv, "an fp8 q needs an fp8 cache on the mma family");
  static_assert(L::kThreadsPerRow <= 32 && 32 % L::kThreadsPerRow == 0, "a row's softmax lanes lie in one warp");
  static_assert(L::kSegTokens % 2 == 0, "softmax lanes write P in pairs");

  const int tid = threadIdx.x;
  const int lane = tid % 32;
  const int warp = tid / 32;
  const int row0 = work.row0;

  const int q_begin = work.span.q_begin;
  const int q_count = work.span.q_count;
  const int rows_in_request = q_count * kHeads;
  if (row0 >= rows_in_request) return;

  const int page_begin = work.span.page_begin;
  const int kv_len = work.span.kv_len;
  const int kv_lo = work.kv_begin;
  const int kv_hi = work.kv_end;
  const int last_token = min_int(q_count - 1, (row0 + L::kRows - 1) / kHeads);
  const int cta_kv_end = Cfg::kCausal ? max_int(kv_lo, min_int(kv_hi, kv_len - q_count + last_token + 1)) : kv_hi;
  const int num_tiles = ceil_div(cta_kv_end - kv_lo, L::kTile);

  unsigned char* shared = mlj_dynamic_shared();
  KvStorage* kv_s = reinterpret_cast<KvStorage*>(shared);  // [kStages][kTile][kRingRowElems]
  Storage* wide_s = reinterpret_cast<Storage*>(shared + L::kStages * L::kStageBytes);  // [kTile][kRowElems] (fp8 KV)
  Storage* q_s = reinterpret_cast<Storage*>(shared + L::kStages * L::kStageBytes + L::kWideBytes);  // [kRows][kRowElems]
  float* partial_s = reinterpret_cast<float*>(shared + L::kStages * L::kStageBytes + L::kWideBytes + L::kQBytes);  // [kKSplit][kRows][kScoreStride]
  Storage* p_s = reinterpret_cast<Storage*>(partial_s + L::kKSplit * L::kRows * L::kScoreStride);  // [kRows][kPStride]
  float* alpha_s = reinterpret_cast<float*>(p_s + L::kRows * L::kPStride);  // [kRows] this tile's rescale factors
  float* m_final_s = alpha_s + L::kRows;                                      // [kRows] log2-domain running max
  float* l_final_s = m_final_s + L::kRows;                                    // [kRows] running sum

  const KvStorage* kv_base = static_cast<const KvStorage*>(p.kv);
  // Each thread copies kChunksPerThread 16-byte pieces of one token's row per tile. The row's
  // address (a page-table lookup) is resolved one tile ahead, so the index load's latency hides
  // behind the current tile's math instead of stalling the copy loop.
  const int my_token = tid / L::kThreadsPerToken;
  const int my_sub = tid % L::kThreadsPerToken;
  auto row_source = [&](int tile) -> const KvStorage* {
    const int pos = kv_lo + tile * L::kTile + my_token;
    if (tile >= num_tiles || pos >= cta_kv_end) return nullptr;
    const int page = p.kv_indices[page_begin + pos / kPageSize];
    return kv_base + (long long)page * p.kv_page_stride + (long long)(pos % kPageSize) * L::kQkDim;
  };
  auto load_tile = [&](const KvStorage* src, int slot) {
    KvStorage* dst = kv_s + slot * L::kTile * L::kRingRowElems + my_token * L::kRingRowElems;
#pragma unroll
    for (int k = 0; k < L::kChunksPerThread; ++k) {
      const int c = my_sub + k * L::kThreadsPerToken;
      if (!L::kChunksEven && c >= L::kChunksPerRow) break;  // fp8 rows: the last round is partial
      // A null source (past the range) zero-fills: 0 * p stays finite.
      mlj_cp_async16(dst + c * L::kChunkElems, src != nullptr ? src + c * L::kChunkElems : kv_base,
                     src != nullptr ? 16 : 0);
    }
  };

  // Start the KV pipeline, then stage Q (zeros for rows outside the request).
#pragma unroll
  for (int s = 0; s < L::kStages - 1; ++s) {
    if (s < num_tiles) load_tile(row_source(s), s);
    mlj_cp_async_commit();
  }
  const KvStorage* prefetched_source = row_source(L::kStages - 1);
  const QStorage* q_base = static_cast<const QStorage*>(p.q);
  for (int i = tid; i < L::kRows * (L::kQkDim / 8); i += L::kThreads) {
    const int r = i / (L::kQkDim / 8);
    const int c = i - r * (L::kQkDim / 8);
    const int row = row0 + r;
    Vec16 v = {{0u, 0u, 0u, 0u}};
    if (row < rows_in_request) {
      const int t = row / kHeads;
      const int h = row - t * kHeads;
      const QStorage* q_row = q_base + (long long)(q_begin + t) * p.q_token_stride + (long long)h * L::kQkDim;
      if constexpr (L::kFp8Q) {
        // 8 fp8 elements (8 B) -> 8 mma-type elements, exactly; q_scale is applied to the logits.
        const unsigned int* q_words = reinterpret_cast<const unsigned int*>(q_row) + c * 2;
        v = widen_e4m3x8<kBf16>(q_words[0], q_words[1]);
      } else if constexpr (Cfg::kRope != RopeStyle::none) {
        v = q_chunk16<Cfg, typename Cfg::QType>(q_row, c, q_begin + t, p);
      } else {
        v = reinterpret_cast<const Vec16*>(q_row)[c];
      }
    }
    reinterpret_cast<Vec16*>(q_s + r * L::kRowElems)[c] = v;
  }
  if constexpr (Cfg::kRope != RopeStyle::none) {
    rope_zero_keyless_tokens<Cfg, typename Cfg::KvType>(kv_len, q_begin, q_count, row0, L::kRows,
                                                        work.zero_keyless, tid, L::kThreads, p);
  }
  mlj_barrier();

  // Warp roles for S: a token half of the tile, an M tile and a 1/kKSplit share of the qk dimension.
  const int token_group = warp % 2;
  const int m_tile = (warp / 2) % L::kMTiles;
  const int k_part = warp / (2 * L::kMTiles);

  // mma fragment rows of this lane: lane/4 and lane/4 + 8 of each M tile.
  const int frag_row0 = lane / 4;
  const int frag_row1 = frag_row0 + 8;

  // Softmax role: row sm_row of the CTA, tokens [sm_seg * kSegTokens, +kSegTokens) of each tile.
  // The running max (log2 domain) and sum of the row live in the registers of its
  // kThreadsPerRow lanes, identical in each.
  const int sm_row = tid / L::kThreadsPerRow;
  const int sm_seg = tid % L::kThreadsPerRow;
  float m_run = mlj_neg_inf();
  float l_run = 0.0f;
  const int sm_global_row = row0 + sm_row;
  const bool sm_row_live = sm_global_row < rows_in_request;
  // Causal limit (exclusive) of the softmax row, for masking scores.
  const int sm_row_kv_end = Cfg::kCausal ? min_int(kv_hi, kv_len - q_count + sm_global_row / kHeads + 1) : kv_hi;

  float acc[L::kMTiles][L::kVNTiles][4];
#pragma unroll
  for (int m = 0; m < L::kMTiles; ++m)
#pragma unroll
    for (int n = 0; n < L::kVNTiles; ++n) acc[m][n][0] = acc[m][n][1] = acc[m][n][2] = acc[m][n][3] = 0.0f;

  const float logit_scale = p.sm_scale * p.q_scale * p.kv_scale;
  for (int tile = 0; tile < num_tiles; ++tile) {
    mlj_cp_async_wait<L::kStages - 2>();
    mlj_barrier();  // tile `tile` has landed for all threads; slot (tile - 1) is free
    {
      const int next = tile + L::kStages - 1;
      if (next < num_tiles) load_tile(prefetched_source, next % L::kStages);
      mlj_cp_async_commit();
      prefetched_source = row_source(next + 1);
    }
    const Storage* k_tile;
    if constexpr (L::kFp8Kv) {
      // Widen the landed fp8 tile into wide_s (its readers of the previous tile passed the barrier
      // above): thread (token tid / 8, sub tid % 8) widens elements [8 (sub + 8 k), +8) of its
      // tokens (see kWidenTokensPerPass).
      const KvStorage* raw = kv_s + (tile % L::kStages) * L::kTile * L::kRingRowElems + (tid / 8) * L::kQkDim + (tid % 8) * 8;
      Storage* wide = wide_s + (tid / 8) * L::kRowElems + (tid % 8) * 8;
#pragma unroll
      for (int pass = 0; pass < L::kWidenPasses; ++pass) {
#pragma unroll
        for (int k = 0; k < L::kWidenPiecesPerRow; ++k) {
          const int token_offset = pass * L::kWidenTokensPerPass;
          const unsigned int* src = reinterpret_cast<const unsigned int*>(raw + token_offset * L::kQkDim + k * 64);
          *reinterpret_cast<Vec16*>(wide + token_offset * L::kRowElems + k * 64) = widen_e4m3x8<kBf16>(src[0], src[1]);
        }
      }
      mlj_barrier();  // the widened tile is visible to every warp
      // wide_s, re-derived from the loop counter each tile (the term is 0: tile < num_tiles). With
      // a loop-invariant tile pointer the compiler hoists every ldmatrix address of the S / PV
      // loops out of the tile loop, one register each, and 64 rows (255 registers) spill.
      k_tile = wide_s + ((num_tiles - 1 - tile) >> 31);
    } else {
      k_tile = kv_s + (tile % L::kStages) * L::kTile * L::kRowElems;
    }
    const int tile_start = kv_lo + tile * L::kTile;
    if constexpr (Cfg::kRope != RopeStyle::none) {
      KvStorage* own_tile = kv_s + (tile % L::kStages) * L::kTile * L::kRowElems;
      if (rope_own_keys<Cfg, typename Cfg::KvType>(own_tile, L::kRowElems, tile_start,
                                                   min_int(tile_start + L::kTile, cta_kv_end), kv_len, q_begin, q_count,
                                                   row0, L::kRows, tid, L::kThreads, p)) {
        mlj_barrier();  // the rotated keys are visible to every warp
      }
    }

    // ---- S partial = Q[M tile, share] K[tokens of this warp, share]^T
    {
      float s_acc[L::kNTilesPerWarp][4];
#pragma unroll
      for (int n = 0; n < L::kNTilesPerWarp; ++n) s_acc[n][0] = s_acc[n][1] = s_acc[n][2] = s_acc[n][3] = 0.0f;
      const Storage* q_frag_base = q_s + (m_tile * 16 + lane % 16) * L::kRowElems + (lane / 16) * 8;
#pragma unroll
      for (int ks = 0; ks < L::kKStepsPerWarp; ++ks) {
        const int k0 = (k_part * L::kKStepsPerWarp + ks) * 16;
        // Q fragments come from shared memory each tile: registers stay free for the accumulators.
        unsigned int q_frag[4];
        mlj_ldmatrix_x4(q_frag, q_frag_base + k0);
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
      float* my_partial = partial_s + (k_part * L::kRows + m_tile * 16) * L::kScoreStride;
#pragma unroll
      for (int n = 0; n < L::kNTilesPerWarp; ++n) {
        const int col = token_group * L::kTokensPerWarp + n * 8 + (lane % 4) * 2;
        *reinterpret_cast<Float2*>(my_partial + frag_row0 * L::kScoreStride + col) = Float2{s_acc[n][0], s_acc[n][1]};
        *reinterpret_cast<Float2*>(my_partial + frag_row1 * L::kScoreStride + col) = Float2{s_acc[n][2], s_acc[n][3]};
      }
    }
    mlj_barrier();

    // ---- softmax, once per row: reduce the partials, scale (log2 domain), soft-cap, mask; online
    // max / sum; P (mma dtype) and the row's rescale factor to shared memory.
    {
      float sv[L::kSegTokens];
      float tile_max = m_run;  // folded in here: m_new = max(m_run, this tile's max)
#pragma unroll
      for (int j = 0; j < L::kSegTokens; j += 2) {
        const int at = sm_row * L::kScoreStride + sm_seg * L::kSegTokens + j;  // even: Float2-aligned
        Float2 pair = *reinterpret_cast<const Float2*>(partial_s + at);
#pragma unroll
        for (int k = 1; k < L::kKSplit; ++k) {
          const Float2 more = *reinterpret_cast<const Float2*>(partial_s + at + k * L::kRows * L::kScoreStride);
          pair.x += more.x;
          pair.y += more.y;
        }
        sv[j] = pair.x;
        sv[j + 1] = pair.y;
      }
#pragma unroll
      for (int j = 0; j < L::kSegTokens; ++j) {
        float s = sv[j] * logit_scale;
        if (Cfg::kLogitCap > 0.0f) s = Cfg::kLogitCap * mlj_tanh(s / Cfg::kLogitCap);
        s *= kLog2e;
        const bool visible = sm_row_live && tile_start + sm_seg * L::kSegTokens + j < sm_row_kv_end;
        sv[j] = visible ? s : mlj_neg_inf();
        tile_max = fmaxf(tile_max, sv[j]);
      }
#pragma unroll
      for (int off = 1; off < L::kThreadsPerRow; off *= 2) tile_max = fmaxf(tile_max, mlj_shfl_xor(tile_max, off));
      const float m_new = tile_max;
      const bool any = m_new != mlj_neg_inf();  // a row that has seen no visible key keeps p = 0
      const float alpha = any ? mlj_exp2(m_run - m_new) : 1.0f;
      float sum = 0.0f;
      Storage* p_row = p_s + sm_row * L::kPStride + sm_seg * L::kSegTokens;
#pragma unroll
      for (int j = 0; j < L::kSegTokens; j += 2) {
        const float p0 = any ? mlj_exp2(sv[j] - m_new) : 0.0f;
        const float p1 = any ? mlj_exp2(sv[j + 1] - m_new) : 0.0f;
        sum += p0 + p1;
        *reinterpret_cast<unsigned int*>(p_row + j) = mlj_pack2<kBf16>(p0, p1);
      }
#pragma unroll
      for (int off = 1; off < L::kThreadsPerRow; off *= 2) sum += mlj_shfl_xor(sum, off);
      l_run = l_run * alpha + sum;
      m_run = m_new;
      if (sm_seg == 0) alpha_s[sm_row] = alpha;
    }
    mlj_barrier();

    // ---- O = alpha O + P V for this warp's V columns, all M tiles
#pragma unroll
    for (int m = 0; m < L::kMTiles; ++m) {
      const float alpha0 = alpha_s[m * 16 + frag_row0];
      const float alpha1 = alpha_s[m * 16 + frag_row1];
#pragma unroll
      for (int n = 0; n < L::kVNTiles; ++n) {
        acc[m][n][0] *= alpha0;
        acc[m][n][1] *= alpha0;
        acc[m][n][2] *= alpha1;
        acc[m][n][3] *= alpha1;
      }
    }
#pragma unroll
    for (int kk = 0; kk < L::kTile / 16; ++kk) {
      unsigned int a[L::kMTiles][4];
#pragma unroll
      for (int m = 0; m < L::kMTiles; ++m) {
        mlj_ldmatrix_x4(a[m], p_s + (m * 16 + lane % 16) * L::kPStride + kk * 16 + (lane / 16) * 8);
      }
#pragma unroll
      for (int n = 0; n < L::kVNTiles; n += 2) {
        const int mat = lane / 8;
        const int token = kk * 16 + (mat % 2) * 8 + lane % 8;
        const int col = warp * L::kVColsPerWarp + n * 8 + (mat / 2) * 8;
        unsigned int b[4];
        mlj_ldmatrix_x4_trans(b, k_tile + token * L::kRowElems + col);
#pragma unroll
        for (int m = 0; m < L::kMTiles; ++m) {
          mlj_mma_16816<kBf16>(acc[m][n], a[m], b[0], b[1]);
          mlj_mma_16816<kBf16>(acc[m][n + 1], a[m], b[2], b[3]);
        }
      }
    }
  }
  mlj_cp_async_wait<0>();
  if (sm_seg == 0) {
    m_final_s[sm_row] = m_run;
    l_final_s[sm_row] = l_run;
  }
  mlj_barrier();  // every row's final max and sum are visible to the warps that write it

  // ---- epilogue: normalise and write (final output when num_splits == 1, else fp32 partials)
  const bool final_output = work.partial_out == nullptr;
  typename OutType::storage* out_base = static_cast<typename OutType::storage*>(p.out);
#pragma unroll
  for (int m = 0; m < L::kMTiles; ++m) {
#pragma unroll
    for (int rr = 0; rr < 2; ++rr) {
      const int r = m * 16 + (rr == 0 ? frag_row0 : frag_row1);
      const int row = row0 + r;
      if (row >= rows_in_request) continue;
      const float l_row = l_final_s[r];
      const float inv_l = l_row > 0.0f ? p.kv_scale / l_row : 0.0f;
      const long long q_row = (long long)q_begin * kHeads + row;
#pragma unroll
      for (int n = 0; n < L::kVNTiles; ++n) {
        const int col = warp * L::kVColsPerWarp + n * 8 + (lane % 4) * 2;
        const float o0 = acc[m][n][rr * 2] * inv_l;
        const float o1 = acc[m][n][rr * 2 + 1] * inv_l;
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
        const float lse = l_row > 0.0f ? (m_final_s[r] + mlj_log2(l_row)) * kLn2 : mlj_neg_inf();
        if (!final_output) {
          work.partial_lse[work.partial_base + row] = lse;
        } else if (Cfg::kWriteLse) {
          p.lse[q_row] = lse;
        }
      }
    }
  }
}

// Grid: x = group of kRows (heads_per_cta) query rows, y = request, z = KV split.
template <class Cfg>
MLJ_DEVICE void decode_stage1_mma(const MljDecodeParams& p) {
  using L = MmaDecodeLayout<Cfg>;
  DecodeWork work;
  if (grid_work<Cfg, L::kRows, L::kTile>(p, work)) decode_mma_work<Cfg>(p, work);
}

// Persistent decode: same block and dynamic shared memory as decode_stage1_mma; the items of
// decode/schedule.cuh (rows_per_item == heads_per_cta) through persistent_walk.
template <class Cfg>
MLJ_DEVICE void decode_persistent_mma(const MljDecodeParams& p, const MljPersistentLayout& layout) {
  using L = MmaDecodeLayout<Cfg>;
  persistent_walk<Cfg, L::kRows>(p, layout, [&](const DecodeWork& work) { decode_mma_work<Cfg>(p, work); });
}

}  // namespace mlj
