// Tests of cache/gc and cache/inventory: sizes, LRU eviction that spares entries in use, stale
// leftovers, the budget enforced on publish, and verify's per-entry checks. CPU only.
#include "cache/gc.hpp"

#include <fstream>
#include <map>

#include <gtest/gtest.h>

#include "cache/key_lock.hpp"
#include "codegen/error.hpp"
#include "tests/cache/cache_test_support.hpp"

namespace mlajit::cache {
namespace {

using namespace test_support;

class GcTest : public CacheDirTest {
 protected:
  // Stores entries for `heads`, each `payload_bytes` of code, used `age_s[i]` seconds ago.
  std::vector<KernelKey> fill(const DiskStore& store, const std::vector<long>& ages_s, std::size_t payload_bytes) {
    std::vector<KernelKey> keys;
    for (std::size_t i = 0; i < ages_s.size(); ++i) {
      keys.push_back(key_with_heads(static_cast<int>(i + 1)));
      EXPECT_TRUE(store.store(keys.back(), make_entry(std::string(payload_bytes, char('a' + i)), "cubin")));
      age(store.entry_dir(keys.back()), ages_s[i]);
    }
    return keys;
  }
};

TEST(ParseSize, UnitsAndErrors) {
  EXPECT_EQ(parse_size("0", "x"), 0u);
  EXPECT_EQ(parse_size("1234", "x"), 1234u);
  EXPECT_EQ(parse_size("1234B", "x"), 1234u);
  EXPECT_EQ(parse_size("512K", "x"), 512u << 10);
  EXPECT_EQ(parse_size("64m", "x"), 64u << 20);
  EXPECT_EQ(parse_size("10G", "x"), std::uint64_t(10) << 30);
  EXPECT_EQ(parse_size("10GiB", "x"), std::uint64_t(10) << 30);
  EXPECT_EQ(parse_size("2TB", "x"), std::uint64_t(2) << 40);
  for (const char* bad : {"", "G", "-1", "1.5G", "10X", "10 G", "99999999999999999999", "20000000000T"}) {
    try {
      parse_size(bad, "--max-size");
      ADD_FAILURE() << "accepted '" << bad << "'";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::invalid_argument);
      EXPECT_NE(std::string(e.what()).find("--max-size"), std::string::npos) << e.what();
    }
  }
}

TEST_F(GcTest, ListsEntriesWithSizesAndLastUse) {
  const DiskStore store(root_);
  const std::vector<KernelKey> keys = fill(store, {300, 100}, 1000);
  const std::vector<EntryInfo> entries = list_entries(root_);
  ASSERT_EQ(entries.size(), 2u);
  for (const EntryInfo& entry : entries) {
    EXPECT_EQ(entry.target, "cuda-sm_90a");
    EXPECT_TRUE(entry.is_directory);
    EXPECT_GT(entry.bytes, 1000u);  // code plus key.json and manifest.json
    EXPECT_EQ(entry.dir, root_ / "v1" / entry.relative);
    EXPECT_FALSE(verify_entry(entry).has_value()) << *verify_entry(entry);
  }
  EXPECT_TRUE(list_entries(base_ / "absent").empty());
}

TEST_F(GcTest, WithoutBudgetNothingIsEvicted) {
  const DiskStore store(root_);
  fill(store, {10, 20, 30}, 100);
  const GcReport report = collect_garbage(store, GcOptions{});
  EXPECT_EQ(report.entries_before, 3u);
  EXPECT_EQ(report.entries_after, 3u);
  EXPECT_TRUE(report.evicted.empty());
  EXPECT_EQ(list_entries(root_).size(), 3u);
}

TEST_F(GcTest, EvictsLeastRecentlyUsedFirstUntilItFits) {
  const DiskStore store(root_);
  // Used 1 h, 3 h, 2 h and 1 min ago: the LRU order is keys 1, 2, 0, 3.
  const std::vector<KernelKey> keys = fill(store, {3600, 3 * 3600, 2 * 3600, 60}, 10000);
  const std::uint64_t one = list_entries(root_).front().bytes;

  const GcReport report = collect_garbage(store, GcOptions{.max_size = 2 * one + one / 2});
  ASSERT_EQ(report.evicted.size(), 2u);
  EXPECT_EQ(report.evicted[0].name, keys[1].entry_name());
  EXPECT_EQ(report.evicted[1].name, keys[2].entry_name());
  EXPECT_EQ(report.entries_before, 4u);
  EXPECT_EQ(report.entries_after, 2u);
  EXPECT_LE(report.bytes_after, 2 * one + one / 2);
  EXPECT_FALSE(fs::exists(store.entry_dir(keys[1])));
  EXPECT_FALSE(fs::exists(store.entry_dir(keys[2])));
  EXPECT_TRUE(store.load(keys[0]).has_value());
  EXPECT_TRUE(store.load(keys[3]).has_value());
  EXPECT_EQ(count_entries(root_ / "v1" / "tmp"), 0u) << "evicted entries are deleted, not parked";
}

TEST_F(GcTest, NeverEvictsAnEntryWhoseKeyIsHeld) {
  const DiskStore store(root_);
  const std::vector<KernelKey> keys = fill(store, {3 * 3600, 2 * 3600, 3600}, 10000);
  fs::create_directories(store.lock_path(keys[0]).parent_path());
  // A reader of the oldest entry (shared) and a writer of the next (exclusive), as live processes.
  KeyLock reader = KeyLock::try_shared(store.lock_path(keys[0]));
  std::string unsupported;
  KeyLock writer = KeyLock::acquire(store.lock_path(keys[1]), keys[1].entry_name(), std::chrono::seconds(1),
                                    std::chrono::seconds(5), &unsupported);
  ASSERT_TRUE(reader.held());
  ASSERT_TRUE(writer.held());

  const GcReport report = collect_garbage(store, GcOptions{.max_size = 0});
  ASSERT_EQ(report.skipped_in_use.size(), 2u);
  EXPECT_EQ(report.skipped_in_use[0].name, keys[0].entry_name());
  EXPECT_EQ(report.skipped_in_use[1].name, keys[1].entry_name());
  ASSERT_EQ(report.evicted.size(), 1u);
  EXPECT_EQ(report.evicted[0].name, keys[2].entry_name());
  EXPECT_TRUE(fs::is_directory(store.entry_dir(keys[0])));
  EXPECT_TRUE(fs::is_directory(store.entry_dir(keys[1])));

  reader.release();
  writer.release();
  EXPECT_EQ(collect_garbage(store, GcOptions{.max_size = 0}).evicted.size(), 2u);
  EXPECT_TRUE(list_entries(root_).empty());
}

TEST_F(GcTest, RemovesStaleTemporaryAndOldQuarantinedItemsOnly) {
  const DiskStore store(root_);
  fill(store, {10}, 100);
  const fs::path tmp = root_ / "v1" / "tmp";
  fs::create_directories(tmp / "crashed.123.abc");
  std::ofstream(tmp / "crashed.123.abc" / "code.cubin") << "partial";
  age(tmp / "crashed.123.abc", 2 * 3600);
  fs::create_directories(tmp / "writing.456.def");  // a live writer's, seconds old
  fs::create_directories(store.quarantine_dir() / "old.entry");
  age(store.quarantine_dir() / "old.entry", 8 * 24 * 3600);
  fs::create_directories(store.quarantine_dir() / "recent.entry");

  const GcReport report = collect_garbage(store, GcOptions{});
  ASSERT_EQ(report.removed_tmp.size(), 1u);
  EXPECT_EQ(report.removed_tmp[0].name, "crashed.123.abc");
  ASSERT_EQ(report.removed_quarantine.size(), 1u);
  EXPECT_EQ(report.removed_quarantine[0].name, "old.entry");
  EXPECT_TRUE(fs::exists(tmp / "writing.456.def"));
  EXPECT_TRUE(fs::exists(store.quarantine_dir() / "recent.entry"));
  EXPECT_EQ(list_entries(root_).size(), 1u);
}

TEST_F(GcTest, SizeLimitIsEnforcedAfterEachPublishButSparesTheNewEntry) {
  DiskStore store(root_);
  fill(store, {3 * 3600, 2 * 3600}, 10000);
  const std::uint64_t one = list_entries(root_).front().bytes;
  store.set_size_limit(one + one / 2);

  Outcome outcome = Outcome::memory_hit;
  const KernelKey fresh = key_with_heads(99);
  store.get_or_create(fresh, [] { return make_entry(std::string(10000, 'z'), "cubin"); }, &outcome);
  EXPECT_EQ(outcome, Outcome::compiled);
  const std::vector<EntryInfo> left = list_entries(root_);
  ASSERT_EQ(left.size(), 1u);
  EXPECT_EQ(left[0].name, fresh.entry_name());

  // A budget smaller than one entry still keeps the entry just compiled.
  store.set_size_limit(1);
  const KernelKey another = key_with_heads(100);
  store.get_or_create(another, [] { return make_entry(std::string(10000, 'y'), "cubin"); }, &outcome);
  ASSERT_EQ(list_entries(root_).size(), 1u);
  EXPECT_TRUE(store.load(another).has_value());
}

TEST_F(GcTest, VerifyNamesMisplacedAndDamagedEntries) {
  const DiskStore store(root_);
  const std::vector<KernelKey> keys = fill(store, {10, 10, 10}, 100);
  // A good entry copied to another target's directory is misplaced (its key says sm_90a).
  const fs::path misplaced = root_ / "v1" / "cuda-sm_80" / keys[0].hash.substr(0, 2) / keys[0].entry_name();
  fs::create_directories(misplaced.parent_path());
  fs::copy(store.entry_dir(keys[0]), misplaced);
  fs::remove(store.entry_dir(keys[1]) / "manifest.json");
  fs::create_directories(root_ / "v1" / "cuda-sm_90a" / "zz");
  std::ofstream(root_ / "v1" / "cuda-sm_90a" / "zz" / "junk") << "x";

  std::map<std::string, std::string> problems;
  for (const EntryInfo& entry : list_entries(root_)) {
    if (std::optional<std::string> problem = verify_entry(entry)) problems[entry.relative.string()] = *problem;
  }
  ASSERT_EQ(problems.size(), 3u);
  EXPECT_NE(problems.at(fs::relative(misplaced, root_ / "v1").string()).find("belongs at cuda-sm_90a/"),
            std::string::npos);
  EXPECT_NE(problems.at(fs::relative(store.entry_dir(keys[1]), root_ / "v1").string()).find("manifest.json"),
            std::string::npos);
  EXPECT_EQ(problems.at("cuda-sm_90a/zz/junk"), "not a directory");
}

}  // namespace
}  // namespace mlajit::cache
