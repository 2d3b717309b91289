// The float32 reference on cases whose answer is known by hand.
#include <gtest/gtest.h>

#include <cmath>

#include "reference/decode_reference.hpp"

namespace mlajit::reference {
namespace {

TEST(Reference, OneKeyGivesItsValueAndLogit) {
  Spec s;
  s.heads = 2;
  s.kv_dtype = DType::bf16;
  ProblemOptions o;
  o.kv_lens = {1};
  const DecodeProblem p = make_problem(s, o);
  const DecodeResult r = decode(p);
  const int D = s.qk_dim(), Dv = s.v_dim();
  const std::size_t key = std::size_t(p.kv_indices[0]) * p.kv_page_stride;
  for (int h = 0; h < 2; ++h) {
    double dot = 0;
    for (int d = 0; d < D; ++d) dot += double(load_element(p.q.data(), s.q_dtype, h * D + d)) * load_element(p.kv.data(), s.kv_dtype, key + d);
    EXPECT_NEAR(r.lse[h], dot * p.sm_scale, 1e-4);
    for (int c = 0; c < Dv; ++c) EXPECT_FLOAT_EQ(r.out[h * Dv + c], load_element(p.kv.data(), s.kv_dtype, key + c));
  }
}

TEST(Reference, ZeroLengthRequestGivesZerosAndMinusInfinity) {
  Spec s;
  s.heads = 3;
  s.page_size = 16;
  ProblemOptions o;
  o.kv_lens = {0, 5};
  const DecodeProblem p = make_problem(s, o);
  EXPECT_EQ(p.kv_indptr[1], 0);
  const DecodeResult r = decode(p);
  for (int h = 0; h < 3; ++h) {
    EXPECT_TRUE(std::isinf(r.lse[h]) && r.lse[h] < 0);
    for (int c = 0; c < s.v_dim(); ++c) EXPECT_EQ(r.out[h * s.v_dim() + c], 0.0f);
    EXPECT_TRUE(std::isfinite(r.lse[3 + h]));
  }
}

TEST(Reference, CausalMaskIsBottomRightAligned) {
  // s_q = 2 over 3 keys: token 0 sees keys 0..1, token 1 sees 0..2. With 1 key and s_q 2,
  // token 0 sees nothing (-inf) and token 1 sees the key.
  Spec s;
  s.heads = 1;
  s.s_q = 2;
  ProblemOptions o;
  o.kv_lens = {1};
  const DecodeResult r = decode(make_problem(s, o));
  EXPECT_TRUE(std::isinf(r.lse[0]));
  EXPECT_TRUE(std::isfinite(r.lse[1]));
  s.causal = false;
  const DecodeResult nc = decode(make_problem(s, o));
  EXPECT_TRUE(std::isfinite(nc.lse[0]));
}

TEST(Reference, PoisonsUnusedRowsSoOverReadsShow) {
  Spec s;
  s.page_size = 16;
  ProblemOptions o;
  o.kv_lens = {5};
  const DecodeProblem p = make_problem(s, o);
  const std::size_t last_page = std::size_t(p.kv_indices[0]) * p.kv_page_stride;
  EXPECT_TRUE(std::isnan(load_element(p.kv.data(), s.kv_dtype, last_page + 5 * s.qk_dim())));
  EXPECT_FALSE(std::isnan(load_element(p.kv.data(), s.kv_dtype, last_page + 4 * s.qk_dim())));
}

TEST(Compare, CountsMismatchesAndNonFinite) {
  DecodeResult want;
  want.out = {1.0f, 2.0f, 3.0f};
  want.lse = {0.5f, -INFINITY};
  std::vector<float> lse_ok = {0.5f, -INFINITY}, lse_bad = {0.5f, 0.0f};
  Comparison c = compare(want, {1.0f, 2.5f, NAN}, &lse_ok, 1e-3, 1e-3);
  EXPECT_EQ(c.mismatches, 2);
  EXPECT_EQ(c.non_finite_outputs, 1);
  EXPECT_TRUE(c.lse_pattern_ok);
  EXPECT_FALSE(compare(want, want.out, &lse_bad, 1e-3, 1e-3).lse_pattern_ok);
}

}  // namespace
}  // namespace mlajit::reference
