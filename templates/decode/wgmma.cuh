// Hopper MLA decode, stage 1 (sm_90a): warp-specialised, wgmma, mbarrier pipeline.
//
// One CTA = kRows = N query rows (token x head, flattened; N in {8, 16, 24, 32}) x one request x
// one KV range (grid split or persistent item, decode/work.cuh), 3 warpgroups:
//   producer (warpgroup 0): streams 64-token KV tiles into a ring of kSlots slots with cp.async
//     (any page size: every token's row address comes from the page table), writing a 16-bit
//     tile as qk_dim / 64 column blocks of [64 tokens][128 B] in the 128-byte swizzled layout
//     wgmma reads (2 slots), an fp8 tile raw (4 slots at 16 rows or fewer, else 2); a slot's
//     "full" mbarrier completes when the copies have landed (cp.async.mbarrier.arrive), its
//     "empty" mbarrier when its consumer is done with it.
//   consumers (warpgroups 1, 2): consumer c takes tiles c, c + 2, ... (tile g in slot
//     g % kSlots), with its own running max / sum and output accumulators; the two merge at
//     the end.
// The math is transposed so that no M padding is wasted on few rows (wgmma's M is 64, N any
// multiple of 8):
//   S^T [64 tokens x N]    = K_tile [64 x qk] . Q^T       A = the KV tile (K-major), B = Q (K-major)
//   O^T [v_dim x N]       += V^T [v_dim x 64] . P^T       A = the same KV tile read M-major
//                                                          (V = its first v_dim columns, never
//                                                          re-read), B = P (K-major, in shared memory)
// Accumulators: S^T N/2 and O^T (v_dim / 64) * N/2 fp32 per thread; with N = 32 that is 16 + 128.
// Softmax over the tile's tokens (the M dimension, spread over the 4 warps) meets through shared
// memory once per tile (the row maxima); sums stay per thread until the end.
// The roles split once, at the top (each with its register budget, setmaxnreg), and each role
// walks the CTA's work items itself — one from the grid, or a persistent worker's list — with a
// global tile counter: tile g of the CTA goes to slot g % 2 and consumer g % 2, across items.
// At the end of an item consumer 1 keeps its last slot and hands its accumulators to consumer 0
// through it; consumer 0 merges, writes, and releases that slot.
// Caches: bf16 / fp16 with q of the same dtype, or fp8 (e4m3) with a bf16 / fp16 / fp8 q, computed
// in fp16 (codegen's mma_dtype: e4m3 -> fp16 is one conversion a pair; a bf16 q is scaled into
// fp16's range per item, wgmma_stage_q); no fused
// RoPE (codegen keeps that on mma / portable). An fp8 tile lands raw in its slot, column block b
// (64 tokens x 64 B) at b kRawBlockBytes, and its consumer reads the raw bytes
// straight into wgmma's register A operand (RS form), widening them there (exactly): no widened
// copy in shared memory, no barrier between landing and math ("fp8 tiles" below). An fp8 q is
// widened while staged.
#pragma once

#include "decode/fp8.cuh"
#include "decode/fp8_layout.cuh"
#include "decode/numeric.cuh"
#include "decode/params.cuh"
#include "decode/rope.cuh"
#include "decode/trace.cuh"
#include "decode/work.cuh"

namespace mlj {

template <class Cfg>
struct WgmmaDecodeLayout {
  static constexpr int kRows = Cfg::kHeadsPerCta;  // wgmma N
  static constexpr int kTile = Cfg::kTokensPerTile;  // tokens per KV tile (64: wgmma M of S^T)
  static constexpr int kStages = 2;                // consumers: tile g of the CTA goes to consumer g % 2
  static constexpr int kQkDim = Cfg::kKvLoraRank + Cfg::kRopeDim;
  static constexpr int kVDim = Cfg::kKvLoraRank;
  static constexpr int kQkBlocks = kQkDim / 64;  // 64-element (128 B) column blocks
  static constexpr int kVBlocks = kVDim / 64;
  static constexpr int kBlockBytes = kTile * 128;  // one column block of a KV tile
  static constexpr int kStageBytes = kQkBlocks * kBlockBytes;
  static constexpr bool kFp8Kv = sizeof(typename Cfg::KvType::storage) == 1;
  static constexpr bool kFp8Q = sizeof(typename Cfg::QType::storage) == 1;
  // fp8 cache: a slot holds the raw tile, column block b (kTile rows of 64 B) at b kRawBlockBytes.
  static constexpr int kRawBlockBytes = kTile * 64;
  static constexpr int kRawChunksPerRow = kQkDim / 16;
  // Consumer 1 hands its accumulators to consumer 0 through the slot of its last tile of an item.
  static constexpr int kHandoffBytes = (kVDim / 64) * (kRows / 2) * 128 * 4;
  // The ring: tile g in slot g % kSlots (so consumer c owns the slots of parity c). 16-bit tiles:
  // 2 slots of the widened layout; fp8 tiles, raw: 4 slots (two a consumer) at 16 rows or fewer,
  // whose accumulators fit a raw slot for the hand-off, else 2.
  static constexpr int kSlots = kFp8Kv && kHandoffBytes <= kQkBlocks * kRawBlockBytes ? 4 : 2;
  static constexpr int kSlotBytes = !kFp8Kv ? kStageBytes
                                    : kHandoffBytes > kQkBlocks * kRawBlockBytes ? kHandoffBytes
                                                                                  : kQkBlocks * kRawBlockBytes;
  // fp8 cache: k16 steps of V^T . P^T a commit group covers (a thread's A registers: 8 a step,
  // two groups in flight).
  static constexpr int kVStepsPerGroup = 2;
  static constexpr int kQBlockBytes = kRows * 128;
  static constexpr int kQBytes = kQkBlocks * kQBlockBytes;
  static constexpr int kPBytes = kRows * 128;  // one consumer's P: [kRows][64 tokens] 16-bit, swizzled
  static constexpr int kRedFloats = 4 * kRows;  // one consumer's per-warp row values
  static constexpr int kStatFloats = 2 * kRows;  // one consumer's final (max, sum) per row
  // Shared memory, in order: ring, Q, P x 2, red x 2, stat x 2, mbarriers (full, empty) x kSlots.
  // Offsets are from a 1024-byte aligned base (the swizzle pattern repeats every 1024 B); the
  // kernel rounds its dynamic shared memory up to it, hence the 1024 B of slack.
  static constexpr int kQOffset = kSlots * kSlotBytes;
  static constexpr int kPOffset = kQOffset + kQBytes;
  static constexpr int kRedOffset = kPOffset + 2 * kPBytes;
  static constexpr int kStatOffset = kRedOffset + 2 * kRedFloats * 4;
  static constexpr int kBarrierOffset = kStatOffset + 2 * kStatFloats * 4;
  static constexpr int kTotalBytes = kBarrierOffset + 2 * kSlots * 8 + 1024;
  // Register budgets (setmaxnreg): 40 + 2 x 232 = 3 x 168, the launch-time average of a
  // 384-thread CTA. ptxas allocates each role within its budget.
  static constexpr int kProducerRegisters = 40;
  static constexpr int kConsumerRegisters = 232;
  // Named barriers: 0 is __syncthreads; consumer c uses 1 + c; both consumers 3.
  static constexpr int kBothConsumersBarrier = 3;
};

// Byte offset of 16-byte chunk `chunk` (0..7) of row `row` in a [rows][128 B] 128-byte swizzled
// block (rows are 128 B; chunk index XOR row % 8, the pattern wgmma's swizzle mode 1 expects).
MLJ_DEVICE int sw128_offset(int row, int chunk) { return row * 128 + ((chunk ^ (row & 7)) << 4); }
// The 64-byte swizzle (rows of 64 B, 512-byte atoms): chunk c of row r sits at chunk c ^ ((r / 2) % 4).
MLJ_DEVICE int sw64_offset(int row, int chunk) { return row * 64 + ((chunk ^ ((row >> 1) & 3)) << 4); }

// The CTA's shared memory aligned to 1 KiB (the 128-byte swizzle's pattern) and its ring's
// mbarriers: full (one cp.async arrival per producer thread) and empty (`empty_arrivals` consumer
// threads), initialised before any role starts.
template <class L>
MLJ_DEVICE unsigned char* wgmma_ring_setup(int empty_arrivals, unsigned long long*& full_bar,
                                           unsigned long long*& empty_bar) {
  unsigned char* raw_shared = mlj_dynamic_shared();
  unsigned char* shared = raw_shared + ((1024 - (mlj_smem_addr(raw_shared) & 1023)) & 1023);
  full_bar = reinterpret_cast<unsigned long long*>(shared + L::kBarrierOffset);
  empty_bar = full_bar + L::kSlots;
  if (threadIdx.x == 0) {
    for (int s = 0; s < L::kSlots; ++s) {
      mlj_mbarrier_init(&full_bar[s], 128);
      mlj_mbarrier_init(&empty_bar[s], empty_arrivals);
    }
  }
  mlj_barrier();
  return shared;
}

// Where one work item's rows and KV range lie; the same on every thread, so every role derives
// the same tile count. tiles == 0: nothing to stream (and no rows to write when skip).
template <class Cfg>
struct WgmmaItem {
  int q_begin, q_count, rows_in_request, page_begin, kv_len, kv_lo, kv_hi, kv_end, tiles;
  bool skip;  // the item's rows lie past its request's query tokens

  MLJ_DEVICE WgmmaItem(const MljDecodeParams& p, const DecodeWork& work) {
    constexpr int kRows = Cfg::kHeadsPerCta;
    q_begin = work.span.q_begin;
    q_count = work.span.q_count;
    rows_in_request = q_count * Cfg::kHeads;
    skip = work.row0 >= rows_in_request;
    page_begin = work.span.page_begin;
    kv_len = work.span.kv_len;
    kv_lo = work.kv_begin;
    kv_hi = work.kv_end;
    const int last_token = min_int(q_count - 1, (work.row0 + kRows - 1) / Cfg::kHeads);
    kv_end = Cfg::kCausal ? max_int(kv_lo, min_int(kv_hi, kv_len - q_count + last_token + 1)) : kv_hi;
    tiles = skip ? 0 : ceil_div(kv_end - kv_lo, WgmmaDecodeLayout<Cfg>::kTile);
  }
};

// Both consumer warpgroups (256 threads, `thread` 0..255) stage the item's L::kRows rows of Q once
// the previous item's readers are done: row r, chunk c of qk_dim / 8 -> block c / 8, swizzled;
// rows past the request are zero. An fp8 q is widened to the mma type exactly (q_scale is applied
// to the logits). A bf16 q under fp16 math (an fp8 cache: codegen's mma_dtype) is scaled by one
// power of two per item, 2^e, that puts the largest |q| of the item's rows in [2^14, 2^15): every
// value then fits fp16's range, and all but those below 2^-24 of that largest keep bf16's
// precision (fp16 has 3 more mantissa bits); the logits owe 2^-e, which is returned (1 otherwise).
// `scratch`: 8 floats no one reads during staging. Named barrier `barrier` before and after.
template <class Cfg, class L>
MLJ_DEVICE float wgmma_stage_q(const MljDecodeParams& p, const WgmmaItem<Cfg>& it, int row0, unsigned char* q_s,
                               int thread, int barrier, float* scratch) {
  using QStorage = typename Cfg::QType::storage;
  constexpr int kChunks = L::kQkDim / 8;
  constexpr bool kRescale = !L::kFp8Q && Cfg::QType::kBf16 && !Cfg::kMmaBf16;
  const QStorage* q_base = static_cast<const QStorage*>(p.q);
  const auto q_chunk = [&](int e, Vec16& v) {  // chunk e of the staged rows; false: past the request
    const int r = e / kChunks;
    const int row = row0 + r;
    if (row >= it.rows_in_request) return false;
    const int t = row / Cfg::kHeads;
    const int h = row - t * Cfg::kHeads;
    const QStorage* q_row = q_base + (long long)(it.q_begin + t) * p.q_token_stride + (long long)h * L::kQkDim;
    const int c = e - r * kChunks;
    if constexpr (L::kFp8Q) {
      const unsigned int* q_words = reinterpret_cast<const unsigned int*>(q_row) + c * 2;
      v = widen_e4m3x8<Cfg::kMmaBf16>(q_words[0], q_words[1]);
    } else {
      v = reinterpret_cast<const Vec16*>(q_row)[c];
    }
    return true;
  };
  // Each thread's chunks e = thread + 256 i, loaded a batch at a time, every load of a batch issued
  // before any is used: one memory round trip a batch instead of one a chunk (the KV stream the
  // producer has already started makes each round trip microseconds long).
  constexpr int kTotal = L::kRows * kChunks;
  constexpr int kPerThread = (kTotal + 255) / 256;
  constexpr int kBatches = (kPerThread + 4) / 5;  // at most 5 chunks (20 registers) a batch
  constexpr int kBatch = (kPerThread + kBatches - 1) / kBatches;
  Vec16 v[kBatch];
  const auto load_batch = [&](int batch) {
#pragma unroll
    for (int i = 0; i < kBatch; ++i) {
      v[i] = Vec16{{0u, 0u, 0u, 0u}};
      const int e = thread + 256 * (batch * kBatch + i);
      if (e < kTotal) q_chunk(e, v[i]);
    }
  };
  mlj_named_barrier(barrier, 256);
  float q_scale = 1.0f, logit_factor = 1.0f;
  if constexpr (kRescale) {
    float largest = 0.0f;
    for (int batch = 0; batch < kBatches; ++batch) {
      load_batch(batch);
#pragma unroll
      for (int c = 0; c < kBatch; ++c)
#pragma unroll
        for (int i = 0; i < 8; ++i) {
          const unsigned short x = (unsigned short)(v[c].w[i / 2] >> (16 * (i % 2)));
          largest = fmaxf(largest, fabsf(bf16::to_float(x)));
        }
    }
    largest = warp_max(largest);
    if (thread % 32 == 0) scratch[thread / 32] = largest;
    mlj_named_barrier(barrier, 256);
#pragma unroll
    for (int w = 0; w < 8; ++w) largest = fmaxf(largest, scratch[w]);
    const int exponent = (int)((mlj_float_to_bits(largest) >> 23) & 0xffu) - 127;  // floor(log2) of a normal
    if (largest > 0.0f && exponent > -127 && exponent < 128) {  // zeros, subnormals, inf and NaN: 2^0
      const int e = min_int(max_int(14 - exponent, -126), 126);
      q_scale = mlj_bits_to_float((unsigned int)(e + 127) << 23);
      logit_factor = mlj_bits_to_float((unsigned int)(127 - e) << 23);
    }
  }
  for (int batch = 0; batch < kBatches; ++batch) {
    if (!kRescale || kBatches > 1) load_batch(batch);  // one batch: still in registers from the scan
#pragma unroll
    for (int c = 0; c < kBatch; ++c) {
      const int e = thread + 256 * (batch * kBatch + c);
      if (e >= kTotal) continue;
      if constexpr (kRescale) {
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          v[c].w[i] = mlj_pack2<false>(bf16::to_float((unsigned short)(v[c].w[i] & 0xffffu)) * q_scale,
                                       bf16::to_float((unsigned short)(v[c].w[i] >> 16)) * q_scale);
        }
      }
      const int r = e / kChunks;
      const int ch = e - r * kChunks;
      unsigned char* block = q_s + (ch / 8) * L::kQBlockBytes;
      if constexpr (L::kFp8Kv) {  // the logical column order of the register-operand S^T (fp8 tiles above)
#pragma unroll
        for (int pair = 0; pair < 4; ++pair) {
          const int col = fp8_q_column(8 * (ch % 8) + 2 * pair);
          *reinterpret_cast<unsigned int*>(block + sw128_offset(r, col / 8) + 2 * (col % 8)) = v[c].w[pair];
        }
      } else {
        *reinterpret_cast<Vec16*>(block + sw128_offset(r, ch % 8)) = v[c];
      }
    }
  }
  mlj_fence_proxy_async();
  mlj_named_barrier(barrier, 256);
  return logit_factor;
}

// Producer warpgroup: streams every item's KV tiles into the ring. Thread (token tid / 8 of a
// 16-token pass, 16-byte chunk tid % 8 of each 128 B block row); 4 passes per tile.
template <class Cfg, class L, class Items>
MLJ_DEVICE void wgmma_produce(const MljDecodeParams& p, int item_count, Items item_at, unsigned char* ring,
                              unsigned long long* full_bar, unsigned long long* empty_bar) {
  using KvStorage = typename Cfg::KvType::storage;
  const int tid = threadIdx.x % 128;  // the producer warpgroup's thread
  const int chunk = tid % 8;
  const KvStorage* kv_base = static_cast<const KvStorage*>(p.kv);
  const TileTrace trace(trace_clock(), 0);  // MLJ_TRACE only (decode/trace.cuh)
#if defined(MLJ_PREFETCH_TILES)
  constexpr int kPrefetchTiles = MLJ_PREFETCH_TILES;  // developers: -DMLJ_PREFETCH_TILES=<n> through MLAJIT_COMPILE_OPTIONS
#else
  constexpr int kPrefetchTiles = L::kSlots;  // how far ahead the fp8 producer prefetches into L2
#endif
  int g = 0;  // the CTA's tile counter
  for (int i = 0; i < item_count; ++i) {
    const WgmmaItem<Cfg> it(p, item_at(i));
    for (int tile = 0; tile < it.tiles; ++tile, ++g) {
      const int slot = g % L::kSlots;
      const int use = g / L::kSlots;
      // Page-table lookups first: their latency hides behind the wait for the slot. A 16-bit
      // tile: token pass * 16 + tid / 8 of each pass; an fp8 tile: token tid / 2 (one pass).
      constexpr int kPasses = L::kTile / 16;  // 16 tokens a pass (8 threads a 128-byte row)
      const KvStorage* source[kPasses];
#pragma unroll
      for (int pass = 0; pass < (L::kFp8Kv ? 1 : kPasses); ++pass) {
        const int pos = it.kv_lo + tile * L::kTile + (L::kFp8Kv ? tid / 2 : pass * 16 + tid / 8);
        source[pass] = nullptr;
        if (pos < it.kv_end) {
          const int page = p.kv_indices[it.page_begin + pos / Cfg::kPageSize];
          source[pass] = kv_base + (long long)page * p.kv_page_stride + (long long)(pos % Cfg::kPageSize) * L::kQkDim;
        }
      }
      // fp8 cache with a 2-slot ring (more than 16 rows): tile tile + kSlots of the item goes into
      // this slot next; the rows of tile tile + kPrefetchTiles (kSlots unless a developer sets
      // it) are prefetched into L2 once this tile's copies are issued (token tid of it, one bulk
      // prefetch a row), so their copies find them there instead of waiting out DRAM's latency
      // behind the slot's release. Measured on the H200 with 2 slots: S7 159.4 -> 150.0 us; on
      // 16-bit caches it cost 7-13 % (S1 155.7 -> 172.2 us), and with the 4-slot fp8 ring it no
      // longer pays (S7 123.3 us at distance 4 vs 121.2 with a prefetch of the tile just issued),
      // so those do without.
      const KvStorage* ahead = nullptr;
      if constexpr (L::kFp8Kv && L::kSlots == 2) {
        const int pos = it.kv_lo + (tile + kPrefetchTiles) * L::kTile + tid;
        if (tid < L::kTile && pos < it.kv_end) {
          const int page = p.kv_indices[it.page_begin + pos / Cfg::kPageSize];
          ahead = kv_base + (long long)page * p.kv_page_stride + (long long)(pos % Cfg::kPageSize) * L::kQkDim;
        }
      }
      trace.mark(g, 0);
      if (use > 0) mlj_mbarrier_wait(&empty_bar[slot], (use - 1) & 1);
      trace.mark(g, 1);
      unsigned char* slot_base = ring + slot * L::kSlotBytes;
      if constexpr (L::kFp8Kv) {
        // Raw rows, token-major: thread (token tid / 2, 16-byte chunks tid % 2, + 2, ...).
        const KvStorage* row = source[0];
        for (int c = tid % 2; c < L::kRawChunksPerRow; c += 2) {  // chunk c: block c / 4, 16 B piece c % 4
          mlj_cp_async16(slot_base + (c / 4) * L::kRawBlockBytes + fp8_raw_offset(tid / 2, c % 4),
                         row != nullptr ? row + c * 16 : kv_base, row != nullptr ? 16 : 0);
        }
        mlj_cp_async_mbarrier_arrive(&full_bar[slot]);
        trace.mark(g, 2);
        if (ahead != nullptr) mlj_prefetch_l2(ahead, L::kQkDim * sizeof(KvStorage));
        continue;
      }
#pragma unroll
      for (int pass = 0; pass < kPasses; ++pass) {
        unsigned char* dst = slot_base + sw128_offset(pass * 16 + tid / 8, chunk);
#pragma unroll
        for (int b = 0; b < L::kQkBlocks; ++b) {
          // A null source (past the range) zero-fills: masked, and 0 * p stays finite.
          const KvStorage* src = source[pass] != nullptr ? source[pass] + b * 64 + chunk * 8 : kv_base;
          mlj_cp_async16(dst + b * L::kBlockBytes, src, source[pass] != nullptr ? 16 : 0);
        }
      }
      mlj_cp_async_mbarrier_arrive(&full_bar[slot]);
      trace.mark(g, 2);
    }
  }
  mlj_cp_async_wait_all();
}

// Consumer warpgroup `consumer` (0 / 1): the math of its tiles of every item, then (consumer 0)
// the merge with consumer 1 and the output.
template <class Cfg, class Items, class Done>
MLJ_DEVICE void wgmma_consume(const MljDecodeParams& p, int item_count, Items item_at, Done piece_done, int consumer,
                              unsigned char* shared, unsigned long long* full_bar, unsigned long long* empty_bar) {
  using L = WgmmaDecodeLayout<Cfg>;
  constexpr int kHeads = Cfg::kHeads;
  constexpr int N = L::kRows;
  constexpr bool kBf16 = Cfg::kMmaBf16;
  using Storage = unsigned short;
  using OutType = typename Cfg::OutType;
  // Fragment coordinates (m64nNk16 accumulator): value j of a thread is M row
  // 16 * warp + lane / 4 + 8 * ((j / 2) % 2) and N column 8 * (j / 4) + 2 * (lane % 4) + j % 2.
  // A thread's N columns (query rows): kMyRows = N / 4, index k -> 8 * (k / 2) + 2 * (lane % 4) + k % 2.
  constexpr int kMyRows = N / 4;

  const int ct = threadIdx.x - 128 * (1 + consumer);  // thread within the consumer warpgroup
  const int warp = ct / 32;
  const int lane = ct % 32;
  unsigned char* ring = shared;
  unsigned char* q_s = shared + L::kQOffset;
  unsigned char* p_s = shared + L::kPOffset + consumer * L::kPBytes;
  float* red = reinterpret_cast<float*>(shared + L::kRedOffset) + consumer * L::kRedFloats;
  float* stat = reinterpret_cast<float*>(shared + L::kStatOffset) + consumer * L::kStatFloats;  // [max][N], [sum][N]
  const float* stat1 = reinterpret_cast<const float*>(shared + L::kStatOffset) + L::kStatFloats;
  const unsigned int q_addr = mlj_smem_addr(q_s);
  const unsigned int p_addr = mlj_smem_addr(p_s);
  unsigned char* own_slot = ring + consumer * L::kSlotBytes;  // with 2 slots, every tile's
  const unsigned int own_slot_addr = mlj_smem_addr(own_slot);
  const float logit_scale = p.sm_scale * p.q_scale * p.kv_scale;
  const TileTrace trace(trace_clock(), 1 + consumer);  // MLJ_TRACE only (decode/trace.cuh)
  typename OutType::storage* out_base = static_cast<typename OutType::storage*>(p.out);

  int g = 0;  // the CTA's tile counter (the producer's)
  for (int i = 0; i < item_count; ++i) {
    const DecodeWork work = item_at(i);
    const WgmmaItem<Cfg> it(p, work);
    if (it.skip) {  // nothing to write; a split piece still counts (uniform: every thread's work)
      if (Done::kCounts && work.partial_out != nullptr && consumer == 0 && ct == 0) piece_done(work);
      continue;
    }
    const int row0 = work.row0;
    // This item's tiles are g .. g + tiles - 1; consumer c takes those with g' % 2 == c.
    const int first = (g % 2 == consumer) ? 0 : 1;
    const bool consumer1_has_tiles = it.tiles > ((g % 2 == 1) ? 0 : 1);
    // The slot of consumer 1's last tile of the item, which it keeps for the hand-off.
    const int last1 = it.tiles - 1 - ((g + it.tiles - 1) % 2 == 1 ? 0 : 1);
    const int kept_slot = L::kSlots == 2 || !consumer1_has_tiles ? 1 : (g + last1) % L::kSlots;
    float* handoff = reinterpret_cast<float*>(ring + kept_slot * L::kSlotBytes);

    // red of consumer 0 (4 N >= 32 floats) is free while Q is staged.
    const float item_logit_scale =
        logit_scale * wgmma_stage_q<Cfg, L>(p, it, row0, q_s, threadIdx.x - 128, L::kBothConsumersBarrier,
                                            reinterpret_cast<float*>(shared + L::kRedOffset));

    float m_run[kMyRows];
    float l_part[kMyRows];
    int row_kv_end[kMyRows];
#pragma unroll
    for (int k = 0; k < kMyRows; ++k) {
      const int global_row = row0 + 8 * (k / 2) + 2 * (lane % 4) + k % 2;
      m_run[k] = mlj_neg_inf();
      l_part[k] = 0.0f;
      row_kv_end[k] = global_row >= it.rows_in_request ? it.kv_lo  // nothing visible
                      : Cfg::kCausal ? min_int(it.kv_hi, it.kv_len - it.q_count + global_row / kHeads + 1)
                                     : it.kv_hi;
    }
    float acc[L::kVBlocks][N / 2];
#pragma unroll
    for (int vb = 0; vb < L::kVBlocks; ++vb)
#pragma unroll
      for (int j = 0; j < N / 2; ++j) acc[vb][j] = 0.0f;

    for (int tile = first; tile < it.tiles; tile += 2) {
      const int slot_index = L::kSlots == 2 ? consumer : (g + tile) % L::kSlots;
      const int use = (g + tile) / L::kSlots;
      const unsigned char* slot = L::kSlots == 2 ? own_slot : ring + slot_index * L::kSlotBytes;
      const unsigned int slot_addr = L::kSlots == 2 ? own_slot_addr : mlj_smem_addr(slot);
      trace.mark(g + tile, 0);
      mlj_mbarrier_wait(&full_bar[slot_index], use & 1);
      mlj_fence_proxy_async();
      trace.mark(g + tile, 1);
      // Operand descriptors: one base each per tile plus constant offsets (address field, in
      // 16-byte units). `opaque_zero` is 0 (tile < tiles) but keeps the compiler from hoisting
      // all 68 descriptors out of the loop into 136 registers.
      const unsigned int opaque_zero = (unsigned int)((it.tiles - 1 - tile) >> 31);
      const unsigned long long kv_desc = mlj_wgmma_desc_sw128(slot_addr + opaque_zero, 16, 1024);
      const unsigned long long v_desc = mlj_wgmma_desc_sw128(slot_addr + opaque_zero, L::kBlockBytes, 1024);
      const unsigned long long q_desc = mlj_wgmma_desc_sw128(q_addr + opaque_zero, 16, 1024);
      const unsigned long long p_desc = mlj_wgmma_desc_sw128(p_addr + opaque_zero, 16, 1024);

      // ---- S^T = K Q^T over the qk_dim / 64 blocks, 4 k-steps of 16 each.
      float s[N / 2];
#pragma unroll
      for (int j = 0; j < N / 2; ++j) s[j] = 0.0f;
      if constexpr (L::kFp8Kv) {
        // A from registers, widened from the raw bytes, a block a commit group. (Loading the next
        // block's bytes, or a second group in flight, spills at 16 rows under these register
        // budgets; branch fp8-st-pipe moves the budgets.)
#pragma unroll
        for (int b = 0; b < L::kQkBlocks; ++b) {
          const Vec16 x0 = *reinterpret_cast<const Vec16*>(slot + b * L::kRawBlockBytes + fp8_raw_offset(16 * warp + lane / 4, lane % 4));
          const Vec16 x1 = *reinterpret_cast<const Vec16*>(slot + b * L::kRawBlockBytes + fp8_raw_offset(16 * warp + lane / 4 + 8, lane % 4));
          unsigned int a[4][4];
#pragma unroll
          for (int kk = 0; kk < 4; ++kk) {
            widen_e4m3x4<kBf16>(x0.w[kk], a[kk][0], a[kk][2]);
            widen_e4m3x4<kBf16>(x1.w[kk], a[kk][1], a[kk][3]);
          }
          mlj_wgmma_fence();
#pragma unroll
          for (int kk = 0; kk < 4; ++kk) {
            mlj_wgmma_m64k16_rs<N, kBf16>(s, a[kk], q_desc + ((b * L::kQBlockBytes + kk * 32) >> 4), (b | kk) != 0);
          }
          mlj_wgmma_commit();
          mlj_wgmma_wait<0>();
        }
      } else {
        mlj_wgmma_fence();
#pragma unroll
        for (int b = 0; b < L::kQkBlocks; ++b) {
#pragma unroll
          for (int kk = 0; kk < 4; ++kk) {
            mlj_wgmma_m64k16<N, kBf16, false>(s, kv_desc + ((b * L::kBlockBytes + kk * 32) >> 4),
                                              q_desc + ((b * L::kQBlockBytes + kk * 32) >> 4), (b | kk) != 0);
          }
        }
        mlj_wgmma_commit();
      }
      mlj_wgmma_wait<0>();
      trace.mark(g + tile, 2);
#pragma unroll
      for (int j = 0; j < N / 2; ++j) mlj_fence_operand(s[j]);

      // ---- softmax over the tile's tokens for each of this thread's rows.
      const int token0 = it.kv_lo + tile * L::kTile + 16 * warp + lane / 4;  // +8 for the second token
      float tile_max[kMyRows];
#pragma unroll
      for (int k = 0; k < kMyRows; ++k) {
        float mx = mlj_neg_inf();
#pragma unroll
        for (int t2 = 0; t2 < 2; ++t2) {
          const int j = 4 * (k / 2) + 2 * t2 + k % 2;
          float v = s[j] * item_logit_scale;
          if constexpr (Cfg::kLogitCap > 0.0f) v = Cfg::kLogitCap * mlj_tanh(v / Cfg::kLogitCap);
          v *= kLog2e;
          v = token0 + 8 * t2 < row_kv_end[k] ? v : mlj_neg_inf();
          s[j] = v;
          mx = fmaxf(mx, v);
        }
        mx = fmaxf(mx, mlj_shfl_xor(mx, 4));
        mx = fmaxf(mx, mlj_shfl_xor(mx, 8));
        mx = fmaxf(mx, mlj_shfl_xor(mx, 16));
        tile_max[k] = mx;
      }
      if (lane < 4) {
#pragma unroll
        for (int k = 0; k < kMyRows; ++k) red[warp * N + 8 * (k / 2) + 2 * lane + k % 2] = tile_max[k];
      }
      mlj_named_barrier(1 + consumer, 128);
      float alpha[kMyRows];
#pragma unroll
      for (int k = 0; k < kMyRows; ++k) {
        const int q = 8 * (k / 2) + 2 * (lane % 4) + k % 2;
        float m_new = m_run[k];
#pragma unroll
        for (int w = 0; w < 4; ++w) m_new = fmaxf(m_new, red[w * N + q]);
        const bool any = m_new != mlj_neg_inf();  // a row that has seen no visible key keeps p = 0
        alpha[k] = any ? mlj_exp2(m_run[k] - m_new) : 1.0f;
        m_run[k] = m_new;
        float sum = 0.0f;
#pragma unroll
        for (int t2 = 0; t2 < 2; ++t2) {
          const int j = 4 * (k / 2) + 2 * t2 + k % 2;
          const float pv = any ? mlj_exp2(s[j] - m_new) : 0.0f;
          sum += pv;
          // P[q][token]: 128 B rows of 64 tokens, chunk token / 8 swizzled by q % 8.
          const int token = 16 * warp + lane / 4 + 8 * t2;
          const int pos = L::kFp8Kv ? fp8_p_position(token) : token;
          Storage* dst = reinterpret_cast<Storage*>(p_s + sw128_offset(q, pos / 8)) + pos % 8;
          *dst = kBf16 ? bf16::from_float(pv) : fp16::from_float(pv);
        }
        l_part[k] = l_part[k] * alpha[k] + sum;
      }
      mlj_fence_proxy_async();
      mlj_named_barrier(1 + consumer, 128);  // P complete; the row maxima in `red` are read

      // ---- O^T = alpha O^T + V^T P^T: v_dim / 64 blocks of 64 dims, 4 k-steps of 16 tokens.
#pragma unroll
      for (int vb = 0; vb < L::kVBlocks; ++vb)
#pragma unroll
        for (int j = 0; j < N / 2; ++j) {
          acc[vb][j] *= alpha[2 * (j / 4) + j % 2];
          mlj_fence_operand(acc[vb][j]);  // rescaled before the wgmmas are issued, not between them
        }
      // Consumer 1 keeps the slot of its last tile of the item for the hand-off.
      const bool keep = consumer == 1 && tile + 2 >= it.tiles;
      if constexpr (L::kFp8Kv) {
        // A from registers: M blocks (2 q, 2 q + 1) x kVStepsPerGroup k-steps a commit group.
        const int v_chunk = 2 * (warp % 2) + lane / 16;  // dword 8 (w % 2) + g of the block's row
        const int v_byte = 4 * ((lane / 4) % 4);
#pragma unroll
        for (int q2 = 0; q2 < L::kVBlocks / 2; ++q2) {
          const unsigned char* block = slot + (2 * q2 + warp / 2) * L::kRawBlockBytes + v_byte;
#pragma unroll
          for (int k0 = 0; k0 < 4; k0 += L::kVStepsPerGroup) {
            unsigned int a[L::kVStepsPerGroup][2][4];
#pragma unroll
            for (int kk = 0; kk < L::kVStepsPerGroup; ++kk) {
#pragma unroll
              for (int h = 0; h < 2; ++h) {
                const int token = 16 * (k0 + kk) + 8 * h + lane % 4;
                const unsigned int d0 = *reinterpret_cast<const unsigned int*>(block + fp8_raw_offset(token, v_chunk));
                const unsigned int d1 = *reinterpret_cast<const unsigned int*>(block + fp8_raw_offset(token + 4, v_chunk));
                widen_e4m3x4<kBf16>(__byte_perm(d0, d1, 0x5140), a[kk][0][2 * h], a[kk][0][2 * h + 1]);
                widen_e4m3x4<kBf16>(__byte_perm(d0, d1, 0x7362), a[kk][1][2 * h], a[kk][1][2 * h + 1]);
              }
            }
            mlj_wgmma_fence();
#pragma unroll
            for (int kk = 0; kk < L::kVStepsPerGroup; ++kk) {
              mlj_wgmma_m64k16_rs<N, kBf16>(acc[2 * q2], a[kk][0], p_desc + (((k0 + kk) * 32) >> 4), 1);
              mlj_wgmma_m64k16_rs<N, kBf16>(acc[2 * q2 + 1], a[kk][1], p_desc + (((k0 + kk) * 32) >> 4), 1);
            }
            mlj_wgmma_commit();
            mlj_wgmma_wait<1>();  // the previous group's registers are free
          }
        }
        if (!keep) mlj_mbarrier_arrive(&empty_bar[slot_index]);  // every raw byte is in registers
        mlj_wgmma_wait<0>();
      } else {
        mlj_wgmma_fence();
#pragma unroll
        for (int vb = 0; vb < L::kVBlocks; ++vb) {
#pragma unroll
          for (int kk = 0; kk < 4; ++kk) {
            mlj_wgmma_m64k16<N, kBf16, true>(acc[vb], v_desc + ((vb * L::kBlockBytes + kk * 2048) >> 4),
                                             p_desc + ((kk * 32) >> 4), 1);
          }
        }
        mlj_wgmma_commit();
        mlj_wgmma_wait<0>();
      }
      trace.mark(g + tile, 3);
#pragma unroll
      for (int vb = 0; vb < L::kVBlocks; ++vb)
#pragma unroll
        for (int j = 0; j < N / 2; ++j) mlj_fence_operand(acc[vb][j]);
      if (!L::kFp8Kv && !keep) mlj_mbarrier_arrive(&empty_bar[slot_index]);
    }
    g += it.tiles;

    // ---- this consumer's row sums: lanes with the same lane % 4, then the 4 warps.
#pragma unroll
    for (int k = 0; k < kMyRows; ++k) {
      float v = l_part[k];
      v += mlj_shfl_xor(v, 4);
      v += mlj_shfl_xor(v, 8);
      v += mlj_shfl_xor(v, 16);
      l_part[k] = v;
    }
    mlj_named_barrier(1 + consumer, 128);  // every warp is past its reads of `red`
    if (lane < 4) {
#pragma unroll
      for (int k = 0; k < kMyRows; ++k) red[warp * N + 8 * (k / 2) + 2 * lane + k % 2] = l_part[k];
    }
    mlj_named_barrier(1 + consumer, 128);
    if (warp == 0 && lane < 4) {
#pragma unroll
      for (int k = 0; k < kMyRows; ++k) {
        const int q = 8 * (k / 2) + 2 * lane + k % 2;
        stat[q] = m_run[k];
        stat[N + q] = red[q] + red[N + q] + red[2 * N + q] + red[3 * N + q];
      }
    }
    // Consumer 1 hands its accumulators to consumer 0 through the slot it kept, thread for
    // thread (both warpgroups hold the same fragment layout).
    if (consumer == 1 && consumer1_has_tiles) {
#pragma unroll
      for (int vb = 0; vb < L::kVBlocks; ++vb)
#pragma unroll
        for (int j = 0; j < N / 2; ++j) handoff[(vb * (N / 2) + j) * 128 + ct] = acc[vb][j];
    }
    mlj_named_barrier(L::kBothConsumersBarrier, 256);
    if (consumer == 1) continue;

    // ---- consumer 0: merge (m, l, O) of both consumers, normalise, write.
    float scale0[kMyRows], scale1[kMyRows], lse[kMyRows];
#pragma unroll
    for (int k = 0; k < kMyRows; ++k) {
      const int q = 8 * (k / 2) + 2 * (lane % 4) + k % 2;
      const float m0 = stat[q], m1 = stat1[q];
      const float m = fmaxf(m0, m1);
      const bool any = m != mlj_neg_inf();
      const float a0 = any ? mlj_exp2(m0 - m) : 0.0f;
      const float a1 = any ? mlj_exp2(m1 - m) : 0.0f;
      const float l = a0 * stat[N + q] + a1 * stat1[N + q];
      const float inv_l = l > 0.0f ? p.kv_scale / l : 0.0f;
      scale0[k] = a0 * inv_l;
      scale1[k] = consumer1_has_tiles ? a1 * inv_l : 0.0f;
      lse[k] = l > 0.0f ? (m + mlj_log2(l)) * kLn2 : mlj_neg_inf();
    }
    if (consumer1_has_tiles) {
#pragma unroll
      for (int vb = 0; vb < L::kVBlocks; ++vb)
#pragma unroll
        for (int j = 0; j < N / 2; ++j) {
          acc[vb][j] = acc[vb][j] * scale0[2 * (j / 4) + j % 2] + handoff[(vb * (N / 2) + j) * 128 + ct] * scale1[2 * (j / 4) + j % 2];
        }
      mlj_mbarrier_arrive(&empty_bar[kept_slot]);  // consumer 1's kept slot is free again
    } else {
#pragma unroll
      for (int vb = 0; vb < L::kVBlocks; ++vb)
#pragma unroll
        for (int j = 0; j < N / 2; ++j) acc[vb][j] *= scale0[2 * (j / 4) + j % 2];
    }
    const bool final_output = work.partial_out == nullptr;
#pragma unroll
    for (int k = 0; k < kMyRows; ++k) {
      const int row = row0 + 8 * (k / 2) + 2 * (lane % 4) + k % 2;
      if (row >= it.rows_in_request) continue;
      const long long q_row = (long long)it.q_begin * kHeads + row;
#pragma unroll
      for (int vb = 0; vb < L::kVBlocks; ++vb) {
#pragma unroll
        for (int t2 = 0; t2 < 2; ++t2) {
          const float o = acc[vb][4 * (k / 2) + 2 * t2 + k % 2];
          const int dim = L::kFp8Kv ? fp8_v_dim(vb, warp, lane, t2) : 64 * vb + 16 * warp + lane / 4 + 8 * t2;
          if (final_output) {
            out_base[q_row * L::kVDim + dim] = OutType::from_float(o);
          } else {
            work.partial_out[(work.partial_base + row) * L::kVDim + dim] = o;
          }
        }
      }
      if (warp == 0 && lane / 4 == 0) {
        if (!final_output) {
          work.partial_lse[work.partial_base + row] = lse[k];
        } else if (Cfg::kWriteLse) {
          p.lse[q_row] = lse[k];
        }
      }
    }
    if (Done::kCounts && !final_output) {  // consumer 0 alone wrote the piece
      mlj_fence_device();
      mlj_named_barrier(1, 128);
      if (ct == 0) piece_done(work);
    }
  }
}

// ---- 64 query rows per CTA (heads x s_q >= 64): the FlashMLA orientation ------------------------
// 384 threads = two consumer warpgroups (warps 0-7) + a producer warpgroup (warps 8-11, the same
// producer as the narrow tiles; setmaxnreg 56 / 224). Same 2-slot swizzled tile ring as above; the consumers
// take the tiles in pairs, consumer c computing S of the pair's tile c alone:
//   S [64 rows x 64 tokens] = Q . K_tile^T   m64n64k16, A = Q (K-major), B = the tile (K-major);
//     a warp owns 16 whole rows, so a consumer's row maxima need no cross-warp exchange; the two
//     consumers then agree on one running maximum per row (fp32 row maxima in shared memory).
//   P (16 bits) stays in registers as the A fragment and is also written over the tile's rope
//     block (block qk/64 - 1, no longer read once S is done) for the other consumer.
//   O [64 x 256] += P_own . V_own[:, 256 c ..] (RS, m64n256k16) + P_other . V_other[:, 256 c ..]
//     (SS, A = the other tile's P block); consumer c owns V columns [256 c, 256 c + 256): 128
//     fp32 accumulators a thread.
// 16-bit q and cache, kv_lora_rank 512 and rope_dim >= 64 only (fp8 caches stay on the narrow tiles).
template <class Cfg>
struct WgmmaWideLayout {
  static constexpr int kRows = 64;
  static constexpr int kTile = Cfg::kTokensPerTile;   // 64 (2 slots) or 32 (4 slots: a pair loads while one computes)
  static constexpr int kStages = kTile == 64 ? 2 : 4;
  static constexpr int kKSteps = kTile / 16;          // k16 steps of P . V a tile
  static constexpr int kQkDim = Cfg::kKvLoraRank + Cfg::kRopeDim;
  static constexpr int kVDim = Cfg::kKvLoraRank;
  static constexpr int kQkBlocks = kQkDim / 64;
  static constexpr int kBlockBytes = kTile * 128;
  static constexpr int kStageBytes = kQkBlocks * kBlockBytes;
  static constexpr int kSlots = kStages;  // the ring as wgmma_ring_setup / wgmma_produce see it
  static constexpr int kSlotBytes = kStageBytes;
  static constexpr int kQBlockBytes = kRows * 128;
  static constexpr int kQOffset = kStages * kStageBytes;
  static constexpr int kBarrierOffset = kQOffset + kQkBlocks * kQBlockBytes;
  static constexpr int kRowMaxOffset = kBarrierOffset + 2 * kStages * 8;  // [2 consumers][64 rows] fp32
  static constexpr int kTotalBytes = kRowMaxOffset + 2 * kRows * 4 + 1024;
  // A tile's last (rope) block holds its P once S is done: 64 rows x kTile tokens of 16 bits, K-major,
  // 128-byte swizzled rows (64 tokens) or 64-byte swizzled rows (32 tokens) - kBlockBytes either way.
  static constexpr int kPBlock = kQkBlocks - 1;
  static constexpr bool kFp8Kv = false;
  static constexpr bool kFp8Q = false;
  static constexpr int kProducerRegisters = 56;
  static constexpr int kConsumerRegisters = 224;  // 56 + 2 x 224 = 3 x 168
  static constexpr int kConsumerThreads = 256;
};

template <class Cfg, class Items, class Done>
MLJ_DEVICE void wgmma_wide_consume(const MljDecodeParams& p, int item_count, Items item_at, Done piece_done, int consumer,
                                   unsigned char* shared, unsigned long long* full_bar, unsigned long long* empty_bar) {
  using L = WgmmaWideLayout<Cfg>;
  constexpr int kHeads = Cfg::kHeads;
  constexpr bool kBf16 = Cfg::kMmaBf16;
  using OutType = typename Cfg::OutType;
  const int ct = threadIdx.x % 128;
  const int warp = ct / 32;
  const int lane = ct % 32;
  unsigned char* ring = shared;
  unsigned char* q_s = shared + L::kQOffset;
  float* row_max = reinterpret_cast<float*>(shared + L::kRowMaxOffset);
  const unsigned int q_addr = mlj_smem_addr(q_s);
  const unsigned int ring_addr = mlj_smem_addr(ring);
  const float logit_scale = p.sm_scale * p.q_scale * p.kv_scale;
  // MLJ_TRACE only (decode/trace.cuh): per tile pair, entry 2 pair + 1 holds the pair's middle events.
  const TileTrace trace(trace_clock(), 1 + consumer);
  typename OutType::storage* out_base = static_cast<typename OutType::storage*>(p.out);
  // This thread's rows (of the CTA's 64): 16 warp + lane / 4 and + 8; accumulator value j of an
  // m64nNk16 fragment is row (j / 2) % 2 of those, column 8 (j / 4) + 2 (lane % 4) + j % 2.
  const int my_row[2] = {16 * warp + lane / 4, 16 * warp + lane / 4 + 8};

  int g = 0;
  for (int i = 0; i < item_count; ++i) {
    const DecodeWork work = item_at(i);
    const WgmmaItem<Cfg> it(p, work);
    if (it.skip) {  // nothing to write; a split piece still counts (uniform: every thread's work)
      if (Done::kCounts && work.partial_out != nullptr && consumer == 0 && ct == 0) piece_done(work);
      continue;
    }
    const int row0 = work.row0;

    // 16-bit q and cache only: the mma type is q's, so Q is copied as it is (the scratch is unused).
    static_assert(Cfg::QType::kBf16 == Cfg::kMmaBf16, "the wide tile computes in q's dtype");
    wgmma_stage_q<Cfg, L>(p, it, row0, q_s, threadIdx.x, 1, row_max);

    float m_run[2], l_part[2];
    int row_kv_end[2];
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int global_row = row0 + my_row[h];
      m_run[h] = mlj_neg_inf();
      l_part[h] = 0.0f;
      row_kv_end[h] = global_row >= it.rows_in_request ? it.kv_lo
                      : Cfg::kCausal ? min_int(it.kv_hi, it.kv_len - it.q_count + global_row / kHeads + 1)
                                     : it.kv_hi;
    }
    float o[128];
#pragma unroll
    for (int j = 0; j < 128; ++j) o[j] = 0.0f;

    // Tiles go in pairs: consumer c computes S of tile 2 pair + c alone (S is never computed
    // twice), both consumers agree on one running maximum per row through `row_max`, and each
    // applies both tiles' P to its 256 V columns: its own P from registers (RS), the other's from
    // the shared P block (SS). An odd last tile leaves consumer 1 without a tile of its own.
    for (int pair = 0; 2 * pair < it.tiles; ++pair) {
      trace.mark(g + 2 * pair, 0);
      const int tile_own = 2 * pair + consumer;
      const int tile_other = 2 * pair + 1 - consumer;
      const bool has_own = tile_own < it.tiles;
      const bool has_other = tile_other < it.tiles;
      const int slot_own = (g + tile_own) % L::kStages;
      const int slot_other = (g + tile_other) % L::kStages;
      const unsigned int opaque_zero = (unsigned int)((it.tiles - 1 - 2 * pair) >> 31);  // see the narrow consumer
      const unsigned int own_addr = ring_addr + slot_own * L::kStageBytes + opaque_zero;

      // ---- S = Q K^T of this consumer's tile, scaled, capped, masked, in log2 units
      constexpr int kS = L::kTile / 2;  // S fragment values a thread (m64nNk16, N = the tile)
      float s[kS];
      float tile_max[2] = {mlj_neg_inf(), mlj_neg_inf()};
      if (has_own) {
        mlj_mbarrier_wait(&full_bar[slot_own], ((g + tile_own) / L::kStages) & 1);
        mlj_fence_proxy_async();
        trace.mark(g + 2 * pair, 1);
        const unsigned long long q_desc = mlj_wgmma_desc_sw128(q_addr + opaque_zero, 16, 1024);
        const unsigned long long k_desc = mlj_wgmma_desc_sw128(own_addr, 16, 1024);
#pragma unroll
        for (int j = 0; j < kS; ++j) s[j] = 0.0f;
        mlj_wgmma_fence();
#pragma unroll
        for (int b = 0; b < L::kQkBlocks; ++b) {
#pragma unroll
          for (int kk = 0; kk < 4; ++kk) {
            const unsigned long long a = q_desc + ((b * L::kQBlockBytes + kk * 32) >> 4);
            const unsigned long long bd = k_desc + ((b * L::kBlockBytes + kk * 32) >> 4);
            if constexpr (L::kTile == 64) {
              mlj_wgmma_m64n64k16_ss<kBf16>(s, a, bd, (b | kk) != 0);
            } else {
              mlj_wgmma_m64k16<32, kBf16, false>(s, a, bd, (b | kk) != 0);
            }
          }
        }
        mlj_wgmma_commit();
        mlj_wgmma_wait<0>();
        trace.mark(g + 2 * pair, 2);
#pragma unroll
        for (int j = 0; j < kS; ++j) mlj_fence_operand(s[j]);
        const int tile_start = it.kv_lo + tile_own * L::kTile;
#pragma unroll
        for (int h = 0; h < 2; ++h) {
#pragma unroll
          for (int c = 0; c < L::kTile / 8; ++c) {
#pragma unroll
            for (int e = 0; e < 2; ++e) {
              const int j = 4 * c + 2 * h + e;
              float v = s[j] * logit_scale;
              if constexpr (Cfg::kLogitCap > 0.0f) v = Cfg::kLogitCap * mlj_tanh(v / Cfg::kLogitCap);
              v *= kLog2e;
              v = tile_start + 8 * c + 2 * (lane % 4) + e < row_kv_end[h] ? v : mlj_neg_inf();
              s[j] = v;
              tile_max[h] = fmaxf(tile_max[h], v);
            }
          }
          tile_max[h] = fmaxf(tile_max[h], mlj_shfl_xor(tile_max[h], 1));
          tile_max[h] = fmaxf(tile_max[h], mlj_shfl_xor(tile_max[h], 2));
        }
      }

      // ---- one running maximum for both consumers
      if (lane % 4 == 0) {
        row_max[consumer * L::kRows + my_row[0]] = tile_max[0];
        row_max[consumer * L::kRows + my_row[1]] = tile_max[1];
      }
      mlj_named_barrier(1, L::kConsumerThreads);
      trace.mark(g + 2 * pair + 1, 0);
      float alpha[2];
      bool any[2];
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const float m_new = fmaxf(m_run[h], fmaxf(tile_max[h], row_max[(1 - consumer) * L::kRows + my_row[h]]));
        any[h] = m_new != mlj_neg_inf();
        alpha[h] = any[h] ? mlj_exp2(m_run[h] - m_new) : 1.0f;
        m_run[h] = m_new;
      }

#pragma unroll
      for (int j = 0; j < 128; ++j) {
        o[j] *= alpha[(j / 2) % 2];
        mlj_fence_operand(o[j]);
      }

      // ---- P of this consumer's tile: registers (A fragments) and the tile's rope block (shared)
      unsigned int a[L::kKSteps][4];
      if (has_own) {
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          float sum = 0.0f;
#pragma unroll
          for (int c = 0; c < L::kTile / 8; ++c) {
#pragma unroll
            for (int e = 0; e < 2; ++e) {
              const int j = 4 * c + 2 * h + e;
              s[j] = any[h] ? mlj_exp2(s[j] - m_run[h]) : 0.0f;
              sum += s[j];
            }
          }
          l_part[h] = l_part[h] * alpha[h] + sum;
        }
        unsigned char* p_block = ring + slot_own * L::kStageBytes + L::kPBlock * L::kBlockBytes;
#pragma unroll
        for (int kk = 0; kk < L::kKSteps; ++kk) {
#pragma unroll
          for (int r = 0; r < 4; ++r) {
            a[kk][r] = mlj_pack2<kBf16>(s[8 * kk + 2 * r], s[8 * kk + 2 * r + 1]);
            // A fragment register r of k-step kk: row my_row[r % 2], tokens 16 kk + 8 (r / 2) + 2 (lane % 4) ..
            const int row = my_row[r % 2];
            const int chunk = 2 * kk + r / 2;
            const int offset = L::kTile == 64 ? sw128_offset(row, chunk) : sw64_offset(row, chunk);
            *reinterpret_cast<unsigned int*>(p_block + offset + 4 * (lane % 4)) = a[kk][r];
          }
        }
        mlj_fence_proxy_async();
      } else {
#pragma unroll
        for (int h = 0; h < 2; ++h) l_part[h] *= alpha[h];
      }
      trace.mark(g + 2 * pair + 1, 1);
      mlj_named_barrier(1, L::kConsumerThreads);  // both P blocks written (and row_max read)
      trace.mark(g + 2 * pair + 1, 2);

      // ---- O = alpha O + P_own V_own[:, 256 c ..] + P_other V_other[:, 256 c ..]
      if (has_other) {
        mlj_mbarrier_wait(&full_bar[slot_other], ((g + tile_other) / L::kStages) & 1);
        mlj_fence_proxy_async();
      }
      trace.mark(g + 2 * pair + 1, 3);
      mlj_wgmma_fence();
      if (has_own) {
        const unsigned long long v_desc = mlj_wgmma_desc_sw128(own_addr + 4 * consumer * L::kBlockBytes, L::kBlockBytes, 1024);
#pragma unroll
        for (int kk = 0; kk < L::kKSteps; ++kk) mlj_wgmma_m64n256k16_rs_tb<kBf16>(o, a[kk], v_desc + ((kk * 2048) >> 4));
      }
      if (has_other) {
        const unsigned int other_addr = ring_addr + slot_other * L::kStageBytes;
        const unsigned int p_addr = other_addr + L::kPBlock * L::kBlockBytes;
        const unsigned long long p_desc =
            L::kTile == 64 ? mlj_wgmma_desc_sw128(p_addr, 16, 1024) : mlj_wgmma_desc_sw64(p_addr, 16, 512);
        const unsigned long long v_desc = mlj_wgmma_desc_sw128(other_addr + 4 * consumer * L::kBlockBytes, L::kBlockBytes, 1024);
#pragma unroll
        for (int kk = 0; kk < L::kKSteps; ++kk) {
          mlj_wgmma_m64n256k16_ss_tb<kBf16>(o, p_desc + ((kk * 32) >> 4), v_desc + ((kk * 2048) >> 4));
        }
      }
      mlj_wgmma_commit();
      mlj_wgmma_wait<0>();
      trace.mark(g + 2 * pair, 3);
#pragma unroll
      for (int j = 0; j < 128; ++j) mlj_fence_operand(o[j]);
      if (has_own) mlj_mbarrier_arrive(&empty_bar[slot_own]);
      if (has_other) mlj_mbarrier_arrive(&empty_bar[slot_other]);
    }
    g += it.tiles;

    // ---- both consumers' sums, normalise and write this consumer's 256 columns; consumer 0
    // writes the LSE
    float inv_l[2], lse[2];
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      l_part[h] += mlj_shfl_xor(l_part[h], 1);
      l_part[h] += mlj_shfl_xor(l_part[h], 2);
      if (lane % 4 == 0) row_max[consumer * L::kRows + my_row[h]] = l_part[h];
    }
    mlj_named_barrier(1, L::kConsumerThreads);
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const float l = l_part[h] + row_max[(1 - consumer) * L::kRows + my_row[h]];
      inv_l[h] = l > 0.0f ? p.kv_scale / l : 0.0f;
      lse[h] = l > 0.0f ? (m_run[h] + mlj_log2(l)) * kLn2 : mlj_neg_inf();
    }
    const bool final_output = work.partial_out == nullptr;
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int row = row0 + my_row[h];
      if (row >= it.rows_in_request) continue;
      const long long q_row = (long long)it.q_begin * kHeads + row;
#pragma unroll
      for (int c = 0; c < 32; ++c) {
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const float v = o[4 * c + 2 * h + e] * inv_l[h];
          const int dim = 256 * consumer + 8 * c + 2 * (lane % 4) + e;
          if (final_output) {
            out_base[q_row * L::kVDim + dim] = OutType::from_float(v);
          } else {
            work.partial_out[(work.partial_base + row) * L::kVDim + dim] = v;
          }
        }
      }
      if (consumer == 0 && lane % 4 == 0) {
        if (!final_output) {
          work.partial_lse[work.partial_base + row] = lse[h];
        } else if (Cfg::kWriteLse) {
          p.lse[q_row] = lse[h];
        }
      }
    }
    if (Done::kCounts && !final_output) {  // both consumers wrote the piece
      mlj_fence_device();
      mlj_named_barrier(1, L::kConsumerThreads);
      if (consumer == 0 && ct == 0) piece_done(work);
    }
  }
}

template <class Cfg, class Items, class Done>
MLJ_DEVICE void decode_wgmma_wide_items(const MljDecodeParams& p, int item_count, Items item_at, Done piece_done) {
  using L = WgmmaWideLayout<Cfg>;
  static_assert(Cfg::kWarps == 12, "64-row wgmma decode runs 2 consumer warpgroups and a producer warpgroup");
  static_assert((L::kTile == 64 || L::kTile == 32) && Cfg::kStages == L::kStages,
                "64-row wgmma decode: 64-token tiles in 2 stages or 32-token tiles in 4");
  static_assert(L::kVDim == 512, "64-row wgmma decode: two warpgroups of 256 V columns");
  static_assert(L::kPBlock * 64 >= L::kVDim, "64-row wgmma decode: P lives in a rope block (rope_dim >= 64)");
  static_assert(L::kQkDim % 64 == 0, "wgmma decode needs qk_dim a multiple of 64");
  static_assert(sizeof(typename Cfg::QType::storage) == 2 && sizeof(typename Cfg::KvType::storage) == 2,
                "64-row wgmma decode: 16-bit q and cache");
  static_assert(Cfg::kRope == RopeStyle::none, "wgmma decode: no fused RoPE");
  static_assert(L::kTotalBytes == Cfg::kSharedBytes, "host and kernel disagree on shared memory");
  unsigned long long* full_bar;
  unsigned long long* empty_bar;
  unsigned char* shared = wgmma_ring_setup<L>(L::kConsumerThreads, full_bar, empty_bar);  // both consumers release every slot
  const int warp = __shfl_sync(0xffffffffu, (int)threadIdx.x / 32, 0);
  if (warp >= 8) {
    // The producer warpgroup: registers to the consumers.
    mlj_register_budget_lower<L::kProducerRegisters>();
    wgmma_produce<Cfg, L>(p, item_count, item_at, shared, full_bar, empty_bar);
  } else {
    mlj_register_budget_raise<L::kConsumerRegisters>();
    wgmma_wide_consume<Cfg>(p, item_count, item_at, piece_done, warp / 4, shared, full_bar, empty_bar);
  }
}

// The narrow tiles (8-32 rows): producer warpgroup, consumers on alternate tiles.
template <class Cfg, class Items, class Done>
MLJ_DEVICE void decode_wgmma_narrow_items(const MljDecodeParams& p, int item_count, Items item_at, Done piece_done) {
  using L = WgmmaDecodeLayout<Cfg>;
  static_assert(L::kRows == 8 || L::kRows == 16 || L::kRows == 24 || L::kRows == 32,
                "wgmma decode: heads_per_cta must be 8, 16, 24, 32 (or 64: the wide tile)");
  static_assert(Cfg::kWarps == 12, "wgmma decode runs 3 warpgroups");
  static_assert(L::kTile == 64 && Cfg::kStages == L::kStages, "wgmma decode: 64-token tiles, 2 stages");
  static_assert(L::kQkDim % 64 == 0 && L::kVDim % 64 == 0, "wgmma decode needs qk_dim and v_dim multiples of 64");
  static_assert(L::kHandoffBytes <= L::kSlotBytes && L::kSlots % 2 == 0, "the hand-off fits one ring slot; slots alternate consumers");
  static_assert(L::kFp8Kv || (sizeof(typename Cfg::QType::storage) == 2 && sizeof(typename Cfg::KvType::storage) == 2),
                "wgmma decode: a 16-bit cache needs a 16-bit q");
  static_assert(!L::kFp8Kv || L::kQkBlocks * L::kRawBlockBytes <= L::kSlotBytes, "a raw fp8 tile fits a slot");
  static_assert(Cfg::kRope == RopeStyle::none, "wgmma decode: no fused RoPE");
  static_assert(L::kTotalBytes == Cfg::kSharedBytes, "host and kernel disagree on shared memory");

  unsigned long long* full_bar;
  unsigned long long* empty_bar;
  unsigned char* shared = wgmma_ring_setup<L>(128, full_bar, empty_bar);  // a slot's consumer releases it
  // Broadcast from lane 0: ptxas then knows the role is warp-uniform (wgmma must not sit on a
  // path it considers divergent, or it serialises every wgmma).
  const int warpgroup = __shfl_sync(0xffffffffu, (int)threadIdx.x / 128, 0);
  if (warpgroup == 0) {
    mlj_register_budget_lower<L::kProducerRegisters>();
    wgmma_produce<Cfg, L>(p, item_count, item_at, shared, full_bar, empty_bar);
  } else {
    mlj_register_budget_raise<L::kConsumerRegisters>();
    wgmma_consume<Cfg>(p, item_count, item_at, piece_done, warpgroup - 1, shared, full_bar, empty_bar);
  }
}

// The CTA over its items (item_at(i), 0 <= i < item_count): barriers, then the roles. Once a
// piece of a split tile is written (partial_out set), one consumer thread calls piece_done(work)
// after every writer's fence and a barrier (persistent: the reduce's per-tile count).
template <class Cfg, class Items, class Done>
MLJ_DEVICE void decode_wgmma_items(const MljDecodeParams& p, int item_count, Items item_at, Done piece_done) {
  trace_cta_start();  // MLJ_TRACE only (decode/trace.cuh)
  if constexpr (Cfg::kHeadsPerCta == 64) {
    decode_wgmma_wide_items<Cfg>(p, item_count, item_at, piece_done);
  } else {
    decode_wgmma_narrow_items<Cfg>(p, item_count, item_at, piece_done);
  }
  trace_cta_end();
}

// Grid: x = group of kRows query rows, y = request, z = KV split; one item.
template <class Cfg>
MLJ_DEVICE void decode_stage1_wgmma(const MljDecodeParams& p) {
  using L = WgmmaDecodeLayout<Cfg>;
  DecodeWork work;
  if (!grid_work<Cfg, L::kRows, L::kTile>(p, work)) return;
  // Each role reads the request's span again where it starts its item (L1 hits), so the span is
  // not live across the roles' register budgets (kept, it spills 4 B at 24 rows with fp8).
  decode_wgmma_items<Cfg>(p, 1, [&](int) {
    DecodeWork item = work;
    item.span = request_span<Cfg::kPageSize>(p, work.request);
    return item;
  }, NoPieceCount{});
}

// Persistent decode: the worker's items of decode/schedule.cuh (rows_per_item == heads_per_cta).
template <class Cfg>
MLJ_DEVICE void decode_persistent_wgmma(const MljDecodeParams& p, const MljPersistentLayout& layout) {
  using L = WgmmaDecodeLayout<Cfg>;
  const PersistentList<Cfg, L::kRows> list(p, layout, blockIdx.x);
  decode_wgmma_items<Cfg>(p, list.count, [&](int i) { return list.item(i); }, PersistentPieceCount<L::kRows>{layout});
}

}  // namespace mlj
