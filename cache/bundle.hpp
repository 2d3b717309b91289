// Shipping a warmed cache: `export` writes the verified entries of a root into one zstd-compressed
// bundle with a manifest (versions, archs); `import` checks every entry of a bundle and installs
// them through the store's own atomic, compile-once publish.
//
// Bundle file: one zstd frame (with its content checksum) holding the magic "MLJBNDL1" and then
// records, each `u32le name length, name, u64le data length, data`. The first record is
// "bundle.json"; then each entry's three files as "<backend>-<arch>/<shard>/<entry>/<file>".
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "cache/inventory.hpp"
#include "cache/kernel_cache.hpp"

namespace mlajit::cache {

struct ExportReport {
  nlohmann::json manifest;                                 // the bundle.json written
  std::vector<std::pair<EntryInfo, std::string>> skipped;  // damaged entries left out, with why
  std::uint64_t file_bytes = 0;                            // size of the bundle file
};

// Writes every good entry below `root` into `file`, atomically (a temporary file beside it, then
// rename). `tool_version` goes into the manifest. Throws Error(cache_error) when it cannot write.
ExportReport export_bundle(const std::filesystem::path& root, const std::filesystem::path& file,
                           const std::string& tool_version);

struct ImportReport {
  nlohmann::json manifest;               // the bundle.json read
  std::vector<std::string> installed;    // entry paths published by this import
  std::vector<std::string> present;      // already in the cache
  std::vector<std::string> not_stored;   // valid, but the disk refused them (warned)
};

// Validates the whole bundle first (container, manifest, every entry's checksum, key hash and
// place) and throws Error(cache_error) naming the first problem, installing nothing; then
// publishes each entry with store.get_or_create().
ImportReport import_bundle(const DiskStore& store, const std::filesystem::path& file);

}  // namespace mlajit::cache
