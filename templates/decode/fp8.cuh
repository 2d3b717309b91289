// fp8 (e4m3) widening shared by the matrix-core families (mma.cuh, wgmma.cuh): an fp8 cache or q
// becomes the 16-bit mma operand type exactly.
#pragma once

#include "decode/numeric.cuh"

namespace mlj {

// Eight e4m3 values (w0 = elements 0..3, w1 = 4..7, byte i = element i) -> eight 16-bit values of
// the mma type (bf16 or fp16), element 0 lowest. Exact: every e4m3 value, subnormals included, is
// a bf16 / fp16 normal or zero, and NaN stays NaN. sm_89+: one cvt.rn.f16x2.e4m3x2 per pair, plus
// f16 -> f32 -> bf16x2 for bf16; older targets decode each element in software.
template <bool kBf16>
MLJ_DEVICE Vec16 widen_e4m3x8(unsigned int w0, unsigned int w1) {
  Vec16 v;
#if defined(MLJ_HAS_CVT_E4M3)
  mlj_e4m3x4_to_f16x4(w0, v.w[0], v.w[1]);
  mlj_e4m3x4_to_f16x4(w1, v.w[2], v.w[3]);
  if constexpr (kBf16) {
#pragma unroll
    for (int i = 0; i < 4; ++i) v.w[i] = mlj_f16x2_to_bf16x2(v.w[i]);
  }
#else
  const unsigned int w[2] = {w0, w1};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const unsigned int word = w[i / 2] >> ((i % 2) * 16);
    v.w[i] = mlj_pack2<kBf16>(fp8_e4m3::to_float((unsigned char)(word & 0xffu)),
                              fp8_e4m3::to_float((unsigned char)((word >> 8) & 0xffu)));
  }
#endif
  return v;
}

#if defined(MLJ_HAS_CVT_E4M3)
// Four e4m3 values (byte i = element i) -> two registers of the mma type: lo = elements 0, 1 and
// hi = 2, 3, the lower element in the low half. Exact, as widen_e4m3x8.
template <bool kBf16>
MLJ_DEVICE void widen_e4m3x4(unsigned int x, unsigned int& lo, unsigned int& hi) {
  mlj_e4m3x4_to_f16x4(x, lo, hi);
  if constexpr (kBf16) {
    lo = mlj_f16x2_to_bf16x2(lo);
    hi = mlj_f16x2_to_bf16x2(hi);
  }
}
#endif

}  // namespace mlj
