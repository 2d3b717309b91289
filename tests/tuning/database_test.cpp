// Tuning database: buckets, distance, nearest lookup, JSON round trip, merge.
#include <cmath>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "codegen/error.hpp"
#include "tests/tuning/tuning_test_support.hpp"

namespace mlajit::tuning {
namespace {

using test_support::entry;
using test_support::measured_database;
using test_support::mma;

Bucket bucket(int batch, int heads, double context, int page_size = 64) {
  Spec s;
  s.heads = heads;
  s.page_size = page_size;
  return bucket_of(s, DecodeShape{batch, context, 132});
}

TEST(Bucket, LogBinsOfBatchAndContext) {
  EXPECT_EQ(bucket_key(bucket(128, 16, 4096)), "b7.r16.c12.q-bf16.kv-bf16.ps64.d512-64");  // S1
  EXPECT_EQ(bucket(255, 16, 8191).batch_bin, 7);
  EXPECT_EQ(bucket(255, 16, 8191).context_bin, 12);
  EXPECT_EQ(bucket(256, 16, 8192).batch_bin, 8);
  EXPECT_EQ(bucket(256, 16, 8192).context_bin, 13);
  EXPECT_EQ(bucket(1, 16, 0).batch_bin, 0);
  EXPECT_EQ(bucket(1, 16, 0).context_bin, 0);
  Spec mtp;
  mtp.heads = 16;
  mtp.s_q = 2;  // rows = heads x s_q
  EXPECT_EQ(bucket_of(mtp, DecodeShape{128, 4096, 132}).rows, 32);
}

TEST(Bucket, Distance) {
  const Bucket s1 = bucket(128, 16, 4096);
  EXPECT_EQ(bucket_distance(s1, s1), 0.0);
  EXPECT_DOUBLE_EQ(bucket_distance(s1, bucket(64, 16, 4096)), 0.5);      // one batch bin
  EXPECT_DOUBLE_EQ(bucket_distance(s1, bucket(128, 16, 16384)), 1.0);    // two context bins
  EXPECT_DOUBLE_EQ(bucket_distance(s1, bucket(128, 32, 4096)), 1.0);     // rows 16 -> 32
  EXPECT_DOUBLE_EQ(bucket_distance(s1, bucket(128, 20, 4096)), std::log2(20.0 / 16));
  EXPECT_DOUBLE_EQ(bucket_distance(s1, bucket(128, 16, 4096, 1)), 1.5);  // page 64 -> 1: 6 * 0.25
  EXPECT_DOUBLE_EQ(bucket_distance(s1, bucket(4, 128, 32768, 1)), 0.5 * 5 + 3 + 0.5 * 3 + 1.5);
  Bucket fp8 = s1;
  fp8.kv_dtype = DType::fp8_e4m3;
  EXPECT_TRUE(std::isinf(bucket_distance(s1, fp8)));
  Bucket dims = s1;
  dims.kv_lora_rank = 256;
  EXPECT_TRUE(std::isinf(bucket_distance(s1, dims)));
}

TEST(FindEntry, ExactThenNearestWithinTheLimit) {
  const Database db = measured_database({entry(16, 1, 128, 4096, mma(32, 2, 2), 250),    // b7 r16 c12
                                         entry(16, 1, 4, 32768, mma(64, 2, 33), 100),    // b2 r16 c15
                                         entry(128, 1, 64, 4096, mma(32, 3, 1), 700)});  // b6 r128 c12
  Match m = find_entry(db, bucket(128, 16, 4096));
  ASSERT_NE(m.entry, nullptr);
  EXPECT_EQ(m.distance, 0.0);
  EXPECT_EQ(m.entry->best.tile.num_splits, 2);

  m = find_entry(db, bucket(64, 16, 6000));  // b6 c12: 0.5 from S1's bucket
  ASSERT_NE(m.entry, nullptr);
  EXPECT_DOUBLE_EQ(m.distance, 0.5);
  EXPECT_EQ(m.entry->shape.batch, 128);

  m = find_entry(db, bucket(8, 16, 32768));  // b3 c15: 0.5 from the small-batch entry
  ASSERT_NE(m.entry, nullptr);
  EXPECT_EQ(m.entry->shape.batch, 4);

  m = find_entry(db, bucket(64, 64, 4096));  // rows 64: 1 from 128 (+0) and 2 from 16 (+0.5)
  ASSERT_NE(m.entry, nullptr);
  EXPECT_EQ(m.entry->spec.heads, 128);
  EXPECT_DOUBLE_EQ(m.distance, 1.0);

  EXPECT_EQ(find_entry(db, bucket(1, 16, 512)).entry, nullptr);  // b0 c9: 3.5 + 1.5 away
  Spec fp8;
  fp8.heads = 16;
  fp8.page_size = 64;
  fp8.kv_dtype = DType::fp8_e4m3;
  EXPECT_EQ(find_entry(db, bucket_of(fp8, DecodeShape{128, 4096, 132})).entry, nullptr);
}

TEST(FindEntry, TiesGoToTheFirstBucketInOrder) {
  // Query b6 c13 sits 0.5 from b5 c13 and 0.5 from b7 c13: the lower bucket wins, whatever the
  // order the entries came in.
  const Database db = measured_database({entry(16, 1, 128, 8192, mma(32, 2, 2), 500),
                                         entry(16, 1, 32, 8192, mma(32, 3, 4), 200)});
  const Match m = find_entry(db, bucket(64, 16, 8192));
  ASSERT_NE(m.entry, nullptr);
  EXPECT_DOUBLE_EQ(m.distance, 0.5);
  EXPECT_EQ(m.entry->shape.batch, 32);
}

TEST(DatabaseJson, RoundTrip) {
  Database db = measured_database({entry(16, 1, 128, 4096, mma(32, 2, 2), 250, 260),
                                   entry(16, 2, 128, 4096, mma(64, 2, 1), 380, 390)});
  db.meta.driver = "580.1";
  db.meta.compiler = "nvrtc 12.8";
  db.meta.mlajit_version = "0.1.0";
  db.meta.generator_version = 3;
  db.meta.note = "test";
  db.meta.model.split_overhead_tokens = 40;
  db.meta.model_fitted = true;
  db.entries[0].measurements.push_back({mma(32, 2, 1), 300});
  db.entries[0].history.push_back({mma(32, 3, 2), 255, "2026-11-01", "H200", 270});
  db.entries[0].max_abs_error = 1e-3;

  const std::string text = dump_database(db);
  EXPECT_NE(text.find("[\"mma\",16,32,8,2,1,300.0]"), std::string::npos) << text;  // rows on one line
  const Database back = database_from_json(nlohmann::json::parse(text), "test");
  EXPECT_EQ(to_json(back), to_json(db));
  EXPECT_EQ(dump_database(back), text);
  EXPECT_EQ(back.meta.model.split_overhead_tokens, 40);
  ASSERT_EQ(back.entries.size(), 2u);
  EXPECT_EQ(back.entries[0].bucket, db.entries[0].bucket);
  EXPECT_EQ(back.entries[0].history[0].card, "H200");
}

TEST(DatabaseJson, RejectsMismatchedKeysAndUnknownFormats) {
  nlohmann::json j = to_json(measured_database({entry(16, 1, 128, 4096, mma(32, 2, 2), 250)}));
  nlohmann::json moved = j;
  moved["entries"]["b6.r16.c12.q-bf16.kv-bf16.ps64.d512-64"] = moved["entries"].begin().value();
  moved["entries"].erase("b7.r16.c12.q-bf16.kv-bf16.ps64.d512-64");
  try {
    database_from_json(moved, "db.json");
    FAIL() << "a key that does not match its entry was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("b6.r16.c12"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("b7.r16.c12"), std::string::npos) << e.what();
  }
  nlohmann::json future = j;
  future["format"] = 2;
  EXPECT_THROW(database_from_json(future, "db.json"), Error);
  nlohmann::json no_meta = j;
  no_meta.erase("metadata");
  EXPECT_THROW(database_from_json(no_meta, "db.json"), Error);
}

TEST(DropInvalidEntries, RemovesTilesTheTargetRejects) {
  Database db = measured_database({entry(16, 1, 128, 4096, mma(32, 2, 2), 250),
                                   entry(16, 1, 4, 32768, mma(64, 4, 33), 100)});  // 64 x 4 stages: too much shared memory
  EXPECT_EQ(drop_invalid_entries(db, parse_target("sm_90")), 1u);
  ASSERT_EQ(db.entries.size(), 1u);
  EXPECT_EQ(db.entries[0].shape.batch, 128);
}

// Entries whose sweep never tried the family the model picks for them on the target are stale:
// dropped, so the model decides until a re-tune. fp8 caches measured before the mma family read
// fp8 and 16-bit caches swept portable-only go; those that tried mma and fused-RoPE fp8 specs
// (still portable-only) stay.
TEST(DropInvalidEntries, RemovesFp8EntriesSweptWithoutTheMmaFamily) {
  const TileConfig portable = test_support::tile(KernelFamily::portable, 64, 1, 1);
  Entry stale = entry(16, 1, 128, 4096, portable, 1000);
  stale.spec.kv_dtype = DType::fp8_e4m3;
  Entry swept = entry(16, 1, 4, 4096, portable, 900);
  swept.spec.kv_dtype = DType::fp8_e4m3;
  swept.measurements.push_back({mma(32, 2, 1), 950});
  Entry roped = entry(16, 1, 16, 4096, portable, 800);
  roped.spec.kv_dtype = DType::fp8_e4m3;
  roped.spec.rope = RopeStyle::neox;
  const Entry bf16 = entry(16, 1, 1024, 4096, portable, 700);
  Database db = measured_database({stale, swept, roped, bf16});
  EXPECT_EQ(drop_invalid_entries(db, parse_target("sm_90")), 2u);
  ASSERT_EQ(db.entries.size(), 2u);
  for (const Entry& e : db.entries) EXPECT_TRUE(e.shape.batch != 128 && e.shape.batch != 1024);
  // On sm_90a the model picks wgmma (16-bit and fp8 caches): an mma-only sweep is stale there,
  // one that tried wgmma is not.
  Entry hopper_swept = entry(16, 1, 32, 4096, mma(32, 2, 1), 500);
  hopper_swept.measurements.push_back({tuning::choose_tile(hopper_swept.spec, parse_target("sm_90a")), 520});
  Database hopper = measured_database({swept, entry(16, 1, 64, 4096, mma(32, 2, 1), 600), hopper_swept});
  EXPECT_EQ(drop_invalid_entries(hopper, parse_target("sm_90a")), 2u);
  ASSERT_EQ(hopper.entries.size(), 1u);
  EXPECT_EQ(hopper.entries[0].shape.batch, 32);
  // On a target where mma does not serve them (sm_86: no mma tile fits) nothing is stale.
  Database small = measured_database({stale});
  small.meta.arch = "sm_86";
  EXPECT_EQ(drop_invalid_entries(small, parse_target("sm_86")), 0u);
}

TEST(Merge, NewBucketsAreAdded) {
  Database db = measured_database({entry(16, 1, 128, 4096, mma(32, 2, 2), 250)});
  merge_into(db, measured_database({entry(16, 1, 4, 32768, mma(64, 2, 33), 100)}));
  EXPECT_EQ(db.entries.size(), 2u);
}

TEST(Merge, SameShapeSameCardKeepsTheFasterAndRecordsBoth) {
  Database db = measured_database({entry(16, 1, 128, 4096, mma(32, 2, 2), 250, 260, "2026-11-01")});
  // Faster re-run: replaces, the old best goes to history with its date and model time.
  merge_into(db, measured_database({entry(16, 1, 128, 4096, mma(32, 3, 2), 240, 262, "2026-11-20")}));
  ASSERT_EQ(db.entries.size(), 1u);
  EXPECT_EQ(db.entries[0].best.time_us, 240);
  EXPECT_EQ(db.entries[0].best.tile.stages, 3);
  ASSERT_EQ(db.entries[0].history.size(), 1u);
  EXPECT_EQ(db.entries[0].history[0].time_us, 250);
  EXPECT_EQ(db.entries[0].history[0].date, "2026-11-01");
  EXPECT_EQ(db.entries[0].history[0].model_time_us, 260);

  // Slower re-run: the 240 us result stays; the new one is recorded, newest first.
  merge_into(db, measured_database({entry(16, 1, 128, 4096, mma(64, 2, 1), 245, 258, "2026-11-25")}));
  EXPECT_EQ(db.entries[0].best.time_us, 240);
  ASSERT_EQ(db.entries[0].history.size(), 2u);
  EXPECT_EQ(db.entries[0].history[0].date, "2026-11-25");
  EXPECT_EQ(db.entries[0].history[0].time_us, 245);
  EXPECT_EQ(db.entries[0].history[1].date, "2026-11-01");
  EXPECT_EQ(db.meta.date, "2026-11-29");  // metadata of the newer run
}

TEST(Merge, ADifferentCardOrShapeIsNotComparedTheNewerRunWins) {
  Database db = measured_database({entry(16, 1, 128, 4096, mma(32, 2, 2), 200, 210, "2026-11-01", "H200")});
  merge_into(db, measured_database({entry(16, 1, 128, 4096, mma(32, 3, 2), 250, 260, "2026-11-20", "H100")}));
  EXPECT_EQ(db.entries[0].best.card, "H100");
  EXPECT_EQ(db.entries[0].best.time_us, 250);
  EXPECT_EQ(db.entries[0].history.at(0).card, "H200");

  // Same bucket (b7 c12), another batch: a different shape, so again the newer run's entry.
  merge_into(db, measured_database({entry(16, 1, 200, 4096, mma(32, 2, 1), 400, 400, "2026-11-21", "H100")}));
  EXPECT_EQ(db.entries[0].shape.batch, 200);
  EXPECT_EQ(db.entries[0].history.size(), 2u);
}

TEST(Merge, HistoryIsBounded) {
  Database db = measured_database({entry(16, 1, 128, 4096, mma(32, 2, 2), 100, 100, "2026-01-01")});
  for (int day = 10; day < 30; ++day) {
    merge_into(db, measured_database({entry(16, 1, 128, 4096, mma(32, 2, 2), 100 + day, 100, "2026-01-" + std::to_string(day))}));
  }
  EXPECT_EQ(db.entries[0].best.time_us, 100);
  EXPECT_EQ(db.entries[0].history.size(), 8u);
  EXPECT_EQ(db.entries[0].history[0].date, "2026-01-29");
}

}  // namespace
}  // namespace mlajit::tuning
