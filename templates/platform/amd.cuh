// AMD prelude (hipRTC, gfx90a / gfx942 / gfx950): the only place kernels learn they run on HIP.
#pragma once

#define MLJ_DEVICE __device__ __forceinline__
#define MLJ_GLOBAL extern "C" __global__
#define MLJ_WARP_SIZE 64
// A fixed-size shared-memory array declared inside a device function: MLJ_SHARED float a[N];
#define MLJ_SHARED __shared__

MLJ_DEVICE unsigned char* mlj_dynamic_shared() {
  extern __shared__ __attribute__((aligned(16))) unsigned char mlj_shared_bytes[];
  return mlj_shared_bytes;
}
MLJ_DEVICE void mlj_barrier() { __syncthreads(); }
// Counters between grids that run at once (the persistent reduce waits on stage 1's pieces):
// a device-scope fence after a thread's writes, an atomic add, an acquire load, a pause in a spin.
MLJ_DEVICE void mlj_fence_device() { __threadfence(); }
MLJ_DEVICE int mlj_atomic_add(int* counter, int v) { return atomicAdd(counter, v); }
MLJ_DEVICE int mlj_load_acquire(const int* p) { return __hip_atomic_load(p, __ATOMIC_ACQUIRE, __HIP_MEMORY_SCOPE_AGENT); }
MLJ_DEVICE void mlj_spin_pause() { __builtin_amdgcn_s_sleep(1); }
MLJ_DEVICE float mlj_shfl_xor(float v, int lane_mask) { return __shfl_xor(v, lane_mask); }
MLJ_DEVICE float mlj_shfl(float v, int src_lane) { return __shfl(v, src_lane); }
MLJ_DEVICE float mlj_neg_inf() { return -__builtin_inff(); }
MLJ_DEVICE float mlj_bits_to_float(unsigned int bits) { return __builtin_bit_cast(float, bits); }
MLJ_DEVICE unsigned int mlj_float_to_bits(float v) { return __builtin_bit_cast(unsigned int, v); }
MLJ_DEVICE float mlj_exp2(float x) { return exp2f(x); }
MLJ_DEVICE float mlj_log2(float x) { return log2f(x); }
// No programmatic dependent launch on AMD: every launch is in stream order.
MLJ_DEVICE void mlj_wait_for_previous_grid() {}
MLJ_DEVICE void mlj_launch_dependents() {}
MLJ_DEVICE float mlj_tanh(float x) { return tanhf(x); }
MLJ_DEVICE float mlj_fma(float a, float b, float c) { return fmaf(a, b, c); }
MLJ_DEVICE float mlj_rint(float x) { return rintf(x); }  // nearest, ties to even

MLJ_DEVICE float mlj_half_to_float(unsigned short h) { return float(__builtin_bit_cast(_Float16, h)); }
MLJ_DEVICE unsigned short mlj_float_to_half(float f) {
  return __builtin_bit_cast(unsigned short, static_cast<_Float16>(f));
}
