// Keeping the user cache bounded: LRU eviction to a byte budget that never removes an entry a
// live process is reading or writing, and removal of what crashes and quarantine leave behind.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "cache/inventory.hpp"
#include "cache/kernel_cache.hpp"

namespace mlajit::cache {

// "1048576", "512K", "64M", "10G", "1T" (powers of 1024; "KB", "KiB" and a bare "B" also read).
// Throws Error(invalid_argument) naming `what` otherwise.
std::uint64_t parse_size(const std::string& text, const std::string& what);

// MLAJIT_CACHE_MAX_SIZE, parsed; nullopt when unset.
std::optional<std::uint64_t> size_limit_from_environment();

struct GcOptions {
  std::optional<std::uint64_t> max_size;                      // nullopt: evict nothing
  std::chrono::seconds stale_tmp_age{std::chrono::hours(1)};  // crash leftovers in tmp/
  std::chrono::seconds stale_quarantine_age{std::chrono::hours(24 * 7)};
};

struct GcReport {
  std::size_t entries_before = 0;
  std::uint64_t bytes_before = 0;
  std::size_t entries_after = 0;
  std::uint64_t bytes_after = 0;
  std::vector<EntryInfo> evicted;      // least recently used first
  std::vector<EntryInfo> skipped_in_use;  // over budget, but a live process holds the key
  std::vector<EntryInfo> removed_tmp;
  std::vector<EntryInfo> removed_quarantine;
};

// Evicts least-recently-used entries of the user layer until it fits options.max_size, skipping
// any whose key lock is held; removes tmp/ and quarantine/ items older than their ages.
GcReport collect_garbage(const DiskStore& store, const GcOptions& options);

}  // namespace mlajit::cache
