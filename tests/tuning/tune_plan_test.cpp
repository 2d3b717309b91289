// `mlajit tune` without a GPU: the plan (shapes, candidates, shards), the entry a shape's results
// give, and the sweep loop on the simulated device.
#include <algorithm>
#include <set>
#include <tuple>

#include <gtest/gtest.h>

#include "codegen/error.hpp"
#include "tools/bench/l2_flush.hpp"
#include "tools/tune/sweep.hpp"
#include "tools/tune/tune.hpp"
#include "tuning/select.hpp"

namespace mlajit::tune {
namespace {

// sm_90 (an H100 without its arch-specific features): the mma family is the model's choice there
// (sm_90a adds wgmma, choose_test.cpp).
const Target k_h100 = parse_target("sm_90");

TuneShape suite_shape(const std::string& id) {
  for (const tools::Shape& s : tools::suite()) {
    if (s.id == id) return make_tune_shape(s, 132);
  }
  throw std::runtime_error("no suite shape " + id);
}

TEST(TunePlan, ShapesAreTheSuiteThenTheCatalogueOnePerBucket) {
  const std::vector<tools::Shape> quick = default_shapes(true);
  ASSERT_EQ(quick.size(), 8u);
  EXPECT_EQ(quick.front().id, "S1");
  const std::vector<tools::Shape> full = default_shapes(false);
  EXPECT_GT(full.size(), quick.size());
  std::vector<TuneShape> shapes;
  for (const tools::Shape& s : full) shapes.push_back(make_tune_shape(s, 132));
  std::vector<std::string> dropped;
  const std::vector<TuneShape> distinct = distinct_buckets(shapes, &dropped);
  EXPECT_EQ(distinct.size() + dropped.size(), full.size());
  // S2 is batch 64 x 4096 tokens with 128 heads: the catalogue's h128 sq1 ps64 entry is its bucket.
  EXPECT_NE(std::find(dropped.begin(), dropped.end(), "C-h128-sq1-ps64"), dropped.end());
  std::set<tuning::Bucket> buckets;
  for (const TuneShape& s : distinct) EXPECT_TRUE(buckets.insert(tuning::bucket_of(s.spec, s.decode)).second);
}

TEST(TunePlan, RaggedShapesKnowTheirLongestRequest) {
  const TuneShape s3 = suite_shape("S3");
  EXPECT_GT(s3.decode.max_kv_tokens, s3.decode.mean_kv_tokens);
  EXPECT_LE(s3.decode.max_kv_tokens, 16384);
  const TuneShape s1 = suite_shape("S1");
  EXPECT_EQ(s1.decode.max_kv_tokens, 4096);
  EXPECT_EQ(s1.decode.mean_kv_tokens, 4096);
}

TEST(TunePlan, TileCandidatesAreValidAndCoverBothFamilies) {
  const Spec s1 = suite_shape("S1").spec;
  const std::vector<TileConfig> full = tile_candidates(s1, k_h100, false);
  const std::vector<TileConfig> quick = tile_candidates(s1, k_h100, true);
  for (const TileConfig& t : full) EXPECT_NO_THROW(validate(t, s1, k_h100)) << tuning::tile_summary(t);
  const auto has = [](const std::vector<TileConfig>& tiles, KernelFamily f) {
    return std::any_of(tiles.begin(), tiles.end(), [&](const TileConfig& t) { return t.family == f; });
  };
  EXPECT_TRUE(has(full, KernelFamily::mma));
  EXPECT_TRUE(has(full, KernelFamily::portable));
  EXPECT_FALSE(has(quick, KernelFamily::portable));  // quick: portable only where mma cannot serve
  EXPECT_NE(std::find(full.begin(), full.end(), tuning::choose_tile(s1, k_h100)), full.end());
  std::set<std::pair<int, int>> mma_shapes;  // (tokens_per_tile, stages)
  for (const TileConfig& t : full) {
    if (t.family == KernelFamily::mma) mma_shapes.insert({t.tokens_per_tile, t.stages});
  }
  EXPECT_TRUE(mma_shapes.count({32, 2}) && mma_shapes.count({32, 3}) && mma_shapes.count({64, 2}));

  const std::vector<TileConfig> amd = tile_candidates(s1, parse_target("gfx942"), true);
  ASSERT_FALSE(amd.empty());
  EXPECT_FALSE(has(amd, KernelFamily::mma));
}

TEST(TunePlan, MmaCandidatesSweepRowsPerCta) {
  const auto rows_of = [](const Spec& spec) {
    std::set<int> rows;
    for (const TileConfig& t : tile_candidates(spec, k_h100, true)) {
      EXPECT_NO_THROW(validate(t, spec, k_h100)) << tuning::tile_summary(t);
      if (t.family == KernelFamily::mma) rows.insert(t.heads_per_cta);
    }
    return rows;
  };
  EXPECT_EQ(rows_of(suite_shape("S2").spec), (std::set<int>{16, 32, 64}));  // 128 heads
  EXPECT_EQ(rows_of(suite_shape("S1").spec), (std::set<int>{16}));         // 16 rows: no padded CTAs
  Spec twenty;
  twenty.heads = 20;  // 20 rows: 16 (two CTAs) or 32; 64 would be padding only
  EXPECT_EQ(rows_of(twenty), (std::set<int>{16, 32}));
  const std::vector<TileConfig> s2 = tile_candidates(suite_shape("S2").spec, k_h100, true);
  EXPECT_EQ(s2.front(), tuning::choose_tile(suite_shape("S2").spec, k_h100));
  EXPECT_EQ(s2.front().heads_per_cta, 64);
}

// sm_90a: the wgmma family sweeps its narrow rows up to the first that covers heads x s_q, and
// from 48 rows the wide tile in both forms (64-token tiles in 2 slots, 32-token tiles in 4).
TEST(TunePlan, WgmmaCandidatesIncludeBothWideTiles) {
  const Target sm90a = parse_target("sm_90a");
  const auto wgmma_tiles = [&](const Spec& spec) {
    std::set<std::tuple<int, int, int>> tiles;  // (rows, tokens, stages)
    for (const TileConfig& t : tile_candidates(spec, sm90a, true)) {
      EXPECT_NO_THROW(validate(t, spec, sm90a)) << tuning::tile_summary(t);
      if (t.family == KernelFamily::wgmma) tiles.insert({t.heads_per_cta, t.tokens_per_tile, t.stages});
    }
    return tiles;
  };
  const auto s2 = wgmma_tiles(suite_shape("S2").spec);  // 128 rows
  EXPECT_TRUE(s2.count({64, 64, 2}) && s2.count({64, 32, 4}) && s2.count({32, 64, 2}));
  const auto s1 = wgmma_tiles(suite_shape("S1").spec);  // 16 rows: no wide tile
  EXPECT_EQ(s1, (std::set<std::tuple<int, int, int>>{{8, 64, 2}, {16, 64, 2}}));
  const auto s7 = wgmma_tiles(suite_shape("S7").spec);  // fp8 cache: narrow tiles only
  for (const auto& t : s7) EXPECT_NE(std::get<0>(t), 64);
}

TEST(TunePlan, SplitCandidatesSurroundTheModelsChoice) {
  const TuneShape s5 = suite_shape("S5");
  const TileConfig tile = tuning::choose_tile(s5.spec, k_h100);
  const std::vector<int> splits = split_candidates(s5.spec, k_h100, tile, s5.decode, false);
  ASSERT_TRUE(std::is_sorted(splits.begin(), splits.end()));
  EXPECT_EQ(std::adjacent_find(splits.begin(), splits.end()), splits.end());
  EXPECT_EQ(splits.front(), 1);
  EXPECT_LE(splits.back(), 64);
  // 64: the model's (264 slots); 63 its neighbour; 32: one CTA per SM, what a tail floor of 0 picks.
  for (int s : {1, 32, 63, 64}) EXPECT_NE(std::find(splits.begin(), splits.end(), s), splits.end()) << s;
}

TEST(TunePlan, TheModelsChoiceIsTimedFirst) {
  const TuneShape s1 = suite_shape("S1");
  const std::vector<Candidate> c = candidates_for(s1, k_h100, true);
  ASSERT_GT(c.size(), 4u);
  EXPECT_TRUE(c[0].model_choice);
  EXPECT_EQ(c[0].tile, tuning::select(s1.spec, k_h100, s1.decode, nullptr).tile);
  for (std::size_t i = 1; i < c.size(); ++i) {
    EXPECT_FALSE(c[i].model_choice);
    for (std::size_t j = 0; j < i; ++j) EXPECT_FALSE(c[i].tile == c[j].tile) << "duplicate candidate";
  }
}

TEST(TunePlan, ShardsCoverEveryShapeOnce) {
  EXPECT_EQ(shard_indices(10, 1, 3), (std::vector<std::size_t>{1, 4, 7}));
  std::vector<int> seen(10, 0);
  for (int k = 0; k < 3; ++k) {
    for (std::size_t i : shard_indices(10, k, 3)) ++seen[i];
  }
  EXPECT_EQ(std::count(seen.begin(), seen.end(), 1), 10);
  EXPECT_EQ(parse_shard("1/2"), std::make_pair(1, 2));
  for (const char* bad : {"2/2", "x", "1/0", "/2", "1/", "-1/2", "1/2x"}) EXPECT_THROW(parse_shard(bad), Error) << bad;
  EXPECT_EQ(parse_devices("0,1"), (std::vector<int>{0, 1}));
  EXPECT_EQ(parse_devices("3"), (std::vector<int>{3}));
  for (const char* bad : {"", "0,0", "a", "0,", "-1"}) EXPECT_THROW(parse_devices(bad), Error) << bad;
}

TEST(TunePlan, ChildrenGetTheirShardAndTheSweepOptions) {
  TuneOptions o;
  o.quick = true;
  o.shape_ids = {"S1", "S5"};
  o.jobs = 16;
  o.simulate = true;
  o.arch = "sm_90a";
  o.flush = tools::L2Flush::write;
  const std::vector<std::string> a = child_arguments(o, 3, 1, 2, "/tmp/r.json", 100.2);
  const auto after = [&](const std::string& flag) {
    auto it = std::find(a.begin(), a.end(), flag);
    return it == a.end() || it + 1 == a.end() ? std::string("(absent)") : *(it + 1);
  };
  EXPECT_EQ(a.front(), "tune");
  EXPECT_EQ(after("--device"), "3");
  EXPECT_EQ(after("--shard"), "1/2");
  EXPECT_EQ(after("--result"), "/tmp/r.json");
  EXPECT_EQ(after("--runs"), "10");  // --quick's default, spelled out
  EXPECT_EQ(after("--jobs"), "8");
  EXPECT_EQ(after("--budget"), "101");
  EXPECT_EQ(after("--arch"), "sm_90a");
  EXPECT_EQ(after("--flush"), "write");
  EXPECT_EQ(std::count(a.begin(), a.end(), "--shape"), 2);
  EXPECT_NE(std::find(a.begin(), a.end(), "--quick"), a.end());
  EXPECT_NE(std::find(a.begin(), a.end(), "--simulate"), a.end());
  EXPECT_EQ(std::find(a.begin(), a.end(), "--devices"), a.end());
}

TEST(TunePlan, FlushOptionParsesItsThreeModesAndNothingElse) {
  const auto parse = [](std::vector<std::string> argv) {
    CLI::App app;
    tools::L2Flush mode = tools::L2Flush::read;
    tools::add_flush_option(app, mode);
    std::reverse(argv.begin(), argv.end());  // CLI11 takes the arguments back to front
    app.parse(argv);
    return mode;
  };
  EXPECT_EQ(parse({}), tools::L2Flush::read);
  EXPECT_EQ(parse({"--flush", "write"}), tools::L2Flush::write);
  EXPECT_EQ(parse({"--flush", "NONE"}), tools::L2Flush::none);
  EXPECT_EQ(parse({"--flush", "read"}), tools::L2Flush::read);
  EXPECT_THROW(parse({"--flush", "memset"}), CLI::ValidationError);
  EXPECT_EQ(tools::flush_name(tools::L2Flush::none), "none");
}

TEST(TunePlan, ProgressLineHasAnEta) {
  EXPECT_EQ(progress_line(5, 20, 10.0, "S1"), "[5/20] 10 s, ETA 30 s  S1");
  EXPECT_EQ(progress_line(0, 20, 0.0, "S1"), "[0/20] 0 s, ETA ?  S1");
}

TEST(TuneEntry, BestIsTheFastestValidAndTheModelsTimeIsKept) {
  ShapeResult r{suite_shape("S1"), {}};
  const auto result = [](int splits, bool model, const char* status, double us) {
    TileConfig t = tuning::choose_tile(Spec{}, parse_target("sm_90a"));
    t.num_splits = splits;
    return CandidateResult{Candidate{t, model}, status, us, 1e-3, ""};
  };
  r.results = {result(2, true, "ok", 120), result(1, false, "ok", 100), result(3, false, "wrong", 50),
               result(4, false, "pruned", 300), result(5, false, "spills", 0)};
  Facts facts;
  facts.card = "H100";
  std::optional<tuning::Entry> e = entry_from(r, facts, "2026-11-29");
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->best.time_us, 100);
  EXPECT_EQ(e->best.tile.num_splits, 1);
  EXPECT_EQ(e->model.time_us, 120);
  EXPECT_EQ(e->model.tile.num_splits, 2);
  EXPECT_EQ(e->measurements.size(), 3u);  // ok and pruned
  EXPECT_EQ(e->best.card, "H100");
  EXPECT_EQ(e->shape_id, "S1");

  r.results[0].status = "wrong";  // the model's choice failed its check: no time for it
  e = entry_from(r, facts, "2026-11-29");
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->model.time_us, 0);

  for (CandidateResult& c : r.results) c.status = "error";
  EXPECT_FALSE(entry_from(r, facts, "2026-11-29").has_value());
}

TEST(TuneSweep, SimulatedSweepSkipsWhatDidNotCompileAndStopsAtTheBudget) {
  std::vector<TuneShape> shapes = {suite_shape("S1"), suite_shape("S5")};
  std::vector<std::vector<Candidate>> candidates;
  for (const TuneShape& s : shapes) candidates.push_back(candidates_for(s, k_h100, true));
  // Pretend the 3-stage kernel of S1 spilled.
  TileConfig spilled = tuning::choose_tile(shapes[0].spec, k_h100);
  spilled.stages = 3;
  const CompileStatuses compiled = {{kernel_base_name(shapes[0].spec, spilled), {"spills", "64 B"}}};
  const std::unique_ptr<Measurer> m = simulated_measurer(k_h100, 132);
  SweepSettings settings;
  std::vector<ShapeResult> results = run_sweep(*m, shapes, candidates, compiled, settings);
  ASSERT_EQ(results.size(), 2u);
  int spills = 0;
  for (const CandidateResult& r : results[0].results) {
    if (r.candidate.tile.stages == 3) {
      EXPECT_EQ(r.status, "spills");
      ++spills;
    } else {
      EXPECT_TRUE(r.status == "ok" || r.status == "pruned") << r.status;
    }
  }
  EXPECT_GT(spills, 0);
  for (const ShapeResult& r : results) {
    const std::optional<tuning::Entry> e = entry_from(r, m->facts(), "2026-11-29");
    ASSERT_TRUE(e.has_value());
    EXPECT_LE(e->best.time_us, e->model.time_us);
  }

  settings.budget_s = 1;
  settings.start = std::chrono::steady_clock::now() - std::chrono::seconds(10);
  results = run_sweep(*m, shapes, candidates, {}, settings);
  for (const ShapeResult& r : results) {
    for (const CandidateResult& c : r.results) EXPECT_EQ(c.status, "skipped (budget)");
  }
}

}  // namespace
}  // namespace mlajit::tune
