// The files of one cache entry (key.json, manifest.json, code.cubin / code.hsaco), where an entry
// lives under a root, and the one check that decides whether an entry may be loaded, shipped or
// imported.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cache/kernel_cache.hpp"

namespace mlajit::cache {

// The on-disk layout version: a new layout lives beside the old one (<root>/v2), never inside it.
inline constexpr const char* k_layout_dir = "v1";
inline constexpr const char* k_key_file = "key.json";
inline constexpr const char* k_manifest_file = "manifest.json";

// Directories under <root>/v1 that are not targets.
inline constexpr const char* k_locks_dir = "locks";
inline constexpr const char* k_tmp_dir = "tmp";
inline constexpr const char* k_quarantine_dir = "quarantine";

// "code.cubin" / "code.hsaco" by the manifest's "format"; "code.bin" for an unknown format.
std::string code_file_name(const nlohmann::json& manifest);

// "<backend>-<arch>/<hash[0:2]>/<readable_name>.<short_hash>": an entry's place below <root>/v1.
// Throws Error(internal) for a key whose fields could step outside the root.
std::filesystem::path relative_entry_path(const KernelKey& key);

// What key.json holds, and the key it describes.
nlohmann::json key_document(const KernelKey& key);
// Throws IoFailure when the document is not a key.json (the hash is checked by check_entry).
KernelKey key_from_document(const nlohmann::json& document);

struct EntryFiles {
  nlohmann::json key_document;
  nlohmann::json manifest;
  std::vector<std::uint8_t> code;
};

// Reads the three files of the entry directory `dir`. Throws IoFailure.
EntryFiles read_entry_files(const std::filesystem::path& dir);

// Throws IoFailure naming the first problem: key.json's fields do not hash to its hash (or to
// `expected_hash` when given); `relative_path` is not where that key belongs; the manifest lacks
// size or sha256, or they do not match the code object.
void check_entry(const EntryFiles& files, const std::filesystem::path& relative_path, const std::string* expected_hash);

}  // namespace mlajit::cache
