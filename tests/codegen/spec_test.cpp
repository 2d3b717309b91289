// Spec / TileConfig validation, canonical JSON and names.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "codegen/error.hpp"
#include "codegen/spec.hpp"

namespace mlajit {
namespace {

// The message of the invalid_argument `fn` throws ("" when it does not throw).
template <class Fn>
std::string invalid_message(Fn&& fn) {
  try {
    fn();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::invalid_argument);
    return e.what();
  }
  return "";
}

TEST(SpecValidation, AcceptsTheDefaultAndOddShapes) {
  EXPECT_NO_THROW(validate(Spec{}));
  for (int heads : {1, 20, 100, 256}) {
    Spec s;
    s.heads = heads;
    EXPECT_NO_THROW(validate(s)) << heads;
  }
  Spec s;
  s.q_dtype = DType::fp8_e4m3;
  s.kv_dtype = DType::fp8_e4m3;
  s.page_size = 256;
  s.s_q = 8;
  s.logit_cap = 30.0f;
  EXPECT_NO_THROW(validate(s));
  for (RopeStyle rope : {RopeStyle::neox, RopeStyle::gptj}) {
    s.rope = rope;
    for (int page_size : {1, 16, 128, 256}) {
      s.page_size = page_size;
      EXPECT_NO_THROW(validate(s)) << rope_style_name(rope) << " page " << page_size;
    }
  }
}

TEST(RopeStyle, ParsesItsNamesAndNamesTheArgument) {
  for (RopeStyle style : {RopeStyle::none, RopeStyle::neox, RopeStyle::gptj}) {
    EXPECT_EQ(parse_rope_style(rope_style_name(style)), style);
  }
  const std::string message = invalid_message([] { parse_rope_style("yarn", "--rope"); });
  EXPECT_NE(message.find("'--rope'"), std::string::npos) << message;
  EXPECT_NE(message.find("none, neox, gptj"), std::string::npos) << message;
  EXPECT_NE(invalid_message([] { spec_from_json(nlohmann::json{{"rope", "NeoX"}}); }).find("'rope'"),
            std::string::npos);
}

TEST(SpecValidation, NamesTheArgumentAndTheConstraint) {
  struct Case {
    void (*mutate)(Spec&);
    const char* argument;
    const char* constraint;
  };
  const Case cases[] = {
      {[](Spec& s) { s.heads = 0; }, "'heads'", "[1, 256]"},
      {[](Spec& s) { s.heads = 257; }, "'heads'", "[1, 256]"},
      {[](Spec& s) { s.page_size = 48; }, "'page_size'", "power of two"},
      {[](Spec& s) { s.page_size = 512; }, "'page_size'", "[1, 256]"},
      {[](Spec& s) { s.s_q = 9; }, "'s_q'", "[1, 8]"},
      {[](Spec& s) { s.s_q = 0; }, "'s_q'", "[1, 8]"},
      {[](Spec& s) { s.kv_lora_rank = 500; }, "'kv_lora_rank'", "multiple of 16"},
      {[](Spec& s) { s.rope_dim = 70; }, "'rope_dim'", "multiple of 16"},
      {[](Spec& s) { s.logit_cap = -1.0f; }, "'logit_cap'", ">= 0"},
      {[](Spec& s) { s.q_dtype = DType::fp32; }, "'q_dtype'", "bf16, fp16 or fp8_e4m3"},
      {[](Spec& s) { s.out_dtype = DType::fp8_e4m3; }, "'out_dtype'", "bf16, fp16 or fp32"},
      {[](Spec& s) { s.rope = RopeStyle::neox; s.rope_dim = 0; }, "'rope'", "rope_dim > 0"},
  };
  for (const Case& c : cases) {
    Spec s;
    c.mutate(s);
    const std::string message = invalid_message([&] { validate(s); });
    EXPECT_NE(message.find(c.argument), std::string::npos) << message;
    EXPECT_NE(message.find(c.constraint), std::string::npos) << message;
  }
}

TEST(TileValidation, ChecksTheTargetLimits) {
  const Spec spec;
  const Target amd = parse_target("gfx90a");
  TileConfig big;
  big.heads_per_cta = 16;
  big.tokens_per_tile = 64;  // 36.9 KB q + 73.7 KB kv: over gfx90a's 64 KiB of LDS
  big.warps = 4;
  const std::string message = invalid_message([&] { validate(big, spec, amd); });
  EXPECT_NE(message.find("shared memory"), std::string::npos) << message;
  EXPECT_NO_THROW(validate(big, spec, parse_target("sm_90a")));

  TileConfig too_many_threads;
  too_many_threads.warps = 16;  // 16 x 64 lanes = 1024: allowed; 32 would not be a power-of-two option
  EXPECT_NO_THROW(validate(too_many_threads, spec, parse_target("sm_90a")));
  TileConfig bad_tile;
  bad_tile.tokens_per_tile = 24;
  EXPECT_NE(invalid_message([&] { validate(bad_tile, spec, amd); }).find("'tokens_per_tile'"), std::string::npos);
  TileConfig bad_stages;
  bad_stages.stages = 2;
  EXPECT_NE(invalid_message([&] { validate(bad_stages, spec, amd); }).find("'stages'"), std::string::npos);
}

TEST(Target, ParsesKnownArchsAndRejectsOthers) {
  EXPECT_EQ(parse_target("sm_90a").backend, Backend::cuda);
  EXPECT_EQ(parse_target("sm_90a").sm_version(), 90);
  EXPECT_EQ(parse_target("sm_80").warp_size(), 32);
  EXPECT_EQ(parse_target("gfx942").backend, Backend::hip);
  EXPECT_EQ(parse_target("gfx942").warp_size(), 64);
  for (const char* bad : {"sm_75", "sm_", "gfx1100", "h100", ""}) {
    EXPECT_NE(invalid_message([&] { parse_target(bad, "--arch"); }).find("'--arch'"), std::string::npos) << bad;
  }
}

TEST(CanonicalJson, IsStableAndRoundTrips) {
  Spec s;
  s.heads = 20;
  s.page_size = 16;
  s.s_q = 3;
  s.logit_cap = 30.0f;
  const std::string text = to_json(s).dump();
  EXPECT_EQ(text,
            R"({"causal":true,"heads":20,"kv_dtype":"bf16","kv_lora_rank":512,"logit_cap":30.0,"op":"decode",)"
            R"("out_dtype":"bf16","page_size":16,"q_dtype":"bf16","return_lse":false,"rope":"none","rope_dim":64,"s_q":3})");
  EXPECT_EQ(spec_from_json(nlohmann::json::parse(text)), s);
  s.rope = RopeStyle::gptj;
  EXPECT_EQ(to_json(s)["rope"], "gptj");
  EXPECT_EQ(spec_from_json(to_json(s)), s);
  TileConfig t;
  t.num_splits = 7;
  EXPECT_EQ(tile_from_json(to_json(t)), t);
  EXPECT_FALSE(kernel_json(t).contains("num_splits"));  // a launch parameter, not part of the key
}

TEST(CanonicalJson, CausalIsIrrelevantForOneQueryToken) {
  Spec a, b;
  b.causal = false;
  EXPECT_EQ(to_json(a).dump(), to_json(b).dump());
  a.s_q = b.s_q = 2;
  EXPECT_NE(to_json(a).dump(), to_json(b).dump());
}

TEST(CanonicalJson, RejectsUnknownKeysAndWrongTypes) {
  EXPECT_NE(invalid_message([] { spec_from_json(nlohmann::json{{"head", 16}}); }).find("unknown key 'head'"),
            std::string::npos);
  EXPECT_NE(invalid_message([] { spec_from_json(nlohmann::json{{"heads", "many"}}); }).find("'heads'"),
            std::string::npos);
  EXPECT_NE(invalid_message([] { spec_from_json(nlohmann::json{{"q_dtype", "int8"}}); }).find("'q_dtype'"),
            std::string::npos);
}

TEST(KernelName, IsReadable) {
  Spec s;
  s.heads = 128;
  s.page_size = 64;
  s.s_q = 2;
  s.kv_dtype = DType::fp8_e4m3;
  TileConfig t;
  EXPECT_EQ(kernel_base_name(s, t), "mla_decode_q-bf16_kv-fp8_e4m3_o-bf16_h128_sq2_ps64_d512-64_simt_hc16_bn32_w8");
  t.family = KernelFamily::mma;
  t.stages = 2;
  EXPECT_EQ(kernel_base_name(s, t), "mla_decode_q-bf16_kv-fp8_e4m3_o-bf16_h128_sq2_ps64_d512-64_mma_hc16_bn32_w8_st2");
  s.rope = RopeStyle::neox;
  EXPECT_EQ(kernel_base_name(s, t),
            "mla_decode_q-bf16_kv-fp8_e4m3_o-bf16_h128_sq2_ps64_d512-64_rope-neox_mma_hc16_bn32_w8_st2");
}

TEST(CanonicalJson, RopeStyleIsPartOfTheKey) {
  Spec a, b;
  b.rope = RopeStyle::neox;
  EXPECT_NE(to_json(a).dump(), to_json(b).dump());
  Spec c = b;
  c.rope = RopeStyle::gptj;
  EXPECT_NE(to_json(b).dump(), to_json(c).dump());
}

}  // namespace
}  // namespace mlajit
