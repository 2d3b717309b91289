// NVIDIA prelude (NVRTC, sm_80+): the only place kernels learn they run on CUDA.
// Self-contained: no toolkit headers are needed to compile generated source.
#pragma once

#define MLJ_DEVICE __device__ __forceinline__
#define MLJ_GLOBAL extern "C" __global__
#define MLJ_WARP_SIZE 32
// A fixed-size shared-memory array declared inside a device function: MLJ_SHARED float a[N];
#define MLJ_SHARED __shared__

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
MLJ_DEVICE float mlj_fma(float a, float b, float c) { return fmaf(a, b, c); }
MLJ_DEVICE float mlj_rint(float x) { return rintf(x); }  // nearest, ties to even

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

// ---- matrix-core primitives (sm_80+): async copies, ldmatrix, mma.sync m16n8k16 ----------
MLJ_DEVICE unsigned int mlj_smem_addr(const void* p) {
  unsigned int a;
  asm("{ .reg .u64 t; cvta.to.shared.u64 t, %1; cvt.u32.u64 %0, t; }" : "=r"(a) : "l"(p));
  return a;
}
// 16-byte global -> shared copy; src_bytes 0 zero-fills the destination.
MLJ_DEVICE void mlj_cp_async16(void* smem, const void* gmem, int src_bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(mlj_smem_addr(smem)), "l"(gmem), "r"(src_bytes));
}
MLJ_DEVICE void mlj_cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
MLJ_DEVICE void mlj_cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }

MLJ_DEVICE void mlj_ldmatrix_x4(unsigned int (&r)[4], const void* smem) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(mlj_smem_addr(smem)));
}
MLJ_DEVICE void mlj_ldmatrix_x4_trans(unsigned int (&r)[4], const void* smem) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(mlj_smem_addr(smem)));
}

// D += A (16x16, row) * B (16x8, col), fp32 accumulators; kBf16 picks bf16 or fp16 operands.
template <bool kBf16>
MLJ_DEVICE void mlj_mma_16816(float (&d)[4], const unsigned int (&a)[4], unsigned int b0, unsigned int b1) {
  if (kBf16) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  } else {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
}

// Two floats -> packed bf16x2 / f16x2 (low half = first), round to nearest.
template <bool kBf16>
MLJ_DEVICE unsigned int mlj_pack2(float lo, float hi) {
  unsigned int r;
  if (kBf16) {
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;\n" : "=r"(r) : "f"(hi), "f"(lo));
  } else {
    asm("cvt.rn.f16x2.f32 %0, %1, %2;\n" : "=r"(r) : "f"(hi), "f"(lo));
  }
  return r;
}

// ---- fp8 (e4m3) widening for the mma family's fp8 KV cache / fp8 q ------------------------
// Four e4m3 values (byte i = element i) -> f16x2 pairs lo (elements 0, 1) and hi (2, 3), low half
// = lower element. Exact: every e4m3 value, subnormals included, is an fp16 normal (or zero);
// NaN stays NaN. One cvt.rn.f16x2.e4m3x2 per pair (sm_89+; MLJ_HAS_CVT_E4M3 says it exists).
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
#define MLJ_HAS_CVT_E4M3 1
MLJ_DEVICE void mlj_e4m3x4_to_f16x4(unsigned int x, unsigned int& lo, unsigned int& hi) {
  asm("{ .reg .b16 l, h;\n"
      "  mov.b32 {l, h}, %2;\n"
      "  cvt.rn.f16x2.e4m3x2 %0, l;\n"
      "  cvt.rn.f16x2.e4m3x2 %1, h;\n"
      "}\n"
      : "=r"(lo), "=r"(hi) : "r"(x));
}
#endif
// f16x2 -> bf16x2 through fp32 (exact for values bf16 holds, e.g. every widened e4m3 value).
MLJ_DEVICE unsigned int mlj_f16x2_to_bf16x2(unsigned int h) {
  unsigned int r;
  asm("{ .reg .b16 l, u;\n"
      "  .reg .f32 fl, fu;\n"
      "  mov.b32 {l, u}, %1;\n"
      "  cvt.f32.f16 fl, l;\n"
      "  cvt.f32.f16 fu, u;\n"
      "  cvt.rn.bf16x2.f32 %0, fu, fl;\n"
      "}\n"
      : "=r"(r) : "r"(h));
  return r;
}
