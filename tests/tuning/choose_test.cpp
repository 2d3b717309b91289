// The split / tile model against hand-worked cases. Unless a test says otherwise: DeepSeek-V3
// dims (576-wide bf16 rows: 1152 B), 16 heads, s_q 1, the mma tile (16 rows per CTA, 32-token
// tiles), 132 SMs, default parameters (overhead o = 84.1 tokens, tail floor 0.5, combine launch
// 32 tokens, traffic factor 1). One CTA's partial write when splits > 1 costs
// 16 rows * (513 * 4 B fp32 partial + LSE - 512 * 2 B bf16 output) / 1152 B = 14.278 tokens.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "codegen/error.hpp"
#include "tuning/choose.hpp"
#include "tuning/select.hpp"

namespace mlajit::tuning {
namespace {

// An H100 without its arch-specific features (sm_90): the mma family is the model's choice there.
// k_h100a (sm_90a) adds the wgmma family, the model's choice where it serves.
const Target k_h100 = parse_target("sm_90");
const Target k_h100a = parse_target("sm_90a");

TileConfig mma_tile() { return choose_tile(Spec{}, k_h100); }

TEST(ChooseTile, PortableBalancesRowsOverCtas) {
  const auto portable = [&](const Spec& s) { return choose_tile(s, k_h100, KernelFamily::portable); };
  Spec s;
  s.heads = 16;
  EXPECT_EQ(portable(s).heads_per_cta, 16);
  s.heads = 20;  // 2 CTAs of 10 rows rather than 16 + 4
  EXPECT_EQ(portable(s).heads_per_cta, 10);
  s.heads = 128;
  s.s_q = 2;  // 256 rows -> 16 CTAs of 16
  EXPECT_EQ(portable(s).heads_per_cta, 16);
  s.heads = 1;
  s.s_q = 1;
  EXPECT_EQ(portable(s).heads_per_cta, 1);
}

TEST(ChooseTile, PicksTheMatrixCoreFamilyWhereItServes) {
  Spec s;
  const TileConfig nv = choose_tile(s, k_h100);
  EXPECT_EQ(nv.family, KernelFamily::mma);
  EXPECT_EQ(decode_ctas_per_sm(s, nv, k_h100), 2);  // two CTAs share an SM
  EXPECT_EQ(choose_tile(Spec{}, parse_target("gfx942")).family, KernelFamily::portable);
  EXPECT_THROW(choose_tile(Spec{}, parse_target("gfx942"), KernelFamily::mma), Error);
}

// mma rows per CTA: the smallest of 16 / 32 / 64 covering heads * s_q, capped at 64; 32 / 64
// rows run one CTA per SM with 4 / 3 stages on sm_90 (fewer where shared memory is smaller).
TEST(ChooseTile, MmaRowsPerCtaCoverTheRequestsRows) {
  struct Want {
    int heads, s_q, rows, stages, per_sm;
  };
  for (const Want& w : {Want{16, 1, 16, 2, 2}, Want{1, 1, 16, 2, 2}, Want{8, 2, 16, 2, 2}, Want{16, 2, 32, 4, 1},
                        Want{20, 1, 32, 4, 1}, Want{32, 1, 32, 4, 1}, Want{20, 3, 64, 3, 1}, Want{64, 1, 64, 3, 1},
                        Want{16, 4, 64, 3, 1}, Want{100, 1, 64, 3, 1}, Want{128, 1, 64, 3, 1},
                        Want{128, 8, 64, 3, 1}}) {
    Spec s;
    s.heads = w.heads;
    s.s_q = w.s_q;
    const TileConfig t = choose_tile(s, k_h100);
    SCOPED_TRACE(tile_summary(t) + " for heads " + std::to_string(w.heads) + " s_q " + std::to_string(w.s_q));
    EXPECT_EQ(t.family, KernelFamily::mma);
    EXPECT_EQ(t.heads_per_cta, w.rows);
    EXPECT_EQ(t.tokens_per_tile, 32);
    EXPECT_EQ(t.stages, w.stages);
    EXPECT_EQ(decode_ctas_per_sm(s, t, k_h100), w.per_sm);
    EXPECT_LE(decode_shared_bytes(s, t), k_h100.max_shared_bytes());
  }
  // sm_80 (163 KiB): the same rows with fewer stages.
  Spec s;
  s.heads = 128;
  const TileConfig a100 = choose_tile(s, parse_target("sm_80"));
  EXPECT_EQ(a100.heads_per_cta, 64);
  EXPECT_EQ(a100.stages, 2);
  s.heads = 32;
  EXPECT_EQ(choose_tile(s, parse_target("sm_80")).stages, 3);
  // sm_86 (99 KiB) fits no mma tile: the portable family serves it instead of an error.
  EXPECT_EQ(choose_tile(Spec{}, parse_target("sm_86")).family, KernelFamily::portable);
}

// An fp8 cache runs on the mma family (raw fp8 ring, widened per tile) with q in bf16, fp16 or
// fp8 and the same rows / stages as a 16-bit cache; fused RoPE with an fp8 cache stays portable.
TEST(ChooseTile, Fp8CachePicksTheMatrixCoreFamily) {
  for (DType q : {DType::bf16, DType::fp16, DType::fp8_e4m3}) {
    Spec s;  // S7: 16 heads, page 64
    s.page_size = 64;
    s.q_dtype = q;
    s.kv_dtype = DType::fp8_e4m3;
    SCOPED_TRACE(std::string(dtype_name(q)));
    ASSERT_TRUE(mma_family_supports(s, k_h100));
    EXPECT_EQ(mma_dtype(s, KernelFamily::mma), q == DType::fp16 ? DType::fp16 : DType::bf16);
    EXPECT_EQ(mma_dtype(s, KernelFamily::wgmma), DType::fp16);  // e4m3 -> fp16 is the cheap widening
    TileConfig t = choose_tile(s, k_h100);
    EXPECT_EQ(t.family, KernelFamily::mma);
    EXPECT_EQ(t.heads_per_cta, 16);
    EXPECT_EQ(t.stages, 2);
    EXPECT_EQ(decode_ctas_per_sm(s, t, k_h100), 2);  // 102 KiB: two CTAs share an SM, as with bf16
    s.heads = 128;
    t = choose_tile(s, k_h100);
    EXPECT_EQ(t.heads_per_cta, 64);
    EXPECT_EQ(t.stages, 3);
    s.heads = 20;
    t = choose_tile(s, k_h100);
    EXPECT_EQ(t.heads_per_cta, 32);
    EXPECT_EQ(t.stages, 4);
    // sm_80 (163 KiB, no hardware e4m3 conversion: the kernel decodes in software) still fits mma.
    EXPECT_EQ(choose_tile(s, parse_target("sm_80")).family, KernelFamily::mma);
    s.rope = RopeStyle::neox;
    EXPECT_FALSE(mma_family_supports(s, k_h100));
    EXPECT_EQ(choose_tile(s, k_h100).family, KernelFamily::portable);
    EXPECT_THROW(choose_tile(s, k_h100, KernelFamily::mma), Error);
  }
  // A 16-bit cache still needs q of its own dtype.
  Spec mixed;
  mixed.q_dtype = DType::fp8_e4m3;
  EXPECT_FALSE(mma_family_supports(mixed, k_h100));
  mixed.q_dtype = DType::fp16;
  EXPECT_FALSE(mma_family_supports(mixed, k_h100));
  EXPECT_EQ(mma_dtype(Spec{}, KernelFamily::mma), DType::bf16);
  EXPECT_EQ(mma_dtype(Spec{}, KernelFamily::wgmma), DType::bf16);
}

TEST(ChooseTile, MmaValidationRejectsBadRowsAndOversizedTiles) {
  Spec s;
  TileConfig t = choose_tile(s, k_h100);
  for (int rows : {1, 8, 24, 48, 128}) {
    t.heads_per_cta = rows;
    try {
      validate(t, s, k_h100);
      ADD_FAILURE() << "heads_per_cta " << rows << " accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("heads_per_cta"), std::string::npos) << e.what();
    }
  }
  t.heads_per_cta = 64;
  t.tokens_per_tile = 64;
  t.stages = 2;  // 146 KiB ring + 73 KiB Q + partials and P: over 227 KiB
  try {
    validate(t, s, k_h100);
    ADD_FAILURE() << "64 rows x 64 tokens accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("shared memory"), std::string::npos) << e.what();
  }
  t.tokens_per_tile = 32;
  t.stages = 4;  // 4 stages of 64 rows: over too
  EXPECT_THROW(validate(t, s, k_h100), Error);
  t.stages = 3;
  EXPECT_NO_THROW(validate(t, s, k_h100));
  t.heads_per_cta = 32;
  t.tokens_per_tile = 64;
  t.stages = 2;
  EXPECT_NO_THROW(validate(t, s, k_h100));
  // Hand-checked sizes (templates/decode/mma.cuh, MmaDecodeLayout::kTotalBytes).
  EXPECT_EQ(decode_shared_bytes(s, t), 2 * 64 * 1168 + 32 * 1168 + 2 * 32 * 72 * 4 + 32 * 72 * 2 + 3 * 32 * 4);
  t.heads_per_cta = 16;
  t.tokens_per_tile = 32;
  EXPECT_EQ(decode_shared_bytes(s, t), 2 * 32 * 1168 + 16 * 1168 + 4 * 16 * 40 * 4 + 16 * 40 * 2 + 3 * 16 * 4);
  // fp8 cache: unpadded 576 B ring rows plus one widened 16-bit tile (padded 1168 B rows).
  Spec fp8 = s;
  fp8.kv_dtype = DType::fp8_e4m3;
  EXPECT_EQ(decode_shared_bytes(fp8, t),
            2 * 32 * 576 + 32 * 1168 + 16 * 1168 + 4 * 16 * 40 * 4 + 16 * 40 * 2 + 3 * 16 * 4);
  t.heads_per_cta = 64;
  t.stages = 4;  // too much shared memory with a 16-bit cache (above), fits with fp8: 197 KiB
  EXPECT_EQ(decode_shared_bytes(fp8, t),
            4 * 32 * 576 + 32 * 1168 + 64 * 1168 + 1 * 64 * 40 * 4 + 64 * 40 * 2 + 3 * 64 * 4);
  EXPECT_NO_THROW(validate(t, fp8, k_h100));
  t.tokens_per_tile = 64;
  t.stages = 2;  // 72 KiB ring + 73 KiB widened tile + 73 KiB Q + ...: over 227 KiB
  EXPECT_THROW(validate(t, fp8, k_h100), Error);
  // The per-SM fit follows the fp8 layout: 16 rows, 3 stages (120 KiB) no longer pair up.
  t.heads_per_cta = 16;
  t.tokens_per_tile = 32;
  t.stages = 3;
  EXPECT_EQ(decode_ctas_per_sm(fp8, t, k_h100), 1);
  t.stages = 2;
  EXPECT_EQ(decode_ctas_per_sm(fp8, t, k_h100), 2);
}

TEST(ChooseTile, WgmmaServesSixteenBitSpecsOnSm90aOnly) {
  Spec s;
  EXPECT_TRUE(wgmma_family_supports(s, k_h100a));
  EXPECT_FALSE(wgmma_family_supports(s, k_h100));  // wgmma needs the arch-specific target
  EXPECT_FALSE(wgmma_family_supports(s, parse_target("sm_80")));
  EXPECT_FALSE(wgmma_family_supports(s, parse_target("gfx90a")));
  // An fp8 cache is widened per tile, with a bf16, fp16 or fp8 q; fused RoPE stays off wgmma.
  Spec fp8 = s;
  fp8.kv_dtype = DType::fp8_e4m3;
  EXPECT_TRUE(wgmma_family_supports(fp8, k_h100a));
  fp8.q_dtype = DType::fp8_e4m3;
  EXPECT_TRUE(wgmma_family_supports(fp8, k_h100a));
  Spec rope = s;
  rope.rope = RopeStyle::neox;
  EXPECT_FALSE(wgmma_family_supports(rope, k_h100a));
  rope.kv_dtype = DType::fp8_e4m3;
  EXPECT_FALSE(wgmma_family_supports(rope, k_h100a));
  EXPECT_THROW(choose_tile(rope, k_h100a, KernelFamily::wgmma), Error);
  Spec mixed = s;
  mixed.q_dtype = DType::fp16;  // a 16-bit cache needs q of its dtype
  EXPECT_FALSE(wgmma_family_supports(mixed, k_h100a));
  // fp8 stops at 24 rows per CTA (registers): 128 rows are 6 CTAs of 24 (22 or 21 rows each).
  fp8.heads = 128;
  EXPECT_EQ(choose_tile(fp8, k_h100a).heads_per_cta, 24);
  // Two 64-token tiles of a 1088-wide cache (kv_lora_rank 1024) are 272 KiB: no wgmma tile fits.
  Spec wide = s;
  wide.kv_lora_rank = 1024;
  EXPECT_FALSE(wgmma_family_supports(wide, k_h100a));
  EXPECT_EQ(choose_tile(wide, k_h100a).family, KernelFamily::mma);
  // A 704-wide cache fits with 24 rows per CTA, not 32.
  Spec mid = s;
  mid.kv_lora_rank = 640;
  mid.heads = 32;
  ASSERT_TRUE(wgmma_family_supports(mid, k_h100a));
  EXPECT_EQ(choose_tile(mid, k_h100a).heads_per_cta, 24);
  const std::vector<KernelFamily> families = families_serving(s, k_h100a);
  EXPECT_EQ(families, (std::vector<KernelFamily>{KernelFamily::portable, KernelFamily::mma, KernelFamily::wgmma}));
  EXPECT_EQ(choose_tile(s, k_h100a).family, KernelFamily::wgmma);
  EXPECT_EQ(choose_tile(s, k_h100).family, KernelFamily::mma);
}

TEST(ChooseTile, WgmmaRowsAreMultiplesOfEightBalancedUpToThirtyTwoOrTheWideTile) {
  struct Want { int heads, s_q, rows_per_cta; DType kv = DType::bf16; };
  // 64 rows and more: the wide tile with a 16-bit cache; an fp8 cache stays on balanced narrow
  // tiles of at most 24 rows.
  for (const Want w : {Want{16, 1, 16}, Want{20, 1, 24}, Want{1, 1, 8}, Want{1, 3, 8}, Want{16, 2, 32},
                       Want{128, 1, 64}, Want{100, 1, 64}, Want{40, 1, 24}, Want{20, 3, 32}, Want{64, 1, 64},
                       Want{16, 4, 64}, Want{56, 1, 32}, Want{128, 1, 24, DType::fp8_e4m3},
                       Want{64, 1, 24, DType::fp8_e4m3}}) {
    Spec s;
    s.heads = w.heads;
    s.s_q = w.s_q;
    s.kv_dtype = w.kv;
    const TileConfig t = choose_tile(s, k_h100a, KernelFamily::wgmma);
    SCOPED_TRACE(testing::Message() << "heads " << w.heads << " s_q " << w.s_q);
    EXPECT_EQ(t.family, KernelFamily::wgmma);
    EXPECT_EQ(t.heads_per_cta, w.rows_per_cta);
    EXPECT_EQ(t.warps, 12);
    EXPECT_EQ(t.tokens_per_tile, 64);
    EXPECT_EQ(t.stages, 2);
    EXPECT_EQ(decode_ctas_per_sm(s, t, k_h100a), 1);
  }
}

TEST(ChooseTile, WgmmaValidationNamesTheField) {
  Spec s;
  TileConfig t = choose_tile(s, k_h100a, KernelFamily::wgmma);
  // Hand-checked (templates/decode/wgmma.cuh, WgmmaDecodeLayout::kTotalBytes): 2 x 64-token
  // tiles, Q, P of two consumers, 2 x (4 + 2) fp32 per row, 4 mbarriers, 1 KiB alignment slack.
  EXPECT_EQ(decode_shared_bytes(s, t), 2 * 64 * 1152 + 16 * 1152 + 2 * 16 * 128 + 2 * 6 * 16 * 4 + 4 * 8 + 1024);
  const auto field_of = [&](TileConfig bad) -> std::string {
    try {
      validate(bad, s, k_h100a);
    } catch (const Error& e) {
      const std::string message = e.what();  // "invalid argument 'name': constraint (got value)"
      const std::size_t open = message.find('\'') + 1;
      return message.substr(open, message.find('\'', open) - open);
    }
    return "";
  };
  struct Bad {
    int TileConfig::* field;
    int value;
    const char* name;
  };
  for (const Bad b : {Bad{&TileConfig::heads_per_cta, 20, "heads_per_cta"}, Bad{&TileConfig::heads_per_cta, 40, "heads_per_cta"},
                      Bad{&TileConfig::warps, 8, "warps"}, Bad{&TileConfig::tokens_per_tile, 32, "tokens_per_tile"},
                      Bad{&TileConfig::stages, 3, "stages"}}) {
    TileConfig bad = t;
    bad.*b.field = b.value;
    EXPECT_EQ(field_of(bad), b.name) << b.name << " = " << b.value;
  }
  // The wide tile (64 rows): a 16-bit cache, kv_lora_rank 512 and a rope block to hold P.
  TileConfig wide = t;
  wide.heads_per_cta = 64;
  EXPECT_EQ(field_of(wide), "");
  TileConfig wide32 = wide;
  wide32.tokens_per_tile = 32;
  EXPECT_EQ(field_of(wide32), "stages");  // 32-token tiles run a 4-slot ring
  wide32.stages = wgmma_stages(wide32);
  EXPECT_EQ(wide32.stages, 4);
  EXPECT_EQ(field_of(wide32), "");
  EXPECT_EQ(decode_shared_bytes(s, wide32), decode_shared_bytes(s, wide) + 2 * 2 * 8);  // 4 more mbarriers
  TileConfig narrow32 = t;
  narrow32.tokens_per_tile = 32;
  narrow32.stages = 4;
  EXPECT_EQ(field_of(narrow32), "tokens_per_tile");
  const Spec plain = s;
  s.kv_dtype = DType::fp8_e4m3;
  EXPECT_EQ(field_of(wide), "heads_per_cta");
  s = plain;
  s.rope_dim = 0;
  s.kv_lora_rank = 576;
  EXPECT_EQ(field_of(wide), "heads_per_cta");
  s = plain;
  EXPECT_EQ(parse_family("wgmma"), KernelFamily::wgmma);
  EXPECT_EQ(family_name(KernelFamily::wgmma), "wgmma");
  EXPECT_THROW(parse_family("wgmm"), Error);
  EXPECT_EQ(tile_from_json(to_json(t)), t);
}

TEST(ChooseTile, FitsAmdLds) {
  Spec s;
  const TileConfig t = choose_tile(s, parse_target("gfx90a"));
  EXPECT_LE(decode_shared_bytes(s, t), 64 * 1024);
  EXPECT_EQ(t.warps, 4);
  EXPECT_NO_THROW(validate(t, s, parse_target("gfx90a")));
}

TEST(SplitScore, AiterParametersGiveAitersScore) {
  // 4 requests x 32768 tokens, one CTA per SM, 32 splits: 128 CTAs = one wave of 132.
  // AITER: 128/132 * 32768 / (32768 + 84.1 * 32) = 0.96970 * 0.92410 = 0.89610.
  // Here: ideal 4 * 32768 / 132 = 992.97 slot tokens; cost 1 wave * (1024 + 84.1) = 1108.1.
  const SplitScore s = split_score(Spec{}, mma_tile(), DecodeShape{4, 32768, 132, 1}, aiter_params(), 32);
  EXPECT_EQ(s.ctas, 128);
  EXPECT_DOUBLE_EQ(s.tokens_per_cta, 1024);
  EXPECT_DOUBLE_EQ(s.combine_cost, 0);
  EXPECT_NEAR(s.cost, 1108.1, 1e-9);
  EXPECT_NEAR(s.score, 128.0 / 132 * 32768 / (32768 + 84.1 * 32), 1e-12);
}

TEST(SplitScore, SplitsCoverWholeTilesAsTheKernelDoes) {
  // 4096 tokens in 3 splits: ceil(ceil(4096 / 3) / 32) * 32 = ceil(1366 / 32) * 32 = 1376 tokens.
  EXPECT_DOUBLE_EQ(split_score(Spec{}, mma_tile(), DecodeShape{1, 4096, 132, 2}, ModelParams{}, 3).tokens_per_cta, 1376);
}

TEST(SplitScore, CombineCostPerSplit) {
  // 16 requests x 4096 tokens, two CTAs per SM (264 slots), 8 splits: 128 CTAs, one per SM.
  //   W = 512 + 84.1 + 14.278 = 610.378; a partial wave whose SMs hold 1 of 2 CTAs costs
  //   0.5 + 0.5 * 1/2 = 0.75 wave -> stage 1 = 457.783.
  //   Stage 2 reads 16 * 16 rows * 8 splits * 2052 B and writes 256 rows * 1024 B:
  //   256 * (8 * 2052 + 1024) / (264 slots * 1152 B) = 14.680, + 32 launch = 46.680.
  const SplitScore s = split_score(Spec{}, mma_tile(), DecodeShape{16, 4096, 132, 2}, ModelParams{}, 8);
  EXPECT_NEAR(s.waves, 0.75, 1e-12);
  EXPECT_NEAR(s.stage1_cost, 0.75 * (512 + 84.1 + 16.0 * 1028 / 1152), 1e-9);
  EXPECT_NEAR(s.combine_cost, 32 + 256.0 * (8 * 2052 + 1024) / (264 * 1152), 1e-9);
  // One split: no combine at all.
  EXPECT_EQ(split_score(Spec{}, mma_tile(), DecodeShape{16, 4096, 132, 2}, ModelParams{}, 1).combine_cost, 0);
}

TEST(SplitScore, TailWaveCostsByItsBusiestSm) {
  // 100 requests, 1 split: 100 CTAs on 132 SMs of 2 slots, so each busy SM runs one CTA.
  // W = 4096 + 84.1 = 4180.1; the wave costs floor + (1 - floor) / 2 of a full one.
  const DecodeShape shape{100, 4096, 132, 2};
  for (const auto& [floor, waves] : {std::pair{1.0, 1.0}, {0.5, 0.75}, {0.0, 0.5}}) {
    ModelParams p;
    p.tail_wave_floor = floor;
    EXPECT_NEAR(split_score(Spec{}, mma_tile(), shape, p, 1).cost, waves * 4180.1, 1e-9) << "floor " << floor;
  }
}

TEST(ChooseSplits, TailFloorDecidesBetweenHalfAndFullOccupancy) {
  // 16 requests x 4096 tokens, two CTAs per SM:
  //  8 splits = 128 CTAs, one per SM: W = 610.378, combine 46.680 (see CombineCostPerSplit).
  //  16 splits = 256 CTAs, both slots: W = 256 + 84.1 + 14.278 = 354.378, one full wave;
  //     combine 32 + 256 * (16 * 2052 + 1024) / 304128 = 60.498 -> cost 414.876.
  // floor 0 (a lone CTA gets the whole SM): 8 costs 0.5 * 610.378 + 46.680 = 351.869 < 414.876.
  // floor 0.5: 8 costs 0.75 * 610.378 + 46.680 = 504.463 > 414.876, so 16.
  ModelParams p;
  p.tail_wave_floor = 0.0;
  EXPECT_EQ(choose_splits(Spec{}, mma_tile(), DecodeShape{16, 4096, 132, 2}, p), 8);
  p.tail_wave_floor = 0.5;
  EXPECT_EQ(choose_splits(Spec{}, mma_tile(), DecodeShape{16, 4096, 132, 2}, p), 16);
}

TEST(ChooseSplits, CountsResidentCtasPerSm) {
  // S1: 128 requests, two CTAs per SM (264 slots); ideal = 128 * 4096 / 264 = 1985.94.
  //  1 split: 128 CTAs, one per SM: 0.75 * 4180.1 = 3135.08 -> score 0.6335.
  //  2 splits: 256 CTAs: W = 2048 + 84.1 + 14.278 = 2146.378, combine
  //     32 + 2048 * (2 * 2052 + 1024) / 304128 = 66.532 -> cost 2212.91, score 0.8974.
  std::vector<SplitScore> scores;
  EXPECT_EQ(choose_splits(Spec{}, mma_tile(), DecodeShape{128, 4096, 132, 2}, ModelParams{}, &scores), 2);
  EXPECT_NEAR(scores[0].score, 1985.9393939 / 3135.075, 1e-6);
  EXPECT_NEAR(scores[1].score, 1985.9393939 / (2146.3777778 + 66.5319865), 1e-6);
}

TEST(ChooseSplits, LargeBatchNeedsNoSplit) {
  // 128 requests x 1 CTA on 132 SMs of one slot: ideal 3971.88.
  //  1 split: one wave, 4180.1 -> 0.9502.
  //  2 splits: 256 CTAs = 2 waves of W = 2146.378, + combine 32 + 2048 * 5128 / 152064 = 101.06
  //     -> 4393.82, 0.9040. More splits only add overhead.
  EXPECT_EQ(choose_splits(Spec{}, mma_tile(), DecodeShape{128, 4096, 132, 1}), 1);
}

TEST(ChooseSplits, SmallBatchLongContextSplitsToFillTheMachine) {
  // S5: 4 requests x 32768 tokens, 264 slots.
  //  64 splits = 256 CTAs, one wave: W = 512 + 84.1 + 14.278 = 610.378, combine
  //     32 + 64 * (64 * 2052 + 1024) / 304128 = 59.852 -> cost 670.230, score 496.48 / 670.23 = 0.7408.
  //  33 splits = 132 CTAs, one per SM: 0.75 * (1024 + 98.378) + 46.465 = 888.25 -> 0.5589.
  // 64 is the cap (66 would fill all 264 slots but is not considered).
  std::vector<SplitScore> scores;
  EXPECT_EQ(choose_splits(Spec{}, mma_tile(), DecodeShape{4, 32768, 132, 2}, ModelParams{}, &scores), 64);
  ASSERT_EQ(scores.size(), 64u);
  EXPECT_NEAR(scores[63].cost, 610.3777778 + 59.8518519, 1e-6);
  EXPECT_NEAR(scores[32].cost, 0.75 * 1122.3777778 + 46.4654882, 1e-6);
}

TEST(ChooseSplits, RaggedBatchIsBoundByItsLongestRequest) {
  // S3-like: 64 requests, mean 8320 tokens, longest 16384; 264 slots.
  //  4 splits = 256 CTAs, one wave of W = 2080 + 98.378 = 2178.378, but the longest request's
  //     splits hold 4096 tokens: 0.75 * (4096 + 98.378) = 3145.78 bounds stage 1.
  //  8 splits: 2 waves of 1056 + 98.378 -> 2308.76; longest 0.75 * (2048 + 98.378) = 1609.8.
  // With the longest known the model splits twice as much as it would for uniform lengths.
  const SplitScore four = split_score(Spec{}, mma_tile(), DecodeShape{64, 8320, 132, 2, 16384}, ModelParams{}, 4);
  EXPECT_NEAR(four.stage1_cost, 0.75 * (4096 + 84.1 + 16.0 * 1028 / 1152), 1e-9);
  EXPECT_EQ(choose_splits(Spec{}, mma_tile(), DecodeShape{64, 8320, 132, 2, 16384}), 8);
  EXPECT_EQ(choose_splits(Spec{}, mma_tile(), DecodeShape{64, 8320, 132, 2}), 4);
}

TEST(ChooseSplits, NeverMoreSplitsThanTiles) {
  const TileConfig t = mma_tile();  // 32-token tiles
  ASSERT_EQ(t.tokens_per_tile, 32);
  EXPECT_LE(choose_splits(Spec{}, t, DecodeShape{1, 40, 132}), 2);
  EXPECT_EQ(choose_splits(Spec{}, t, DecodeShape{1, 0, 132}), 1);
  ModelParams p;
  p.max_splits = 4;
  EXPECT_LE(choose_splits(Spec{}, t, DecodeShape{1, 32768, 132, 2}, p), 4);
}

}  // namespace
}  // namespace mlajit::tuning
