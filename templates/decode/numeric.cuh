// Element types as seen by kernels: storage type plus conversions to and from fp32.
// Built on the platform prelude's primitives only, so it is the same on every target.
#pragma once

namespace mlj {

struct alignas(16) Vec16 {
  unsigned int w[4];
};

struct alignas(8) Float2 {
  float x, y;
};

struct bf16 {
  using storage = unsigned short;
  static constexpr bool kBf16 = true;
  static MLJ_DEVICE float to_float(storage v) { return mlj_bits_to_float(((unsigned int)v) << 16); }
  static MLJ_DEVICE storage from_float(float f) {
    unsigned int u = mlj_float_to_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (storage)((u >> 16) | 0x40u);  // quiet NaN
    u += 0x7fffu + ((u >> 16) & 1u);                                          // nearest even
    return (storage)(u >> 16);
  }
};

struct fp16 {
  using storage = unsigned short;
  static constexpr bool kBf16 = false;
  static MLJ_DEVICE float to_float(storage v) { return mlj_half_to_float(v); }
  static MLJ_DEVICE storage from_float(float f) { return mlj_float_to_half(f); }
};

// OCP e4m3 ("fn": no infinities, 0x7f / 0xff are NaN). Written only by fused RoPE (k_pe_out,
// roped fp8 q), rounding like the host's float_to_fp8_e4m3: nearest, ties to even, saturating.
struct fp8_e4m3 {
  using storage = unsigned char;
  static constexpr bool kBf16 = false;
  static MLJ_DEVICE float to_float(storage v) {
    const unsigned int sign = ((unsigned int)(v & 0x80u)) << 24;
    const unsigned int exponent = (v >> 3) & 0xfu;
    const unsigned int mantissa = v & 0x7u;
    if (exponent == 0u) {  // subnormal: mantissa * 2^-9
      return mlj_bits_to_float(sign | mlj_float_to_bits((float)mantissa * 0.001953125f));
    }
    if (exponent == 0xfu && mantissa == 0x7u) return mlj_bits_to_float(0x7fc00000u);
    return mlj_bits_to_float(sign | ((exponent + 120u) << 23) | (mantissa << 20));
  }
  static MLJ_DEVICE storage from_float(float f) {
    const unsigned int bits = mlj_float_to_bits(f);
    const storage sign = (storage)((bits >> 24) & 0x80u);
    const unsigned int magnitude = bits & 0x7fffffffu;
    if (magnitude > 0x7f800000u) return (storage)(sign | 0x7fu);   // NaN
    if (magnitude >= 0x43e00000u) return (storage)(sign | 0x7eu);  // >= 448 (and inf): the largest finite
    if (magnitude < 0x3c800000u) {                                 // < 2^-6: subnormal steps of 2^-9
      return (storage)(sign | (unsigned int)mlj_rint(mlj_bits_to_float(magnitude) * 512.0f));
    }
    const unsigned int rounded = magnitude + 0x7ffffu + ((magnitude >> 20) & 1u);  // 3 mantissa bits, ties to even
    return (storage)(sign | ((((rounded >> 23) - 120u) << 3) | ((rounded >> 20) & 7u)));
  }
};

struct fp32 {
  using storage = float;
  static MLJ_DEVICE float to_float(storage v) { return v; }
  static MLJ_DEVICE storage from_float(float f) { return f; }
};

// Softmax runs in the log2 domain (exp2); LSEs are reported in natural log.
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

MLJ_DEVICE int ceil_div(int a, int b) { return (a + b - 1) / b; }
MLJ_DEVICE int min_int(int a, int b) { return a < b ? a : b; }
MLJ_DEVICE int max_int(int a, int b) { return a > b ? a : b; }

// floor(a / b) for 0 <= a < 2^52 and 0 < b < 2^31, given inv_b = 1.0 / b, without a 64-bit integer
// division (a call of ~70 dependent instructions): the double product is within one of a / b, and
// one integer check each way makes it exact.
MLJ_DEVICE long long floor_div_by(long long a, int b, double inv_b) {
  long long q = (long long)((double)a * inv_b);
  const long long r = a - q * b;
  if (r < 0) {
    --q;
  } else if (r >= b) {
    ++q;
  }
  return q;
}

// 32- and 64-bit integers from lane src of the warp (every lane calls them with the same src), as
// the bits of float shuffles.
MLJ_DEVICE int shfl_int(int v, int src) { return (int)mlj_float_to_bits(mlj_shfl(mlj_bits_to_float((unsigned int)v), src)); }
MLJ_DEVICE long long shfl_long(long long v, int src) {
  const unsigned int lo = (unsigned int)shfl_int((int)(unsigned int)(unsigned long long)v, src);
  const unsigned int hi = (unsigned int)shfl_int((int)(unsigned int)((unsigned long long)v >> 32), src);
  return (long long)(((unsigned long long)hi << 32) | lo);
}

MLJ_DEVICE float warp_sum(float v) {
#pragma unroll
  for (int mask = MLJ_WARP_SIZE / 2; mask > 0; mask >>= 1) v += mlj_shfl_xor(v, mask);
  return v;
}

MLJ_DEVICE float warp_max(float v) {
#pragma unroll
  for (int mask = MLJ_WARP_SIZE / 2; mask > 0; mask >>= 1) v = fmaxf(v, mlj_shfl_xor(v, mask));
  return v;
}

// Block-wide max (kMax) or sum of v over the kThreads threads of the CTA (a multiple of the warp
// size; every thread calls it), the same value in every thread. scratch: kThreads / MLJ_WARP_SIZE
// floats of shared memory, free again only after a later barrier (use another slice meanwhile).
template <int kThreads, bool kMax>
MLJ_DEVICE float block_reduce(float v, float* scratch) {
  static_assert(kThreads % MLJ_WARP_SIZE == 0, "block_reduce: whole warps only");
  v = kMax ? warp_max(v) : warp_sum(v);
  if (threadIdx.x % MLJ_WARP_SIZE == 0) scratch[threadIdx.x / MLJ_WARP_SIZE] = v;
  mlj_barrier();
  float r = scratch[0];
#pragma unroll
  for (int w = 1; w < kThreads / MLJ_WARP_SIZE; ++w) r = kMax ? fmaxf(r, scratch[w]) : r + scratch[w];
  return r;
}

}  // namespace mlj
