// Selection (database, else model), --explain, and the cost of selection on the decode path.
#include <chrono>
#include <cstdio>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tests/tuning/tuning_test_support.hpp"
#include "tuning/select.hpp"

namespace mlajit::tuning {
namespace {

using test_support::allocations;
using test_support::entry;
using test_support::measured_database;
using test_support::mma;

// sm_90 (an H100 without its arch-specific features): the mma family is the model's choice there
// (sm_90a adds wgmma, choose_test.cpp).
const Target k_h100 = parse_target("sm_90");

Spec spec(int heads, int s_q = 1) {
  Spec s;
  s.heads = heads;
  s.s_q = s_q;
  s.page_size = 64;
  return s;
}

DecodeShape shape(int batch, double context) { return DecodeShape{batch, context, 132}; }

Database suite_database() {
  return measured_database({entry(16, 1, 128, 4096, mma(32, 3, 3), 240, 250),     // S1 bucket, 3 splits measured
                            entry(16, 1, 4, 32768, mma(64, 2, 40), 95, 101),       // S5 bucket
                            entry(128, 1, 64, 4096, mma(64, 2, 1), 700, 730)});    // S2 bucket
}

TEST(Select, WithoutADatabaseTheModelDecides) {
  const Selection s = select(spec(16), k_h100, shape(128, 4096), nullptr);
  EXPECT_EQ(s.origin, Origin::model);
  EXPECT_EQ(s.entry, nullptr);
  TileConfig expected = choose_tile(spec(16), k_h100);
  DecodeShape resident = shape(128, 4096);
  resident.ctas_per_sm = decode_ctas_per_sm(spec(16), expected, k_h100);
  expected.num_splits = choose_splits(spec(16), expected, resident, default_params(k_h100));
  EXPECT_EQ(s.tile, expected);
  EXPECT_EQ(s.tile.num_splits, 2);  // see ChooseSplits.CountsResidentCtasPerSm
}

TEST(Select, AnUnmeasuredDatabaseIsIgnored) {
  Database db = suite_database();
  db.meta.measured = false;
  EXPECT_EQ(select(spec(16), k_h100, shape(128, 4096), &db).origin, Origin::model);
}

TEST(Select, ExactBucketWithTheSweptBatchTakesTheMeasuredSplits) {
  const Database db = suite_database();
  const Selection s = select(spec(16), k_h100, shape(128, 5000), &db);  // context 5000: same bin as 4096
  EXPECT_EQ(s.origin, Origin::exact_bucket);
  EXPECT_TRUE(s.measured_splits);
  EXPECT_EQ(s.tile, mma(32, 3, 3));
}

TEST(Select, ExactBucketWithAnotherBatchKeepsTheKernelShapeAndAsksTheModelForSplits) {
  Database db = suite_database();
  db.meta.model.max_splits = 1;  // the database's parameters are the ones used
  const Selection s = select(spec(16), k_h100, shape(200, 4096), &db);  // bin 7 like 128
  EXPECT_EQ(s.origin, Origin::exact_bucket);
  EXPECT_FALSE(s.measured_splits);
  EXPECT_EQ(s.tile, mma(32, 3, 1));
}

TEST(Select, NearestBucketBorrowsTheKernelShape) {
  const Database db = suite_database();
  const Selection s = select(spec(16), k_h100, shape(8, 32768), &db);  // b3 c15, 0.5 from S5's b2
  EXPECT_EQ(s.origin, Origin::nearest_bucket);
  EXPECT_DOUBLE_EQ(s.distance, 0.5);
  EXPECT_EQ(s.tile.tokens_per_tile, 64);
  DecodeShape resident = shape(8, 32768);
  resident.ctas_per_sm = decode_ctas_per_sm(spec(16), s.tile, k_h100);
  EXPECT_EQ(s.tile.num_splits, choose_splits(spec(16), mma(64, 2, 0), resident, db.meta.model));
}

TEST(Select, FarFromEveryEntryTheModelDecides) {
  const Database db = suite_database();
  const Selection s = select(spec(16), k_h100, shape(1, 300), &db);
  EXPECT_EQ(s.origin, Origin::model);
  EXPECT_EQ(s.tile, select(spec(16), k_h100, shape(1, 300), nullptr).tile);
}

TEST(Select, ForcedTileGetsSplitsUnderTheDatabaseParameters) {
  Database db = suite_database();
  db.meta.model.max_splits = 3;
  EXPECT_LE(select_splits(spec(16), k_h100, mma(32, 2, 0), shape(4, 32768), &db), 3);
  EXPECT_EQ(select_splits(spec(16), k_h100, mma(32, 2, 0), shape(4, 32768), nullptr), 64);
}

TEST(Explain, SaysWhereTheChoiceCameFrom) {
  const Database db = suite_database();
  Explanation e = explain(spec(16), k_h100, shape(128, 4096), &db, "test database");
  std::string text = format_explanation(e);
  EXPECT_NE(text.find("bucket:   b7.r16.c12.q-bf16.kv-bf16.ps64.d512-64"), std::string::npos) << text;
  EXPECT_NE(text.find("database: test database"), std::string::npos) << text;
  EXPECT_NE(text.find("exact bucket: the measured best, splits included"), std::string::npos) << text;
  EXPECT_NE(text.find("choice:   mma hc16 bn32 w8 st3 x3"), std::string::npos) << text;
  EXPECT_NE(text.find("model alone: mma hc16 bn32 w8 st2 x2"), std::string::npos) << text;
  EXPECT_NE(text.find("distance 0.00"), std::string::npos) << text;
  EXPECT_EQ(to_json(e)["origin"], "exact_bucket");
  EXPECT_EQ(e.nearest.size(), 3u);  // all three entries share the dtypes, sorted by distance
  EXPECT_EQ(e.nearest[0].first, 0.0);

  e = explain(spec(16), k_h100, shape(8, 32768), &db, "test database");
  text = format_explanation(e);
  EXPECT_NE(text.find("nearest bucket b2.r16.c15.q-bf16.kv-bf16.ps64.d512-64 at distance 0.50"), std::string::npos) << text;
  EXPECT_EQ(to_json(e)["origin"], "nearest_bucket");

  e = explain(spec(16), k_h100, shape(128, 4096), nullptr, "none shipped");
  text = format_explanation(e);
  EXPECT_NE(text.find("the model: no measured database for this arch"), std::string::npos) << text;
  EXPECT_NE(text.find("model parameters (defaults): overhead 84.1"), std::string::npos) << text;
  // The score table: one row per split count considered, the choice marked.
  EXPECT_EQ(e.scores.size(), 64u);
  EXPECT_NE(text.find("       2     256   1.00       2048    2146.4     66.5    2212.9  0.897 <"), std::string::npos) << text;
  const nlohmann::json j = to_json(e);
  EXPECT_EQ(j["origin"], "model");
  EXPECT_EQ(j["scores"].size(), 64u);
  EXPECT_EQ(j["tile"]["num_splits"], 2);
}

// The decode path asks select() on every call: it must allocate nothing and cost little. Prints
// the per-call host time of the old path (choose_tile + choose_splits with AITER's rule, as
// plan_decode did) and of the new one (registry-free: a database of 48 entries).
TEST(SelectHotPath, AllocatesNothingAndStaysCheap) {
  std::vector<Entry> entries;
  for (int heads : {16, 32, 64, 128}) {
    for (int batch : {1, 4, 16, 64, 128, 512}) {
      for (double context : {1024.0, 32768.0}) entries.push_back(entry(heads, 1, batch, context, mma(32, 2, 2), 100));
    }
  }
  const Database db = measured_database(entries);
  ASSERT_EQ(db.entries.size(), 48u);
  const DecodeShape exact = shape(128, 1024), near = shape(100, 2048), far = shape(16384, 100), s1 = shape(128, 4096);
  volatile int sink = 0;
  const int calls = 20000;
  const auto time_ns = [&](auto&& body) {
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < calls; ++i) body();
    return std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0).count() / calls;
  };
  const long long before = allocations();
  const double old_ns = time_ns([&] {
    TileConfig t = choose_tile(spec(16), k_h100);
    DecodeShape s = s1;
    s.ctas_per_sm = decode_ctas_per_sm(spec(16), t, k_h100);
    sink = sink + choose_splits(spec(16), t, s, aiter_params());
  });
  const double model_ns = time_ns([&] { sink = sink + select(spec(16), k_h100, s1, nullptr).tile.num_splits; });
  const double exact_ns = time_ns([&] { sink = sink + select(spec(16), k_h100, exact, &db).tile.num_splits; });
  const double near_ns = time_ns([&] { sink = sink + select(spec(16), k_h100, near, &db).tile.num_splits; });
  const double far_db_ns = time_ns([&] { sink = sink + select(spec(16), k_h100, far, &db).tile.num_splits; });
  EXPECT_EQ(allocations(), before) << "selection allocated on the decode path";
  std::printf("per call: choose_tile + choose_splits %.0f ns; select: model %.0f ns, exact bucket %.0f ns, nearest %.0f ns, "
              "database but no entry near %.0f ns\n", old_ns, model_ns, exact_ns, near_ns, far_db_ns);
  EXPECT_LT(exact_ns, 20000.0);  // generous: sanitizer / debug builds
}

}  // namespace
}  // namespace mlajit::tuning
