// NVIDIA prelude (NVRTC, sm_80+): the only place kernels learn they run on CUDA.
// Self-contained: no toolkit headers are needed to compile generated source.
#pragma once

#define MLJ_DEVICE __device__ __forceinline__
#define MLJ_GLOBAL extern "C" __global__
#define MLJ_WARP_SIZE 32

MLJ_DEVICE unsigned char* mlj_dynamic_shared() {
  extern __shared__ __align__(16) unsigned char mlj_shared_bytes[];
  return mlj_shared_bytes;
}
MLJ_DEVICE void mlj_barrier() { __syncthreads(); }
MLJ_DEVICE float mlj_shfl_xor(float v, int lane_mask) { return __shfl_xor_sync(0xffffffffu, v, lane_mask); }
MLJ_DEVICE float mlj_neg_inf() { return __int_as_float(0xff800000); }
MLJ_DEVICE float mlj_bits_to_float(unsigned int bits) { return __uint_as_float(bits); }
MLJ_DEVICE unsigned int mlj_float_to_bits(float v) { return __float_as_uint(v); }
MLJ_DEVICE float mlj_exp2(float x) { return exp2f(x); }
MLJ_DEVICE float mlj_log2(float x) { return log2f(x); }
MLJ_DEVICE float mlj_tanh(float x) { return tanhf(x); }

MLJ_DEVICE float mlj_half_to_float(unsigned short h) {
  float f;
  asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
  return f;
}
MLJ_DEVICE unsigned short mlj_float_to_half(float f) {
  unsigned short h;
  asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
  return h;
}
