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

// Hand-computed rotations of x = (1, 2, 3, 4): frequency 0 turned by 90 degrees (cos 0, sin 1),
// frequency 1 by 0 degrees. NeoX pairs (0, 2) and (1, 3); GPT-J pairs (0, 1) and (2, 3).
TEST(Rope, RotatesTheRightPairsInEachStyle) {
  const float x[4] = {1, 2, 3, 4};
  const float cos_sin[4] = {0, 1, 1, 0};  // cos(f0), cos(f1) | sin(f0), sin(f1)
  const float neox[4] = {-3, 2, 1, 4};    // (x0 c - x2 s, x1, x2 c + x0 s, x3)
  const float gptj[4] = {-2, 1, 3, 4};    // (x0 c - x1 s, x1 c + x0 s, x2, x3)
  for (int d = 0; d < 4; ++d) {
    EXPECT_EQ(rope_element(RopeStyle::neox, x, cos_sin, 4, d), neox[d]) << d;
    EXPECT_EQ(rope_element(RopeStyle::gptj, x, cos_sin, 4, d), gptj[d]) << d;
  }
  // 60 degrees on frequency 0, 180 on frequency 1.
  const float c = 0.5f, s = std::sqrt(3.0f) / 2;
  const float turned[4] = {c, -1, s, 0};
  EXPECT_FLOAT_EQ(rope_element(RopeStyle::neox, x, turned, 4, 0), 1 * c - 3 * s);
  EXPECT_FLOAT_EQ(rope_element(RopeStyle::neox, x, turned, 4, 3), -4.0f);
  EXPECT_FLOAT_EQ(rope_element(RopeStyle::gptj, x, turned, 4, 1), 2 * c + 1 * s);
  EXPECT_FLOAT_EQ(rope_element(RopeStyle::gptj, x, turned, 4, 2), -3.0f);
}

TEST(Rope, TableHoldsCosThenSinOfEachPosition) {
  Spec s;
  s.heads = 1;
  s.rope = RopeStyle::neox;
  ProblemOptions o;
  o.kv_lens = {3};
  o.cos_sin_dtype = DType::fp32;
  o.max_positions = 8;
  const DecodeProblem p = make_problem(s, o);
  ASSERT_EQ(p.positions, std::vector<std::int64_t>{2});  // the one query token owns the last key
  auto table = [&](int pos, int i) {
    return load_element(p.cos_sin_cache.data(), DType::fp32, std::size_t(pos) * 64 + i);
  };
  EXPECT_FLOAT_EQ(table(5, 0), float(std::cos(5.0)));
  EXPECT_FLOAT_EQ(table(5, 32), float(std::sin(5.0)));
  EXPECT_FLOAT_EQ(table(3, 31 + 32), float(std::sin(3 * std::pow(10000.0, -62.0 / 64))));
}

// One query token, two keys: key 0 is an older token (its k_pe already rotated, used as
// stored), key 1 is the token's own (rotated in the kernel). q_pe = e0, key 0's k_pe = e1, key
// 1's k_pe = e0, everything else 0 except V[0] = 1 on key 0. At position 1 (angle 1 rad on
// frequency 0) GPT-J turns q_pe into (cos 1, sin 1, 0, ...), so <q, k0> = sin 1, <q, k1> =
// cos^2 1 + sin^2 1 (all rounded to bf16), and k_pe_out = (cos 1, sin 1, 0, ...).
TEST(Rope, ReferenceRotatesQueryAndOwnKeyOnly) {
  for (RopeStyle style : {RopeStyle::gptj, RopeStyle::neox}) {
    SCOPED_TRACE(std::string(rope_style_name(style)));
    Spec s;
    s.heads = 1;
    s.kv_lora_rank = 16;
    s.rope_dim = 16;
    s.rope = style;
    ProblemOptions o;
    o.kv_lens = {2};
    o.cos_sin_dtype = DType::fp32;
    o.position_offset = 0;  // the token's own key is key 1: position 1
    DecodeProblem p = make_problem(s, o);
    ASSERT_EQ(p.positions[0], 1);
    const int partner = style == RopeStyle::gptj ? 1 : 8;  // where e0's sine lands
    std::fill(p.q.begin(), p.q.end(), 0);
    auto kv_at = [&](int key, int d) { return std::size_t(p.kv_indices[key]) * p.kv_page_stride + d; };
    for (int d = 0; d < 32; ++d) {
      for (int key = 0; key < 2; ++key) store_element(p.kv.data(), s.kv_dtype, kv_at(key, d), 0.0f);
    }
    store_element(p.q.data(), s.q_dtype, 16, 1.0f);
    store_element(p.kv.data(), s.kv_dtype, kv_at(0, 16 + partner), 1.0f);
    store_element(p.kv.data(), s.kv_dtype, kv_at(1, 16), 1.0f);
    store_element(p.kv.data(), s.kv_dtype, kv_at(0, 0), 1.0f);
    const DecodeResult r = decode(p);
    const float c = bf16_to_float(float_to_bf16(float(std::cos(1.0))));
    const float sn = bf16_to_float(float_to_bf16(float(std::sin(1.0))));
    const double s0 = p.sm_scale * sn, s1 = p.sm_scale * (double(c) * c + double(sn) * sn);
    EXPECT_NEAR(r.lse[0], std::log(std::exp(s0) + std::exp(s1)), 1e-6);
    EXPECT_NEAR(r.out[0], std::exp(s0) / (std::exp(s0) + std::exp(s1)), 1e-6);
    ASSERT_EQ(r.k_pe_out.size(), 16u);
    for (int d = 0; d < 16; ++d) EXPECT_EQ(r.k_pe_out[d], d == 0 ? c : d == partner ? sn : 0.0f) << d;
  }
}

TEST(Rope, TokensWithoutTheirOwnKeyGetZerosAndClampedPositions) {
  Spec s;
  s.heads = 2;
  s.s_q = 3;
  s.rope = RopeStyle::neox;
  ProblemOptions o;
  o.kv_lens = {1};
  o.max_positions = 16;
  o.position_offset = 20;  // past the table: clamped to its last row
  const DecodeProblem p = make_problem(s, o);
  EXPECT_EQ(p.positions, (std::vector<std::int64_t>{18, 19, 20}));
  const DecodeResult r = decode(p);
  for (int d = 0; d < 64; ++d) {
    EXPECT_EQ(r.k_pe_out[d], 0.0f);        // token 0: key -2 does not exist
    EXPECT_EQ(r.k_pe_out[64 + d], 0.0f);   // token 1: key -1 neither
  }
  bool rotated = false;
  for (int d = 0; d < 64; ++d) rotated |= r.k_pe_out[128 + d] != 0.0f;
  EXPECT_TRUE(rotated);
  EXPECT_TRUE(std::isinf(r.lse[0]) && std::isinf(r.lse[2]));  // causal: tokens 0, 1 see no key
  EXPECT_TRUE(std::isfinite(r.lse[4]));
}

TEST(Compare, CosineDistanceIsZeroForEqualAndOneForOrthogonal) {
  DecodeResult want;
  want.out = {1.0f, 0.0f};
  want.lse = {0.0f};
  EXPECT_NEAR(compare(want, {1.0f, 0.0f}, nullptr, 0, 0).cosine_distance, 0.0, 1e-12);
  EXPECT_NEAR(compare(want, {0.0f, 1.0f}, nullptr, 0, 0).cosine_distance, 1.0, 1e-12);
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
