// Shared by the CPU-tier tests that run decode kernel templates through the fiber prelude: the
// stub's config struct, host output buffers poisoned with NaN, and the comparison with the
// reference. Include after host_platform.hpp and the kernel templates.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "tools/decode_check.hpp"

namespace mlajit::host_decode {

template <class T>
constexpr DType dtype_of() {
  if constexpr (std::is_same_v<T, mlj::bf16>) return DType::bf16;
  if constexpr (std::is_same_v<T, mlj::fp16>) return DType::fp16;
  if constexpr (std::is_same_v<T, mlj::fp8_e4m3>) return DType::fp8_e4m3;
  return DType::fp32;
}

constexpr RopeStyle rope_of(mlj::RopeStyle r) {
  return r == mlj::RopeStyle::neox ? RopeStyle::neox : r == mlj::RopeStyle::gptj ? RopeStyle::gptj : RopeStyle::none;
}

using mlj::RopeStyle::gptj;
using mlj::RopeStyle::neox;
constexpr mlj::RopeStyle kNoRope = mlj::RopeStyle::none;

// What the generated stub's MljDecodeConfig holds (kv_lora_rank 512, rope_dim 64, LSE written).
template <class Q, class Kv, class Out, int Heads, int PageSize, bool Causal, mlj::RopeStyle Rope, float Cap,
          int HeadsPerCta = 4, int Tile = 8, int Warps = 2>
struct HostCfg {
  using QType = Q;
  using KvType = Kv;
  using OutType = Out;
  static constexpr int kHeads = Heads;
  static constexpr int kKvLoraRank = 512;
  static constexpr int kRopeDim = 64;
  static constexpr int kPageSize = PageSize;
  static constexpr bool kCausal = Causal;
  static constexpr float kLogitCap = Cap;
  static constexpr bool kWriteLse = true;
  static constexpr mlj::RopeStyle kRope = Rope;
  static constexpr int kHeadsPerCta = HeadsPerCta;
  static constexpr int kTokensPerTile = Tile;
  static constexpr int kWarps = Warps;
  static constexpr int kStages = 1;
  static constexpr int kCombineThreads = 256;

  static Spec spec(int s_q) {
    Spec s;
    s.q_dtype = dtype_of<Q>();
    s.kv_dtype = dtype_of<Kv>();
    s.out_dtype = dtype_of<Out>();
    s.heads = Heads;
    s.page_size = PageSize;
    s.s_q = s_q;
    s.causal = Causal;
    s.logit_cap = Cap;
    s.return_lse = true;
    s.rope = rope_of(Rope);
    return s;
  }
  static TileConfig tile(int splits = 1) {
    return TileConfig{KernelFamily::portable, HeadsPerCta, Tile, Warps, 1, splits};
  }
};

// Host memory for a problem's outputs, NaN-poisoned so that an element nobody writes shows.
struct HostOutputs {
  std::vector<std::uint8_t> out, k_pe;
  std::vector<float> lse;

  explicit HostOutputs(const reference::DecodeProblem& p) {
    const Spec& s = p.spec;
    const std::size_t rows = std::size_t(p.total_q) * s.heads;
    out.assign(rows * s.v_dim() * dtype_size(s.out_dtype), 0xff);
    k_pe.assign(std::size_t(p.total_q) * s.rope_dim * dtype_size(s.kv_dtype), 0xff);
    lse.assign(rows, NAN);
  }

  tools::ProblemBuffers buffers(const reference::DecodeProblem& p) {
    return tools::ProblemBuffers{.q = p.q.data(),
                                 .kv = p.kv.data(),
                                 .out = out.data(),
                                 .lse = lse.data(),
                                 .qo_indptr = p.qo_indptr.data(),
                                 .kv_indptr = p.kv_indptr.data(),
                                 .kv_indices = p.kv_indices.data(),
                                 .kv_last_page_lens = p.kv_last_page_lens.data(),
                                 .cos_sin_cache = p.cos_sin_cache.data(),
                                 .positions = p.positions.data(),
                                 .k_pe_out = k_pe.data()};
  }

  // The outputs as floats, as a device run would read them back.
  void read_into(tools::DeviceRun& run, const Spec& s) const {
    run.out = tools::load_elements(out.data(), s.out_dtype, out.size() / dtype_size(s.out_dtype));
    run.lse = lse;
    if (s.rope != RopeStyle::none) run.k_pe_out = tools::load_elements(k_pe.data(), s.kv_dtype, k_pe.size() / dtype_size(s.kv_dtype));
  }
};

// Output, LSE (incl. its -inf pattern) and, with RoPE, k_pe_out against the reference.
inline void expect_matches(const reference::DecodeResult& want, const tools::DeviceRun& run, const Spec& spec) {
  const tools::Tolerance tol = tools::tolerance_for(spec);
  const reference::Comparison cmp = reference::compare(want, run.out, &run.lse, tol.atol, tol.rtol);
  EXPECT_EQ(cmp.non_finite_outputs, 0);
  EXPECT_EQ(cmp.mismatches, 0) << "max abs error " << cmp.max_abs_error;
  EXPECT_TRUE(cmp.lse_pattern_ok) << "LSE must be -inf exactly for rows that see no key";
  EXPECT_LT(cmp.max_lse_error, 1e-3);
  EXPECT_LT(cmp.cosine_distance, 1e-5);
  if (spec.rope != RopeStyle::none) {
    // Same float expression and rounding on both sides: equal bit for bit.
    const reference::Comparison k_pe = tools::compare_k_pe(want, run, spec);
    EXPECT_EQ(k_pe.mismatches, 0);
    EXPECT_EQ(k_pe.max_abs_error, 0.0);
  }
}

}  // namespace mlajit::host_decode
