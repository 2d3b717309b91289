// The built `mlajit tune` without a GPU: --explain (text, JSON, the user's database, --db) and a
// whole sweep on the simulated device sharded over two child processes, merged and fitted.
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tests/tuning/tuning_test_support.hpp"

namespace mlajit::tuning {
namespace {

namespace fs = std::filesystem;
using test_support::entry;
using test_support::measured_database;
using test_support::mma;

struct CliRun {
  int status = -1;
  std::string out, err;
};

class TuneCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = test_support::fresh_directory("mlajit-tune-cli");
    fs::create_directories(dir_ / "user");
  }
  void TearDown() override { fs::remove_all(dir_); }

  // `mlajit <args>` with MLAJIT_TUNING_DIR = <dir>/user and a cache of its own.
  CliRun run(const std::string& args) {
    const fs::path out = dir_ / "stdout", err = dir_ / "stderr";
    const std::string command = "env MLAJIT_TUNING_DIR=" + (dir_ / "user").string() + " MLAJIT_CACHE_DIR=" +
                                (dir_ / "cache").string() + " " + MLAJIT_CLI_PATH + " " + args + " >" + out.string() +
                                " 2>" + err.string();
    CliRun r;
    const int status = std::system(command.c_str());
    r.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    r.out = read(out);
    r.err = read(err);
    return r;
  }
  static std::string read(const fs::path& p) {
    std::ifstream in(p);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }

  fs::path dir_;
};

const char* k_s1 = "tune --explain --arch sm_90 --heads 16 --page-size 64 --batch 128 --context 4096";

TEST_F(TuneCliTest, ExplainWithoutADatabaseShowsTheModel) {
  // The shipped sm_90 database is measured; an unmeasured one named with --db leaves the model.
  Database unmeasured = measured_database({entry(16, 1, 128, 4096, mma(32, 3, 3), 240, 250)});
  unmeasured.meta.measured = false;
  std::ofstream(dir_ / "unmeasured.json") << dump_database(unmeasured);
  const std::string without = std::string(k_s1) + " --db " + (dir_ / "unmeasured.json").string();
  const CliRun r = run(without);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("bucket:   b7.r16.c12.q-bf16.kv-bf16.ps64.d512-64"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("unmeasured.json: not measured on a GPU (1 entries); ignored"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("choice:   mma hc16 bn32 w8 st2 x2 (2 CTAs/SM)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("the model: no measured database for this arch"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("splits    CTAs  waves"), std::string::npos) << r.out;

  const CliRun j = run(without + " --json --tokens-per-tile 64");
  ASSERT_EQ(j.status, 0) << j.err;
  const nlohmann::json doc = nlohmann::json::parse(j.out);
  EXPECT_EQ(doc["origin"], "model");
  EXPECT_EQ(doc["tile"]["num_splits"], 2);
  EXPECT_EQ(doc["forced_tile"]["tokens_per_tile"], 64);
  EXPECT_EQ(doc["scores"].size(), 64u);
}

TEST_F(TuneCliTest, ExplainUsesTheUsersDatabaseOrTheOneNamed) {
  std::ofstream(dir_ / "user" / "sm_90.json")
      << dump_database(measured_database({entry(16, 1, 128, 4096, mma(32, 3, 3), 240, 250)}));
  CliRun r = run(k_s1);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("choice:   mma hc16 bn32 w8 st3 x3"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("exact bucket: the measured best, splits included"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("best mma hc16 bn32 w8 st3 x3 240.0 us, model mma hc16 bn32 w8 st2 x2 250.0 us"),
            std::string::npos) << r.out;

  // Nearest: no bucket of the user's or the shipped database has batch 128 and context 2048.
  r = run("tune --explain --arch sm_90 --heads 16 --page-size 64 --batch 128 --context 2048 --json");
  ASSERT_EQ(r.status, 0) << r.err;
  nlohmann::json doc = nlohmann::json::parse(r.out);
  EXPECT_EQ(doc["origin"], "nearest_bucket");
  EXPECT_EQ(doc["distance"], 0.5);
  EXPECT_EQ(doc["tile"]["stages"], 3);

  std::ofstream(dir_ / "other.json")
      << dump_database(measured_database({entry(16, 1, 128, 4096, mma(64, 2, 1), 230, 250)}));
  r = run(std::string(k_s1) + " --json --db " + (dir_ / "other.json").string());
  ASSERT_EQ(r.status, 0) << r.err;
  doc = nlohmann::json::parse(r.out);
  EXPECT_EQ(doc["origin"], "exact_bucket");
  EXPECT_EQ(doc["tile"]["tokens_per_tile"], 64);
}

TEST_F(TuneCliTest, ExplainRejectsABadSpec) {
  const CliRun r = run("tune --explain --arch sm_90 --heads 0");
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("heads"), std::string::npos) << r.err;
}

TEST_F(TuneCliTest, SimulatedShardedSweepWritesAnUnmeasuredDatabase) {
  const fs::path out = dir_ / "db" / "sm_90.json";
  const CliRun r = run("tune --simulate --quick --arch sm_90 --devices 0,1 --json --out " + out.string());
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.err.find("tune [gpu 0]"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("tune [gpu 1]"), std::string::npos) << r.err;
  const nlohmann::json summary = nlohmann::json::parse(r.out);
  EXPECT_EQ(summary["measured"], false);
  EXPECT_EQ(summary["entries"].size(), 8u);  // S1..S8, four per shard
  const Database db = database_from_json(nlohmann::json::parse(read(out)), out.string());
  EXPECT_FALSE(db.meta.measured);
  EXPECT_NE(db.meta.note.find("SIMULATED"), std::string::npos);
  EXPECT_TRUE(db.meta.model_fitted);
  ASSERT_EQ(db.entries.size(), 8u);
  for (const Entry& e : db.entries) {
    EXPECT_GT(e.model.time_us, 0) << e.shape_id;
    EXPECT_LE(e.best.time_us, e.model.time_us) << e.shape_id;
    EXPECT_GT(e.measurements.size(), 2u) << e.shape_id;
  }

  // A simulated run never lands in a measured database.
  Database measured = measured_database({entry(16, 1, 128, 4096, mma(32, 2, 2), 250)});
  measured.meta.arch = "sm_90";
  std::ofstream(out) << dump_database(measured);
  const CliRun refused = run("tune --simulate --quick --arch sm_90 --shape S1 --out " + out.string());
  EXPECT_EQ(refused.status, 2) << refused.err;
  EXPECT_NE(refused.err.find("a simulated run must not be merged"), std::string::npos) << refused.err;
}

}  // namespace
}  // namespace mlajit::tuning
