// Fused RoPE for the decode kernels (mla-semantics §2): rotates q_pe and the k_pe of each query
// token's own key. Results are rounded to q's / the cache's dtype, so a fused call gives exactly
// what a separate RoPE pass writing q and the cache would, and k_pe_out holds what the key used.
#pragma once

#include "decode/numeric.cuh"
#include "decode/params.cuh"

namespace mlj {

enum class RopeStyle { none, neox, gptj };

// Element d of a rotated vector is x[d] * cos[freq] + sign * x[partner] * sin[freq].
struct RopeLane {
  int freq;
  int partner;
  float sign;
};

// NeoX rotates the halves (pairs d, d + R/2); GPT-J interleaves (pairs 2i, 2i + 1).
template <RopeStyle kStyle, int kRopeDim>
MLJ_DEVICE RopeLane rope_lane(int d) {
  constexpr int kHalf = kRopeDim / 2;
  if (kStyle == RopeStyle::neox) {
    return d < kHalf ? RopeLane{d, d + kHalf, -1.0f} : RopeLane{d - kHalf, d - kHalf, 1.0f};
  }
  return (d & 1) == 0 ? RopeLane{d / 2, d + 1, -1.0f} : RopeLane{d / 2, d - 1, 1.0f};
}

// The first element of rotation pair k (k < R/2); the other is its lane's partner.
template <RopeStyle kStyle>
MLJ_DEVICE int rope_pair_first(int k) { return kStyle == RopeStyle::neox ? k : 2 * k; }

MLJ_DEVICE float rope_table_value(const MljDecodeParams& p, long long index) {
  switch (p.cos_sin_dtype) {
    case 0: return bf16::to_float(static_cast<const bf16::storage*>(p.cos_sin_cache)[index]);
    case 1: return fp16::to_float(static_cast<const fp16::storage*>(p.cos_sin_cache)[index]);
    default: return static_cast<const float*>(p.cos_sin_cache)[index];
  }
}

// Offset of the cos/sin row of query token `token` (of all requests); its position is clamped
// into the table.
template <int kRopeDim>
MLJ_DEVICE long long rope_table_row(const MljDecodeParams& p, int token) {
  const long long position = p.positions[token];
  const long long clamped = position < 0 ? 0 : (position >= p.max_positions ? p.max_positions - 1 : position);
  return clamped * kRopeDim;
}

// Rotated element d from x[d] and x[partner]: one product, then one fma. The host reference
// (reference/decode_reference.cpp) evaluates the same expression, so both round alike.
template <class Cfg>
MLJ_DEVICE float rope_rotate(float x, float partner, int d, long long table_row, const MljDecodeParams& p) {
  const RopeLane lane = rope_lane<Cfg::kRope, Cfg::kRopeDim>(d);
  const float c = rope_table_value(p, table_row + lane.freq);
  const float s = rope_table_value(p, table_row + Cfg::kRopeDim / 2 + lane.freq);
  return mlj_fma(x, c, lane.sign * partner * s);
}

// Element d of a q row (T's storage at `row`) of query token `token`, with its rope part
// rotated when the spec fuses RoPE.
template <class Cfg, class T>
MLJ_DEVICE typename T::storage q_element(const typename T::storage* row, int d, int token, const MljDecodeParams& p) {
  if constexpr (Cfg::kRope != RopeStyle::none) {
    if (d >= Cfg::kKvLoraRank) {
      const typename T::storage* pe = row + Cfg::kKvLoraRank;
      const int e = d - Cfg::kKvLoraRank;
      const int partner = rope_lane<Cfg::kRope, Cfg::kRopeDim>(e).partner;
      return T::from_float(rope_rotate<Cfg>(T::to_float(pe[e]), T::to_float(pe[partner]), e,
                                            rope_table_row<Cfg::kRopeDim>(p, token), p));
    }
  }
  return row[d];
}

// 16-byte chunk c of a q row of query token `token`, as q_element gives its elements.
template <class Cfg, class T>
MLJ_DEVICE Vec16 q_chunk16(const typename T::storage* row, int c, int token, const MljDecodeParams& p) {
  constexpr int kPerChunk = 16 / (int)sizeof(typename T::storage);
  Vec16 v;
  typename T::storage* e = reinterpret_cast<typename T::storage*>(&v);
#pragma unroll
  for (int i = 0; i < kPerChunk; ++i) e[i] = q_element<Cfg, T>(row, c * kPerChunk + i, token, p);
  return v;
}

// Rotates, in a shared-memory KV tile holding keys [tile_start, tile_end), the k_pe of the keys
// that belong to the request's query tokens (token t owns key kv_len - q_count + t, §1.2's
// bottom-right alignment). The CTA whose rows start token t (row0 <= t * heads < row0 + rows)
// also stores them to k_pe_out; every key lies in one split, so exactly one CTA does. Each pair
// is owned by one thread, so the rotation is in place. Returns whether the tile changed (the
// caller then needs a barrier before reading it).
template <class Cfg, class KvType>
MLJ_DEVICE bool rope_own_keys(typename KvType::storage* tile, int row_stride, int tile_start, int tile_end, int kv_len,
                              int q_begin, int q_count, int row0, int rows, int tid, int threads,
                              const MljDecodeParams& p) {
  constexpr int kHalf = Cfg::kRopeDim / 2;
  const int first_own = kv_len - q_count;
  const int first = max_int(tile_start, first_own);
  if (first >= tile_end) return false;
  for (int i = tid; i < (tile_end - first) * kHalf; i += threads) {
    const int key = first + i / kHalf;
    const int t = key - first_own;
    const int a = rope_pair_first<Cfg::kRope>(i % kHalf);
    const int b = rope_lane<Cfg::kRope, Cfg::kRopeDim>(a).partner;
    const long long table_row = rope_table_row<Cfg::kRopeDim>(p, q_begin + t);
    typename KvType::storage* pe = tile + (key - tile_start) * row_stride + Cfg::kKvLoraRank;
    const float xa = KvType::to_float(pe[a]);
    const float xb = KvType::to_float(pe[b]);
    const typename KvType::storage ra = KvType::from_float(rope_rotate<Cfg>(xa, xb, a, table_row, p));
    const typename KvType::storage rb = KvType::from_float(rope_rotate<Cfg>(xb, xa, b, table_row, p));
    pe[a] = ra;
    pe[b] = rb;
    const int token_row = t * Cfg::kHeads;
    if (token_row >= row0 && token_row < row0 + rows) {
      typename KvType::storage* out = static_cast<typename KvType::storage*>(p.k_pe_out) + (long long)(q_begin + t) * Cfg::kRopeDim;
      out[a] = ra;
      out[b] = rb;
    }
  }
  return true;
}

// Query tokens without a key of their own (q_count > kv_len) get zeros in k_pe_out, written by the
// one CTA of the row group that owns them (DecodeWork::zero_keyless).
template <class Cfg, class KvType>
MLJ_DEVICE void rope_zero_keyless_tokens(int kv_len, int q_begin, int q_count, int row0, int rows, bool owner, int tid,
                                         int threads, const MljDecodeParams& p) {
  const int keyless = min_int(q_count, q_count - kv_len);
  if (!owner || keyless <= 0) return;
  typename KvType::storage* out = static_cast<typename KvType::storage*>(p.k_pe_out);
  for (int i = tid; i < keyless * Cfg::kRopeDim; i += threads) {
    const int t = i / Cfg::kRopeDim;
    const int token_row = t * Cfg::kHeads;
    if (token_row >= row0 && token_row < row0 + rows) {
      out[(long long)(q_begin + t) * Cfg::kRopeDim + i % Cfg::kRopeDim] = KvType::from_float(0.0f);
    }
  }
}

}  // namespace mlj
