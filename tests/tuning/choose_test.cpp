// The split / tile model against hand-worked cases.
#include <gtest/gtest.h>

#include "codegen/error.hpp"
#include "tuning/choose.hpp"

namespace mlajit::tuning {
namespace {

TEST(ChooseTile, PortableBalancesRowsOverCtas) {
  const Target h100 = parse_target("sm_90a");
  const auto portable = [&](const Spec& s) { return choose_tile(s, h100, KernelFamily::portable); };
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
  const TileConfig nv = choose_tile(s, parse_target("sm_90a"));
  EXPECT_EQ(nv.family, KernelFamily::mma);
  EXPECT_EQ(decode_ctas_per_sm(s, nv, parse_target("sm_90a")), 2);  // two CTAs share an SM
  s.kv_dtype = DType::fp8_e4m3;  // no fp8 path in the mma family yet
  EXPECT_EQ(choose_tile(s, parse_target("sm_90a")).family, KernelFamily::portable);
  EXPECT_EQ(choose_tile(Spec{}, parse_target("gfx942")).family, KernelFamily::portable);
  EXPECT_THROW(choose_tile(Spec{}, parse_target("gfx942"), KernelFamily::mma), Error);
}

TEST(ChooseSplits, CountsResidentCtasPerSm) {
  // S1-like: 128 requests, 16 heads; with two CTAs per SM a wave is 264 CTAs, so 2 splits
  // (256 CTAs) fill it: score(2) = 256/264 * 4096/(4096 + 168.2) = 0.931 > score(1) = 0.485 * 0.98.
  Spec s;
  TileConfig t = choose_tile(s, parse_target("sm_90a"));
  DecodeShape shape{128, 4096, 132, 2};
  EXPECT_EQ(choose_splits(s, t, shape), 2);
}

TEST(ChooseTile, FitsAmdLds) {
  Spec s;
  const TileConfig t = choose_tile(s, parse_target("gfx90a"));
  EXPECT_LE(decode_shared_bytes(s, t), 64 * 1024);
  EXPECT_EQ(t.warps, 4);
  EXPECT_NO_THROW(validate(t, s, parse_target("gfx90a")));
}

TEST(ChooseSplits, LargeBatchNeedsNoSplit) {
  // 128 requests x 1 CTA each on 132 SMs: one wave already; more splits only add overhead.
  Spec s;
  TileConfig t = choose_tile(s, parse_target("sm_90a"));
  DecodeShape shape{128, 4096, 132};
  EXPECT_EQ(choose_splits(s, t, shape), 1);
}

TEST(ChooseSplits, SmallBatchLongContextSplitsToFillTheMachine) {
  // 4 requests x 32768 tokens on 132 SMs: i = 33 gives 132 CTAs = exactly one full wave;
  // score(33) = 1.0 * 32768 / (32768 + 84.1 * 33) = 0.922, the best of 1..64.
  Spec s;
  TileConfig t = choose_tile(s, parse_target("sm_90a"));
  std::vector<SplitScore> scores;
  const int splits = choose_splits(s, t, DecodeShape{4, 32768, 132}, &scores);
  EXPECT_EQ(splits, 33);
  EXPECT_EQ(scores.size(), 64u);
  EXPECT_NEAR(scores[32].score, 32768.0 / (32768.0 + 84.1 * 33), 1e-9);
}

TEST(ChooseSplits, NeverMoreSplitsThanTiles) {
  Spec s;
  TileConfig t = choose_tile(s, parse_target("sm_90a"));  // 32-token tiles
  ASSERT_EQ(t.tokens_per_tile, 32);
  EXPECT_LE(choose_splits(s, t, DecodeShape{1, 40, 132}), 2);
  EXPECT_EQ(choose_splits(s, t, DecodeShape{1, 0, 132}), 1);
}

}  // namespace
}  // namespace mlajit::tuning
