// Shipped (embedded) and user tuning databases: what the engine loads, overlays and ignores.
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tests/tuning/tuning_test_support.hpp"
#include "tuning/registry.hpp"
#include "tuning/select.hpp"

namespace mlajit::tuning {
namespace {

namespace fs = std::filesystem;
using test_support::entry;
using test_support::measured_database;
using test_support::mma;

// A fresh MLAJIT_TUNING_DIR per test; the variables are restored afterwards.
class RegistryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = test_support::fresh_directory("mlajit-registry-test");
    save("MLAJIT_TUNING_DIR");
    save("MLAJIT_CACHE_DIR");
    ::setenv("MLAJIT_TUNING_DIR", dir_.c_str(), 1);
    reload_databases();
  }
  void TearDown() override {
    for (const auto& [name, value] : saved_) {
      if (value) ::setenv(name.c_str(), value->c_str(), 1);
      else ::unsetenv(name.c_str());
    }
    reload_databases();
    fs::remove_all(dir_);
  }
  void save(const std::string& name) {
    const char* v = std::getenv(name.c_str());
    saved_.emplace_back(name, v ? std::optional<std::string>(v) : std::nullopt);
  }
  void write(const fs::path& path, const std::string& text) { std::ofstream(path) << text; }

  fs::path dir_;
  std::vector<std::pair<std::string, std::optional<std::string>>> saved_;
};

TEST_F(RegistryTest, ShippedDatabasesAreEmbeddedAndOnlyMeasuredOnesAreUsed) {
  bool sm90 = false;
  for (const EmbeddedDatabase& e : embedded_databases()) {
    SCOPED_TRACE(std::string(e.file));
    const Database db = database_from_json(nlohmann::json::parse(e.text), std::string(e.file));
    EXPECT_EQ(database_name(db.meta.arch) + ".json", e.file);  // sm_90a measurements ship as sm_90.json
    sm90 |= e.file == "sm_90.json";
    const LoadedDatabase loaded = load_database(db.meta.arch);  // no user database in this test
    if (db.meta.measured) {
      // What ships as measured names its card and date and was not simulated.
      EXPECT_FALSE(db.meta.card.empty());
      EXPECT_FALSE(db.meta.date.empty());
      EXPECT_FALSE(db.entries.empty());
      EXPECT_EQ(db.meta.note.find("SIMULATED"), std::string::npos);
      EXPECT_TRUE(loaded.db.has_value()) << loaded.description;
    } else {
      EXPECT_FALSE(loaded.db.has_value());
      EXPECT_NE(loaded.description.find("embedded " + std::string(e.file) + ": not measured on a GPU"), std::string::npos)
          << loaded.description;
      EXPECT_EQ(database_for(db.meta.arch), nullptr);
    }
    EXPECT_NE(loaded.description.find("no user database at " + (dir_ / e.file).string()), std::string::npos)
        << loaded.description;
  }
  EXPECT_TRUE(sm90) << "tuning/db/sm_90.json is not embedded";
  EXPECT_EQ(database_for("gfx942"), nullptr);
}

// These use sm_90 (no wgmma): their mma entries are what the model would pick there. On sm_90a
// an entry never swept with wgmma is stale (DropInvalidEntries).
TEST_F(RegistryTest, AUserDatabaseOverridesAndIsLoadedOnce) {
  write(dir_ / "sm_90.json", dump_database(measured_database({entry(16, 1, 128, 4096, mma(32, 3, 3), 240)})));
  const LoadedDatabase& first = loaded_database("sm_90");
  ASSERT_TRUE(first.db.has_value()) << first.description;
  EXPECT_EQ(&loaded_database("sm_90"), &first);  // cached
  const Database* db = database_for("sm_90");
  ASSERT_NE(db, nullptr);
  Spec s;
  s.page_size = 64;
  const Selection sel = select(s, parse_target("sm_90"), DecodeShape{128, 4096, 132}, db);
  EXPECT_EQ(sel.origin, Origin::exact_bucket);
  EXPECT_EQ(sel.tile, mma(32, 3, 3));

  // A reload reads the files again (only the shipped database is left); references handed out
  // before stay valid.
  const std::size_t with_user = first.db->entries.size();
  fs::remove(dir_ / "sm_90.json");
  reload_databases();
  const Database* shipped_only = database_for("sm_90");
  if (shipped_only != nullptr) {
    const Selection after = select(s, parse_target("sm_90"), DecodeShape{128, 4096, 132}, shipped_only);
    EXPECT_FALSE(after.tile == mma(32, 3, 3) && after.origin == Origin::exact_bucket) << "the user's entry is gone";
  }
  EXPECT_TRUE(first.db.has_value());
  EXPECT_EQ(first.db->entries.size(), with_user);
}

TEST_F(RegistryTest, UserEntriesAndModelWinOverShippedOnes) {
  Database shipped = measured_database({entry(16, 1, 128, 4096, mma(32, 2, 2), 250),
                                        entry(16, 1, 4, 32768, mma(64, 2, 33), 100)});
  const std::string shipped_text = dump_database(shipped);
  const EmbeddedDatabase embedded[] = {{"sm_90.json", shipped_text}};
  Database user = measured_database({entry(16, 1, 128, 4096, mma(32, 4, 1), 230)});
  user.meta.model.split_overhead_tokens = 33;
  write(dir_ / "sm_90.json", dump_database(user));
  const LoadedDatabase loaded = load_database("sm_90", embedded);
  ASSERT_TRUE(loaded.db.has_value()) << loaded.description;
  ASSERT_EQ(loaded.db->entries.size(), 2u);
  EXPECT_EQ(loaded.db->entries[0].shape.batch, 4);  // shipped, bucket b2 first
  EXPECT_EQ(loaded.db->entries[1].best.tile, mma(32, 4, 1));  // the user's b7 entry
  EXPECT_EQ(loaded.db->meta.model.split_overhead_tokens, 33);
  EXPECT_NE(loaded.description.find("embedded sm_90.json: 2 entries measured on H100"), std::string::npos)
      << loaded.description;
  EXPECT_NE(loaded.description.find("user " + (dir_ / "sm_90.json").string() + ": 1 entries"), std::string::npos)
      << loaded.description;
}

TEST_F(RegistryTest, UnusableUserFilesAreIgnoredWithAReason) {
  Database unmeasured = measured_database({entry(16, 1, 128, 4096, mma(32, 2, 2), 250)});
  unmeasured.meta.measured = false;
  write(dir_ / "sm_90.json", dump_database(unmeasured));
  const std::span<const EmbeddedDatabase> none;  // the user file alone decides
  LoadedDatabase loaded = load_database("sm_90", none);
  EXPECT_FALSE(loaded.db.has_value());
  EXPECT_NE(loaded.description.find("not measured on a GPU (1 entries); ignored"), std::string::npos) << loaded.description;

  Database other_arch = measured_database({entry(16, 1, 128, 4096, mma(32, 2, 2), 250)});
  other_arch.meta.arch = "sm_80";
  write(dir_ / "sm_90.json", dump_database(other_arch));
  loaded = load_database("sm_90", none);
  EXPECT_FALSE(loaded.db.has_value());
  EXPECT_NE(loaded.description.find("made for sm_80, not sm_90"), std::string::npos) << loaded.description;

  write(dir_ / "sm_90.json", "{ not json");
  loaded = load_database("sm_90", none);
  EXPECT_FALSE(loaded.db.has_value());
  EXPECT_NE(loaded.description.find("unreadable, ignored"), std::string::npos) << loaded.description;

  Database stale = measured_database({entry(16, 1, 128, 4096, mma(32, 2, 2), 250),
                                      entry(16, 1, 4, 32768, mma(64, 4, 33), 100)});  // no longer fits
  write(dir_ / "sm_90.json", dump_database(stale));
  loaded = load_database("sm_90", none);
  ASSERT_TRUE(loaded.db.has_value());
  EXPECT_EQ(loaded.db->entries.size(), 1u);
  EXPECT_NE(loaded.description.find("1 entries dropped"), std::string::npos) << loaded.description;
}

TEST_F(RegistryTest, WithoutTheVariableTheCacheRootHoldsTheUserDatabase) {
  ::unsetenv("MLAJIT_TUNING_DIR");
  ::setenv("MLAJIT_CACHE_DIR", dir_.c_str(), 1);
  EXPECT_EQ(user_database_path("sm_90a"), dir_ / "tuning" / "sm_90.json");
  fs::create_directories(dir_ / "tuning");
  write(dir_ / "tuning" / "sm_90.json", dump_database(measured_database({entry(16, 1, 128, 4096, mma(32, 2, 2), 250)})));
  EXPECT_NE(database_for("sm_90a"), nullptr);
}

TEST_F(RegistryTest, ADatabaseFileForExplain) {
  write(dir_ / "mine.json", dump_database(measured_database({entry(16, 1, 128, 4096, mma(32, 2, 2), 250)})));
  LoadedDatabase loaded = load_database_file(dir_ / "mine.json", "sm_90a");
  ASSERT_TRUE(loaded.db.has_value()) << loaded.description;
  loaded = load_database_file(dir_ / "mine.json", "gfx942");
  EXPECT_FALSE(loaded.db.has_value());
}

TEST(DatabaseName, OnePerGpuGeneration) {
  EXPECT_EQ(database_name("sm_90a"), "sm_90");
  EXPECT_EQ(database_name("sm_90"), "sm_90");
  EXPECT_EQ(database_name("sm_100f"), "sm_100");
  EXPECT_EQ(database_name("sm_80"), "sm_80");
  EXPECT_EQ(database_name("gfx90a"), "gfx90a");  // AMD targets are their own generation
}

}  // namespace
}  // namespace mlajit::tuning
