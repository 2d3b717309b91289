// Why a key misses: the entry of the same target whose key is nearest, and which fields differ
// (for `mlajit cache explain`).
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cache/inventory.hpp"
#include "cache/kernel_cache.hpp"

namespace mlajit::cache {

struct FieldDifference {
  std::string field;      // dotted path, e.g. "spec.heads" or "compiler_version"
  nlohmann::json wanted;  // null when only `found` has the field
  nlohmann::json found;   // null when only `wanted` has it
};

// Leaf-by-leaf differences of two key field objects; nested objects are walked, arrays compared
// whole. Sorted by field.
std::vector<FieldDifference> diff_fields(const nlohmann::json& wanted, const nlohmann::json& found);

struct NearestKey {
  EntryInfo entry;
  KernelKey key;
  std::vector<FieldDifference> differences;
};

// Among the readable entries of the key's target (<root>/v1/<backend>-<arch>), the one whose key
// fields differ from `key`'s in the fewest places (ties: the most recently used); nullopt when
// that target holds none.
std::optional<NearestKey> nearest_key(const std::filesystem::path& root, const KernelKey& key);

}  // namespace mlajit::cache
