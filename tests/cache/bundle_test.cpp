// Tests of cache/bundle and cache/compressed_file: export -> import round trips, damaged entries
// left out, and tampered, truncated or foreign files refused with nothing installed. CPU only.
#include "cache/bundle.hpp"

#include <algorithm>
#include <fstream>

#include <gtest/gtest.h>

#include "cache/compressed_file.hpp"
#include "codegen/error.hpp"
#include "tests/cache/cache_test_support.hpp"

namespace mlajit::cache {
namespace {

using namespace test_support;

class BundleTest : public CacheDirTest {
 protected:
  void SetUp() override {
    CacheDirTest::SetUp();
    bundle_ = base_ / "cache.mlajit";
  }

  // Three sm_90a cubins and one gfx90a hsaco in the source root.
  std::vector<KernelKey> fill_source() {
    const DiskStore source(root_);
    std::vector<KernelKey> keys = {key_with_heads(16), key_with_heads(32), key_with_heads(64)};
    for (std::size_t i = 0; i < keys.size(); ++i) {
      EXPECT_TRUE(source.store(keys[i], make_entry(std::string(5000, char('p' + i)), "cubin")));
    }
    KeyFields amd = golden_fields();
    amd.backend = "hip";
    amd.arch = "gfx90a";
    amd.compiler = "hiprtc";
    keys.push_back(make_key(amd, "mla_decode_amd"));
    EXPECT_TRUE(source.store(keys.back(), make_entry("hsaco code object", "hsaco")));
    return keys;
  }

  void expect_refused(const fs::path& bundle, const std::string& reason) {
    const DiskStore target(base_ / "target");
    try {
      import_bundle(target, bundle);
      ADD_FAILURE() << "imported a bad bundle; wanted a refusal mentioning '" << reason << "'";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::cache_error);
      EXPECT_NE(std::string(e.what()).find(reason), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("nothing was installed"), std::string::npos) << e.what();
    }
    EXPECT_TRUE(list_entries(base_ / "target").empty());
  }

  fs::path bundle_;
};

TEST_F(BundleTest, ExportThenImportIntoAnEmptyCacheInstallsEveryEntry) {
  const std::vector<KernelKey> keys = fill_source();
  const ExportReport exported = export_bundle(root_, bundle_, "9.9.9");
  EXPECT_TRUE(exported.skipped.empty());
  EXPECT_EQ(exported.manifest["entries"].size(), 4u);
  EXPECT_EQ(exported.manifest["archs"], nlohmann::json({"cuda-sm_90a", "hip-gfx90a"}));
  EXPECT_EQ(exported.manifest["mlajit_version"], "9.9.9");
  EXPECT_EQ(exported.manifest["compilers"], nlohmann::json({"cuda nvrtc 12.8", "hip hiprtc 12.8"}));
  EXPECT_EQ(exported.file_bytes, fs::file_size(bundle_));
  EXPECT_LT(exported.file_bytes, 3 * 5000u) << "the bundle is compressed";

  const DiskStore target(base_ / "target");
  const ImportReport imported = import_bundle(target, bundle_);
  EXPECT_EQ(imported.installed.size(), 4u);
  EXPECT_TRUE(imported.present.empty());
  const DiskStore source(root_);
  for (const KernelKey& key : keys) {
    const std::optional<Entry> want = source.load(key);
    const std::optional<Entry> got = target.load(key);
    ASSERT_TRUE(got.has_value()) << key.entry_name();
    EXPECT_EQ(got->code, want->code);
    EXPECT_EQ(got->manifest, want->manifest) << "the manifest, creation time included, travels unchanged";
  }
  EXPECT_TRUE(fs::exists(target.entry_dir(keys.back()) / "code.hsaco"));

  const ImportReport again = import_bundle(target, bundle_);
  EXPECT_TRUE(again.installed.empty());
  EXPECT_EQ(again.present.size(), 4u);
}

TEST_F(BundleTest, ExportLeavesDamagedEntriesOutAndSaysWhich) {
  const std::vector<KernelKey> keys = fill_source();
  const DiskStore source(root_);
  fs::resize_file(source.entry_dir(keys[1]) / "code.cubin", 10);
  const ExportReport exported = export_bundle(root_, bundle_, "1");
  ASSERT_EQ(exported.skipped.size(), 1u);
  EXPECT_EQ(exported.skipped[0].first.name, keys[1].entry_name());
  EXPECT_NE(exported.skipped[0].second.find("10 bytes"), std::string::npos) << exported.skipped[0].second;
  EXPECT_EQ(import_bundle(DiskStore(base_ / "target"), bundle_).installed.size(), 3u);
}

TEST_F(BundleTest, AnEmptyCacheExportsAnEmptyBundle) {
  const ExportReport exported = export_bundle(root_, bundle_, "1");
  EXPECT_TRUE(exported.manifest["entries"].empty());
  const ImportReport imported = import_bundle(DiskStore(base_ / "target"), bundle_);
  EXPECT_TRUE(imported.installed.empty());
}

TEST_F(BundleTest, TamperedEntryRefusesTheWholeBundle) {
  fill_source();
  export_bundle(root_, bundle_, "1");
  // Change one byte of one code object inside the container and re-compress it validly, so
  // only the entry's own checksum can catch it.
  std::vector<std::uint8_t> plain = read_compressed_file(bundle_, 1 << 30);
  const std::string run(5000, 'q');
  const auto at = std::search(plain.begin(), plain.end(), run.begin(), run.end());
  ASSERT_NE(at, plain.end());
  at[100] = 'X';
  const fs::path tampered = base_ / "tampered.mlajit";
  CompressedFileWriter writer(tampered);
  writer.write(plain);
  writer.commit();
  expect_refused(tampered, "does not match its sha256");
}

TEST_F(BundleTest, CorruptTruncatedOrForeignFilesAreRefused) {
  fill_source();
  export_bundle(root_, bundle_, "1");
  std::string bytes = read_text(bundle_);

  const fs::path flipped = base_ / "flipped.mlajit";
  std::string damaged = bytes;
  damaged[damaged.size() / 2] ^= 0x5a;
  std::ofstream(flipped, std::ios::binary) << damaged;
  expect_refused(flipped, "cannot decompress");

  const fs::path truncated = base_ / "truncated.mlajit";
  std::ofstream(truncated, std::ios::binary) << bytes.substr(0, bytes.size() - 40);
  expect_refused(truncated, "truncated");

  const fs::path foreign = base_ / "foreign.mlajit";
  CompressedFileWriter writer(foreign);
  writer.write(std::vector<std::uint8_t>{'h', 'e', 'l', 'l', 'o', '!', '!', '!', '!'});
  writer.commit();
  expect_refused(foreign, "bad magic");

  expect_refused(base_ / "absent.mlajit", "cannot open");
}

TEST_F(BundleTest, ExportIntoAnUnwritablePlaceIsAClearError) {
  std::ofstream(base_ / "a_file") << "x";
  try {
    export_bundle(root_, base_ / "a_file" / "cache.mlajit", "1");
    ADD_FAILURE() << "exported below a regular file";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::cache_error);
    EXPECT_NE(std::string(e.what()).find("cannot write bundle"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace mlajit::cache
