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
// Counters between grids that run at once (the persistent reduce waits on stage 1's pieces):
// a device-scope fence after a thread's writes, an atomic add, an acquire load, a pause in a spin.
MLJ_DEVICE void mlj_fence_device() { __threadfence(); }
MLJ_DEVICE int mlj_atomic_add(int* counter, int v) { return atomicAdd(counter, v); }
MLJ_DEVICE int mlj_load_acquire(const int* p) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 700
  int v;
  asm volatile("ld.acquire.gpu.b32 %0, [%1];\n" : "=r"(v) : "l"(p) : "memory");
  return v;
#else
  const int v = *static_cast<const volatile int*>(p);
  __threadfence();
  return v;
#endif
}
MLJ_DEVICE void mlj_spin_pause() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 700
  __nanosleep(64);
#endif
}
MLJ_DEVICE float mlj_shfl_xor(float v, int lane_mask) { return __shfl_xor_sync(0xffffffffu, v, lane_mask); }
MLJ_DEVICE float mlj_shfl(float v, int src_lane) { return __shfl_sync(0xffffffffu, v, src_lane); }
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
// A hint: fetch `bytes` (a multiple of 16) from `gmem` (16-byte aligned) into L2, asynchronously
// (sm_90+; nothing before). A later copy of the bytes then finds them in L2.
MLJ_DEVICE void mlj_prefetch_l2(const void* gmem, unsigned int bytes) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;\n" ::"l"(gmem), "r"(bytes) : "memory");
#endif
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

// Programmatic dependent launch (sm_90+; runtime/backend.hpp LaunchOrder): a kernel launched as the
// programmatic dependent of the previous one waits here until that grid has completed and its
// writes are visible; launch_dependents lets this grid's dependent be scheduled early. Both are
// no-ops in a plain launch and before sm_90.
MLJ_DEVICE void mlj_wait_for_previous_grid() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
}
MLJ_DEVICE void mlj_launch_dependents() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
#endif
}

// ---- Hopper (sm_90a) primitives: wgmma, mbarrier, named barriers, register budgets ---------
// Only for kernels generated for sm_90a (the wgmma decode family); MLJ_HAS_WGMMA says they exist.
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define MLJ_HAS_WGMMA 1

// Shared-memory matrix descriptor of wgmma (PTX "matrix descriptor format") for a 128-byte
// swizzled operand: start address, leading / stride dimension byte offsets, swizzle mode 1.
MLJ_DEVICE unsigned long long mlj_wgmma_desc_sw128(unsigned int smem_addr, unsigned int lbo_bytes,
                                                   unsigned int sbo_bytes) {
  return (unsigned long long)((smem_addr & 0x3ffffu) >> 4) |
         ((unsigned long long)((lbo_bytes & 0x3ffffu) >> 4) << 16) |
         ((unsigned long long)((sbo_bytes & 0x3ffffu) >> 4) << 32) | (1ull << 62);
}
// The same for a 64-byte swizzled operand (swizzle mode 2).
MLJ_DEVICE unsigned long long mlj_wgmma_desc_sw64(unsigned int smem_addr, unsigned int lbo_bytes, unsigned int sbo_bytes) {
  return (mlj_wgmma_desc_sw128(smem_addr, lbo_bytes, sbo_bytes) & ~(3ull << 62)) | (2ull << 62);
}
MLJ_DEVICE void mlj_wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
MLJ_DEVICE void mlj_wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
template <int N>
MLJ_DEVICE void mlj_wgmma_wait() { asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory"); }
// Keeps the compiler from touching an accumulator between a wgmma and its wait.
MLJ_DEVICE void mlj_fence_operand(float& r) { asm volatile("" : "+f"(r)::"memory"); }

// D (64 x N fp32, the m64nNk16 fragment) (+)= A (64 x 16, descriptor) * B (16 x N, descriptor).
// kTransA: A is M-major (M contiguous) instead of K-major; B is K-major. accumulate == 0 zeroes D
// first. N = 8, 16, 24 or 32 (the rows of a wgmma decode CTA); the operand lists are spelled out.
#define MLJ_WGMMA_ASM(SHAPE, TYPES, TRANS_A, REGS, IA, IB, IS, ...)                                  \
  asm volatile("{\n .reg .pred p;\n setp.ne.b32 p, %" IS ", 0;\n wgmma.mma_async.sync.aligned." SHAPE TYPES \
               " " REGS ", %" IA ", %" IB ", p, 1, 1, " TRANS_A ", 0;\n}\n"                           \
               : __VA_ARGS__                                                                        \
               : "l"(a), "l"(b), "r"(accumulate))
#define MLJ_WGMMA_ALL(SHAPE, REGS, IA, IB, IS, ...)                                                 \
  if constexpr (kBf16 && kTransA) MLJ_WGMMA_ASM(SHAPE, ".f32.bf16.bf16", "1", REGS, IA, IB, IS, __VA_ARGS__); \
  else if constexpr (kBf16) MLJ_WGMMA_ASM(SHAPE, ".f32.bf16.bf16", "0", REGS, IA, IB, IS, __VA_ARGS__);       \
  else if constexpr (kTransA) MLJ_WGMMA_ASM(SHAPE, ".f32.f16.f16", "1", REGS, IA, IB, IS, __VA_ARGS__);       \
  else MLJ_WGMMA_ASM(SHAPE, ".f32.f16.f16", "0", REGS, IA, IB, IS, __VA_ARGS__)
template <int N, bool kBf16, bool kTransA>
MLJ_DEVICE void mlj_wgmma_m64k16(float (&d)[N / 2], unsigned long long a, unsigned long long b, int accumulate) {
  static_assert(N == 8 || N == 16 || N == 24 || N == 32, "wgmma decode: N must be 8, 16, 24 or 32");
  if constexpr (N == 8) {
    MLJ_WGMMA_ALL("m64n8k16", "{%0, %1, %2, %3}", "4", "5", "6",
                  "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]));
  } else if constexpr (N == 16) {
    MLJ_WGMMA_ALL("m64n16k16", "{%0, %1, %2, %3, %4, %5, %6, %7}", "8", "9", "10",
                  "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]));
  } else if constexpr (N == 24) {
    MLJ_WGMMA_ALL("m64n24k16", "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11}", "12", "13", "14",
                  "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]));
  } else if constexpr (N == 32) {
    MLJ_WGMMA_ALL("m64n32k16", "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15}", "16", "17", "18",
                  "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]));
  }
}
#undef MLJ_WGMMA_ALL
#undef MLJ_WGMMA_ASM
// The same product with A from registers (RS): a = the m64nNk16 A fragment (four f16x2 / bf16x2
// registers: rows lane / 4 (+ 8) of the warp's 16, columns 2 (lane % 4) (+ 1, + 8, + 9)); B
// K-major. The registers must stay untouched until a wgmma wait covers the product.
#define MLJ_WGMMA_RS_ASM(SHAPE, TYPES, REGS, OPERANDS, ...)                                          \
  asm volatile("{\n .reg .pred p;\n setp.ne.b32 p, %" OPERANDS ", 0;\n wgmma.mma_async.sync.aligned." SHAPE TYPES \
               " " REGS ";\n}\n"                                                                   \
               : __VA_ARGS__                                                                        \
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(accumulate))
#define MLJ_WGMMA_RS_BOTH(SHAPE, REGS, OPERANDS, ...)                                               \
  if constexpr (kBf16) MLJ_WGMMA_RS_ASM(SHAPE, ".f32.bf16.bf16", REGS, OPERANDS, __VA_ARGS__);        \
  else MLJ_WGMMA_RS_ASM(SHAPE, ".f32.f16.f16", REGS, OPERANDS, __VA_ARGS__)
template <int N, bool kBf16>
MLJ_DEVICE void mlj_wgmma_m64k16_rs(float (&d)[N / 2], const unsigned int (&a)[4], unsigned long long b,
                                    int accumulate) {
  static_assert(N == 8 || N == 16 || N == 24 || N == 32, "wgmma decode: N must be 8, 16, 24 or 32");
  if constexpr (N == 8) {
    MLJ_WGMMA_RS_BOTH("m64n8k16", "{%0, %1, %2, %3}, {%4, %5, %6, %7}, %8, p, 1, 1, 0", "9",
                      "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]));
  } else if constexpr (N == 16) {
    MLJ_WGMMA_RS_BOTH("m64n16k16", "{%0, %1, %2, %3, %4, %5, %6, %7}, {%8, %9, %10, %11}, %12, p, 1, 1, 0", "13",
                      "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]));
  } else if constexpr (N == 24) {
    MLJ_WGMMA_RS_BOTH("m64n24k16", "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11}, {%12, %13, %14, %15}, %16, p, 1, 1, 0", "17",
                      "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]));
  } else if constexpr (N == 32) {
    MLJ_WGMMA_RS_BOTH("m64n32k16", "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15}, {%16, %17, %18, %19}, %20, p, 1, 1, 0", "21",
                      "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]));
  }
}
#undef MLJ_WGMMA_RS_BOTH
#undef MLJ_WGMMA_RS_ASM

// The 64-row wgmma decode's two shapes (templates/decode/wgmma.cuh, kRows == 64):
//   S  (64 x 64, 32 fp32 a thread) (+)= A (64 x 16, descriptor, K-major) * B (16 x 64, descriptor, K-major)
//   O  (64 x 256, 128 fp32 a thread) += A (64 x 16, four bf16x2 / f16x2 registers: the m64nNk16
//      A fragment) * B (16 x 256, descriptor, N-major)
template <bool kBf16>
MLJ_DEVICE void mlj_wgmma_m64n64k16_ss(float (&d)[32], unsigned long long a, unsigned long long b, int accumulate) {
  if constexpr (kBf16) {
    asm volatile("{\n .reg .pred p;\n setp.ne.b32 p, %34, 0;\n"
                 " wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, %32, %33, p, 1, 1, 0, 0;\n}\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
                 : "l"(a), "l"(b), "r"(accumulate));
  } else {
    asm volatile("{\n .reg .pred p;\n setp.ne.b32 p, %34, 0;\n"
                 " wgmma.mma_async.sync.aligned.m64n64k16.f32.f16.f16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, %32, %33, p, 1, 1, 0, 0;\n}\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
                 : "l"(a), "l"(b), "r"(accumulate));
  }
}
// The m64n256 accumulator list (128 fp32 a thread) as asm operands %0-%127; D accumulates.
#define MLJ_D128_REGS "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, %64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, %80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95, %96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, %108, %109, %110, %111, %112, %113, %114, %115, %116, %117, %118, %119, %120, %121, %122, %123, %124, %125, %126, %127}"
#define MLJ_D128_OUT(d) "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]), "+f"(d[64]), "+f"(d[65]), "+f"(d[66]), "+f"(d[67]), "+f"(d[68]), "+f"(d[69]), "+f"(d[70]), "+f"(d[71]), "+f"(d[72]), "+f"(d[73]), "+f"(d[74]), "+f"(d[75]), "+f"(d[76]), "+f"(d[77]), "+f"(d[78]), "+f"(d[79]), "+f"(d[80]), "+f"(d[81]), "+f"(d[82]), "+f"(d[83]), "+f"(d[84]), "+f"(d[85]), "+f"(d[86]), "+f"(d[87]), "+f"(d[88]), "+f"(d[89]), "+f"(d[90]), "+f"(d[91]), "+f"(d[92]), "+f"(d[93]), "+f"(d[94]), "+f"(d[95]), "+f"(d[96]), "+f"(d[97]), "+f"(d[98]), "+f"(d[99]), "+f"(d[100]), "+f"(d[101]), "+f"(d[102]), "+f"(d[103]), "+f"(d[104]), "+f"(d[105]), "+f"(d[106]), "+f"(d[107]), "+f"(d[108]), "+f"(d[109]), "+f"(d[110]), "+f"(d[111]), "+f"(d[112]), "+f"(d[113]), "+f"(d[114]), "+f"(d[115]), "+f"(d[116]), "+f"(d[117]), "+f"(d[118]), "+f"(d[119]), "+f"(d[120]), "+f"(d[121]), "+f"(d[122]), "+f"(d[123]), "+f"(d[124]), "+f"(d[125]), "+f"(d[126]), "+f"(d[127])
#define MLJ_WGMMA_M64N256(TYPES, OPERANDS, ...) \
  asm volatile("{\n .reg .pred p;\n setp.ne.b32 p, 1, 0;\n wgmma.mma_async.sync.aligned.m64n256k16.f32" TYPES \
               " " MLJ_D128_REGS ", " OPERANDS ";\n}\n" : MLJ_D128_OUT(d) : __VA_ARGS__)
// A from registers (RS): scale-a / scale-b 1, B transposed (N-major).
template <bool kBf16>
MLJ_DEVICE void mlj_wgmma_m64n256k16_rs_tb(float (&d)[128], const unsigned int (&a)[4], unsigned long long b) {
  if constexpr (kBf16) {
    MLJ_WGMMA_M64N256(".bf16.bf16", "{%128, %129, %130, %131}, %132, p, 1, 1, 1", "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b));
  } else {
    MLJ_WGMMA_M64N256(".f16.f16", "{%128, %129, %130, %131}, %132, p, 1, 1, 1", "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b));
  }
}
// A from shared memory (SS, K-major descriptor), B transposed (N-major).
template <bool kBf16>
MLJ_DEVICE void mlj_wgmma_m64n256k16_ss_tb(float (&d)[128], unsigned long long a, unsigned long long b) {
  if constexpr (kBf16) {
    MLJ_WGMMA_M64N256(".bf16.bf16", "%128, %129, p, 1, 1, 0, 1", "l"(a), "l"(b));
  } else {
    MLJ_WGMMA_M64N256(".f16.f16", "%128, %129, p, 1, 1, 0, 1", "l"(a), "l"(b));
  }
}
#undef MLJ_WGMMA_M64N256
#undef MLJ_D128_OUT
#undef MLJ_D128_REGS

// mbarrier (CTA scope) and the async-copy arrival that completes when this thread's earlier
// cp.async copies have landed (.noinc: counted in the barrier's expected arrivals).
MLJ_DEVICE void mlj_mbarrier_init(void* bar, int count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(mlj_smem_addr(bar)), "r"(count) : "memory");
}
MLJ_DEVICE void mlj_mbarrier_inval(void* bar) {
  asm volatile("mbarrier.inval.shared::cta.b64 [%0];\n" ::"r"(mlj_smem_addr(bar)) : "memory");
}
MLJ_DEVICE void mlj_mbarrier_arrive(void* bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(mlj_smem_addr(bar)) : "memory");
}
MLJ_DEVICE void mlj_cp_async_mbarrier_arrive(void* bar) {
  asm volatile("cp.async.mbarrier.arrive.noinc.shared::cta.b64 [%0];\n" ::"r"(mlj_smem_addr(bar)) : "memory");
}
// Waits until the barrier's phase with the given parity (0 / 1) has completed.
MLJ_DEVICE void mlj_mbarrier_wait(void* bar, int parity) {
  asm volatile(
      "{\n .reg .pred done;\n"
      "wait_%=:\n"
      " mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n"
      " @!done bra wait_%=;\n}\n" ::"r"(mlj_smem_addr(bar)),
      "r"(parity)
      : "memory");
}
MLJ_DEVICE void mlj_cp_async_wait_all() { asm volatile("cp.async.wait_all;\n" ::: "memory"); }
// Orders this thread's generic-proxy shared-memory accesses before later async-proxy ones (wgmma
// operand reads).
MLJ_DEVICE void mlj_fence_proxy_async() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }
// Named barrier `id` (1..15; 0 is __syncthreads) over `threads` threads (a multiple of 32).
MLJ_DEVICE void mlj_named_barrier(int id, int threads) {
  asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}
template <int kRegisters>
MLJ_DEVICE void mlj_register_budget_raise() { asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(kRegisters)); }
template <int kRegisters>
MLJ_DEVICE void mlj_register_budget_lower() { asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(kRegisters)); }
#endif
