// What a cache root holds: its entries with size and last use, the leftovers in tmp/ and
// quarantine/, and a full re-check of every entry (for `mlajit cache ls|stat|verify` and gc).
#pragma once

#include <cstdint>
#include <ctime>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace mlajit::cache {

struct EntryInfo {
  std::filesystem::path dir;       // the entry directory
  std::filesystem::path relative;  // below <root>/v1: <backend>-<arch>/<shard>/<name>
  std::string target;              // "<backend>-<arch>", e.g. "cuda-sm_90a"
  std::string name;                // "<readable_name>.<hash16>"
  bool is_directory = true;        // false: something else sits where an entry belongs
  std::uint64_t bytes = 0;         // its files together
  timespec last_use{};             // the directory's mtime (refreshed by hits)
};

// Every entry of the user layout below <root>/v1 (targets only: not locks/, tmp/, quarantine/),
// sorted by relative path. Only stat()s; entries vanishing meanwhile are skipped.
std::vector<EntryInfo> list_entries(const std::filesystem::path& root);

// The immediate children of `dir` (tmp/ or quarantine/), with sizes and mtimes; empty if absent.
std::vector<EntryInfo> list_children(const std::filesystem::path& dir);

// Re-reads one entry and checks everything load() checks, plus that it sits where its key says.
// nullopt when it is good, else the problem.
std::optional<std::string> verify_entry(const EntryInfo& entry);

}  // namespace mlajit::cache
