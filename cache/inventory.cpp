// Walks a cache root: entries, leftovers, and the per-entry re-check behind `mlajit cache verify`.
#include "cache/inventory.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <system_error>

#include <nlohmann/json.hpp>

#include "cache/entry_files.hpp"
#include "cache/file_io.hpp"

namespace mlajit::cache {

namespace fs = std::filesystem;

namespace {

// Directory names, sorted; empty when `dir` is absent or unreadable. Names only, so that an
// entry renamed away between listing and stat() is simply skipped by the caller.
std::vector<std::string> child_names(const fs::path& dir) {
  std::vector<std::string> names;
  std::error_code error;
  for (fs::directory_iterator it(dir, error), end; !error && it != end; it.increment(error)) {
    names.push_back(it->path().filename().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

bool is_real_directory(const fs::path& path) {
  struct stat info {};
  return ::lstat(path.c_str(), &info) == 0 && S_ISDIR(info.st_mode);
}

// The size of a file, or of the regular files below a directory.
std::uint64_t tree_bytes(const fs::path& path) {
  struct stat info {};
  if (::lstat(path.c_str(), &info) != 0) return 0;
  if (!S_ISDIR(info.st_mode)) return static_cast<std::uint64_t>(info.st_size);
  std::uint64_t bytes = 0;
  std::error_code error;
  for (fs::recursive_directory_iterator it(path, error), end; !error && it != end; it.increment(error)) {
    if (::lstat(it->path().c_str(), &info) == 0 && S_ISREG(info.st_mode)) bytes += static_cast<std::uint64_t>(info.st_size);
  }
  return bytes;
}

std::optional<EntryInfo> describe(const fs::path& path) {
  struct stat info {};
  if (::lstat(path.c_str(), &info) != 0) return std::nullopt;
  EntryInfo entry;
  entry.dir = path;
  entry.name = path.filename().string();
  entry.is_directory = S_ISDIR(info.st_mode);
  entry.bytes = tree_bytes(path);
  entry.last_use = info.st_mtim;
  return entry;
}

}  // namespace

std::vector<EntryInfo> list_entries(const fs::path& root) {
  const fs::path layout = root / k_layout_dir;
  std::vector<EntryInfo> entries;
  for (const std::string& target : child_names(layout)) {
    // A target directory is "<backend>-<arch>"; the others (locks, tmp, quarantine) have no dash.
    if (target == k_locks_dir || target == k_tmp_dir || target == k_quarantine_dir) continue;
    if (target.find('-') == std::string::npos || !is_real_directory(layout / target)) continue;
    for (const std::string& shard : child_names(layout / target)) {
      for (const std::string& name : child_names(layout / target / shard)) {
        if (std::optional<EntryInfo> entry = describe(layout / target / shard / name)) {
          entry->relative = fs::path(target) / shard / name;
          entry->target = target;
          entries.push_back(std::move(*entry));
        }
      }
    }
  }
  return entries;
}

std::vector<EntryInfo> list_children(const fs::path& dir) {
  std::vector<EntryInfo> children;
  for (const std::string& name : child_names(dir)) {
    if (std::optional<EntryInfo> child = describe(dir / name)) {
      child->relative = name;
      children.push_back(std::move(*child));
    }
  }
  return children;
}

std::optional<std::string> verify_entry(const EntryInfo& entry) {
  if (!entry.is_directory) return std::string("not a directory");
  try {
    check_entry(read_entry_files(entry.dir), entry.relative, nullptr);
    return std::nullopt;
  } catch (const IoFailure& e) {
    return std::string(e.what());
  } catch (const nlohmann::json::exception& e) {
    return std::string(e.what());
  }
}

}  // namespace mlajit::cache
