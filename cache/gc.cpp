// LRU eviction under the per-key locks, and removal of stale temporary and quarantined items.
#include "cache/gc.hpp"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <ctime>
#include <limits>

#include <fmt/format.h>

#include "cache/entry_files.hpp"
#include "cache/environment.hpp"
#include "cache/file_io.hpp"
#include "cache/key_lock.hpp"
#include "codegen/error.hpp"

namespace mlajit::cache {

namespace fs = std::filesystem;

namespace {

bool older_than(const EntryInfo& item, std::chrono::seconds age) {
  timespec now{};
  ::clock_gettime(CLOCK_REALTIME, &now);
  return now.tv_sec - item.last_use.tv_sec > age.count();
}

bool earlier(const timespec& a, const timespec& b) {
  return a.tv_sec != b.tv_sec ? a.tv_sec < b.tv_sec : a.tv_nsec < b.tv_nsec;
}

// The key of an entry, from its key.json; nullopt when that is unreadable (a damaged entry,
// which nobody can load, so there is nothing to lock).
std::optional<KernelKey> entry_key(const EntryInfo& entry) {
  try {
    return key_from_document(read_json(entry.dir / k_key_file));
  } catch (const IoFailure&) {
    return std::nullopt;
  }
}

enum class Eviction { evicted, gone, in_use };

// Removes one entry. The key's exclusive lock, taken without waiting, is what keeps this safe:
// readers hold it shared while they read and writers hold it exclusively while they compile and
// publish, so if we get it nobody is using the entry. The entry first leaves its place by one
// rename() into tmp/ (readers see all of it or none of it), and only then is it deleted.
Eviction evict(const DiskStore& store, const EntryInfo& entry) {
  KeyLock lock;
  if (const std::optional<KernelKey> key = entry_key(entry)) {
    try {
      const fs::path lock_file = store.lock_path(*key);
      make_directories(lock_file.parent_path());
      lock = KeyLock::try_exclusive(lock_file);
    } catch (const std::exception&) {
      // A malformed hash or an unusable locks/ directory: we cannot know, so keep it.
    }
    if (!lock.held()) return Eviction::in_use;
  }
  fs::path trash;
  try {
    // rename() onto the fresh empty directory replaces it atomically.
    trash = make_unique_directory(store.root() / k_layout_dir / k_tmp_dir, "evicted." + entry.name);
  } catch (const IoFailure&) {
    return Eviction::in_use;
  }
  if (::rename(entry.dir.c_str(), trash.c_str()) != 0) {
    const int error = errno;
    remove_tree(trash);
    return error == ENOENT ? Eviction::gone : Eviction::in_use;
  }
  lock.release();  // the entry is out of sight; deleting it needs no lock
  remove_tree(trash);
  return Eviction::evicted;
}

void remove_stale(const fs::path& dir, std::chrono::seconds age, std::vector<EntryInfo>* removed) {
  for (const EntryInfo& item : list_children(dir)) {
    // Writers keep their tmp/ directory for milliseconds (store() runs after the compile), so an
    // hour-old one belongs to a process that died.
    if (!older_than(item, age)) continue;
    remove_tree(item.dir);
    removed->push_back(item);
  }
}

}  // namespace

std::uint64_t parse_size(const std::string& text, const std::string& what) {
  std::size_t digits = 0;
  while (digits < text.size() && std::isdigit(static_cast<unsigned char>(text[digits]))) ++digits;
  std::string unit = text.substr(digits);
  for (char& c : unit) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  int shift = -1;
  if (unit.empty() || unit == "B") shift = 0;
  for (int i = 0; i < 4 && shift < 0; ++i) {
    const std::string prefix(1, "KMGT"[i]);
    if (unit == prefix || unit == prefix + "B" || unit == prefix + "IB") shift = 10 * (i + 1);
  }
  std::uint64_t value = 0;
  bool overflow = false;
  for (std::size_t i = 0; i < digits; ++i) {
    overflow |= value > (std::numeric_limits<std::uint64_t>::max() - 9) / 10;
    value = value * 10 + static_cast<std::uint64_t>(text[i] - '0');
  }
  if (digits == 0 || shift < 0 || overflow || (shift > 0 && value > (std::numeric_limits<std::uint64_t>::max() >> shift))) {
    throw_invalid(what, "must be a byte count with an optional K, M, G or T suffix (e.g. 10G)", text);
  }
  return value << shift;
}

std::optional<std::uint64_t> size_limit_from_environment() {
  const std::optional<std::string> text = read_environment("MLAJIT_CACHE_MAX_SIZE");
  if (!text) return std::nullopt;
  return parse_size(*text, "MLAJIT_CACHE_MAX_SIZE");
}

GcReport collect_garbage(const DiskStore& store, const GcOptions& options) {
  GcReport report;
  const fs::path layout = store.root() / k_layout_dir;
  remove_stale(layout / k_tmp_dir, options.stale_tmp_age, &report.removed_tmp);
  remove_stale(layout / k_quarantine_dir, options.stale_quarantine_age, &report.removed_quarantine);

  std::vector<EntryInfo> entries = list_entries(store.root());
  report.entries_before = entries.size();
  for (const EntryInfo& entry : entries) report.bytes_before += entry.bytes;
  report.entries_after = report.entries_before;
  report.bytes_after = report.bytes_before;
  if (!options.max_size || report.bytes_after <= *options.max_size) return report;

  // Only directories are entries; anything else there is junk for `verify` to name.
  std::erase_if(entries, [](const EntryInfo& entry) { return !entry.is_directory; });
  std::stable_sort(entries.begin(), entries.end(),
                   [](const EntryInfo& a, const EntryInfo& b) { return earlier(a.last_use, b.last_use); });
  for (const EntryInfo& entry : entries) {
    if (report.bytes_after <= *options.max_size) break;
    const Eviction result = evict(store, entry);
    if (result == Eviction::in_use) {
      report.skipped_in_use.push_back(entry);
      continue;
    }
    if (result == Eviction::evicted) report.evicted.push_back(entry);
    report.bytes_after -= entry.bytes;
    --report.entries_after;
  }
  return report;
}

}  // namespace mlajit::cache
