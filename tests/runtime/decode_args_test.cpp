// decode_spec: every host-side check of a decode call names its argument, with no device needed
// (FP8 scales, fused-RoPE arguments, query lengths, page sizes).
#include <gtest/gtest.h>

#include <cstdint>
#include <functional>
#include <string>

#include "codegen/error.hpp"
#include "runtime/engine.hpp"

namespace mlajit {
namespace {

// Non-null, suitably aligned stand-ins: decode_spec never dereferences device pointers.
alignas(16) unsigned char g_device[256];

DecodeArgs valid_args() {
  DecodeArgs a;
  a.q = a.kv_buffer = g_device;
  a.out = g_device;
  a.qo_indptr = a.kv_indptr = a.kv_indices = a.kv_last_page_lens = reinterpret_cast<const int*>(g_device);
  a.batch = 2;
  a.total_q = 6;
  a.num_heads = 20;
  a.max_seqlen_q = 3;
  a.page_size = 16;
  a.num_kv_indices = 10;
  return a;
}

DecodeArgs valid_rope_args() {
  DecodeArgs a = valid_args();
  a.rope = RopeStyle::gptj;
  a.cos_sin_cache = g_device;
  a.max_positions = 4096;
  a.positions = reinterpret_cast<const std::int64_t*>(g_device);
  a.k_pe_out = g_device + 64;
  return a;
}

// The argument named by the invalid_argument decode_spec throws ("" when it accepts).
std::string rejected_argument(const DecodeArgs& a) {
  try {
    decode_spec(a);
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::invalid_argument);
    const std::string m = e.what();
    const auto open = m.find('\'');
    return open == std::string::npos ? m : m.substr(open + 1, m.find('\'', open + 1) - open - 1);
  }
  return "";
}

TEST(DecodeSpec, CarriesTheCallIntoTheSpec) {
  DecodeArgs a = valid_rope_args();
  a.q_dtype = a.kv_dtype = DType::fp8_e4m3;
  a.q_scale = 0.5f;
  a.kv_scale = 0.25f;
  a.logit_cap = 30.0f;
  const Spec s = decode_spec(a);
  EXPECT_EQ(s.rope, RopeStyle::gptj);
  EXPECT_EQ(s.q_dtype, DType::fp8_e4m3);
  EXPECT_EQ(s.s_q, 3);
  EXPECT_EQ(s.page_size, 16);
  EXPECT_EQ(s.logit_cap, 30.0f);
}

TEST(DecodeSpec, AcceptsEveryQueryLengthAndPageSizeOfTheIssue) {
  for (int s_q = 1; s_q <= 8; ++s_q) {
    for (int page_size : {1, 2, 16, 64, 128, 256}) {
      DecodeArgs a = valid_args();
      a.max_seqlen_q = s_q;
      a.page_size = page_size;
      a.total_q = 2 * s_q;
      EXPECT_EQ(rejected_argument(a), "") << "s_q " << s_q << " page " << page_size;
    }
  }
}

TEST(DecodeSpec, NamesEachRejectedArgument) {
  struct Case {
    std::function<void(DecodeArgs&)> mutate;
    const char* argument;
  };
  const Case cases[] = {
      {[](DecodeArgs& a) { a.max_seqlen_q = 9; }, "max_seqlen_q"},
      {[](DecodeArgs& a) { a.total_q = 7; }, "total_q"},
      {[](DecodeArgs& a) { a.page_size = 512; }, "page_size"},
      {[](DecodeArgs& a) { a.page_size = 24; }, "page_size"},
      {[](DecodeArgs& a) { a.q_dtype = a.kv_dtype = DType::fp8_e4m3; a.q_scale = 0.0f; }, "q_scale"},
      {[](DecodeArgs& a) { a.kv_dtype = DType::fp8_e4m3; a.kv_scale = -1.0f; }, "kv_scale"},
      {[](DecodeArgs& a) { a.kv_scale = INFINITY; }, "kv_scale"},
      {[](DecodeArgs& a) { a.logit_cap = -2.0f; }, "logit_cap"},
      {[](DecodeArgs& a) { a.out_dtype = DType::fp8_e4m3; }, "out_dtype"},
      {[](DecodeArgs& a) { a.cos_sin_cache = nullptr; }, "cos_sin_cache"},
      {[](DecodeArgs& a) { a.positions = nullptr; }, "positions"},
      {[](DecodeArgs& a) { a.k_pe_out = nullptr; }, "k_pe_out"},
      {[](DecodeArgs& a) { a.max_positions = 0; }, "max_positions"},
      {[](DecodeArgs& a) { a.cos_sin_dtype = DType::fp8_e4m3; }, "cos_sin_dtype"},
      {[](DecodeArgs& a) { a.positions = reinterpret_cast<const std::int64_t*>(g_device + 4); }, "positions"},
      {[](DecodeArgs& a) { a.cos_sin_dtype = DType::fp32; a.cos_sin_cache = g_device + 2; }, "cos_sin_cache"},
      {[](DecodeArgs& a) { a.k_pe_out = g_device + 1; }, "k_pe_out"},
      {[](DecodeArgs& a) { a.rope_dim = 0; }, "rope"},
  };
  for (const Case& c : cases) {
    DecodeArgs a = valid_rope_args();
    c.mutate(a);
    EXPECT_EQ(rejected_argument(a), c.argument);
  }
}

TEST(DecodeSpec, RopeArgumentsAreIgnoredWithoutRope) {
  DecodeArgs a = valid_args();
  a.max_positions = 0;  // cos_sin_cache, positions, k_pe_out are null too
  EXPECT_EQ(rejected_argument(a), "");
  a.rope = RopeStyle::neox;
  EXPECT_EQ(rejected_argument(a), "cos_sin_cache");
}

TEST(DecodeSpec, Fp8ScalesAreCheckedEvenForBf16) {
  // AITER's bf16 q with an fp8 cache takes kv_scale optionally; a garbage scale is still refused.
  DecodeArgs a = valid_args();
  a.kv_dtype = DType::fp8_e4m3;
  EXPECT_EQ(rejected_argument(a), "");
  a.q_scale = NAN;
  EXPECT_EQ(rejected_argument(a), "q_scale");
}

}  // namespace
}  // namespace mlajit
