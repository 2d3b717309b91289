// Kernel keys (canonical JSON -> SHA-256) and the on-disk store: versioned layout, layers, atomic
// publish by rename, per-key flock() so a kernel compiles once across threads and processes, and
// integrity checks that quarantine damaged entries instead of loading them.
#include "cache/kernel_cache.hpp"

#include <fcntl.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <ctime>
#include <span>
#include <utility>

#include <fmt/format.h>
#include <openssl/evp.h>

#include "cache/entry_files.hpp"
#include "cache/environment.hpp"
#include "cache/file_io.hpp"
#include "cache/gc.hpp"
#include "cache/key_lock.hpp"
#include "codegen/error.hpp"

namespace mlajit::cache {

namespace fs = std::filesystem;

namespace {

// Bumping this makes every existing key a different key (it is part of the hashed fields).
constexpr int k_layout_version = 1;

// How stale a last-use stamp may get before a hit refreshes it: one utimensat() a minute per
// entry at most, and LRU order does not need better.
constexpr long k_last_use_resolution_s = 60;

// The caller's manifest plus the integrity facts load() verifies. nullopt if it is not an object.
std::optional<nlohmann::json> published_manifest(const Entry& entry) {
  if (!entry.manifest.is_null() && !entry.manifest.is_object()) return std::nullopt;
  nlohmann::json manifest = entry.manifest.is_null() ? nlohmann::json::object() : entry.manifest;
  manifest["size"] = entry.code.size();
  manifest["sha256"] = sha256_hex(entry.code.data(), entry.code.size());
  // Re-storing a loaded entry (or importing one) keeps its creation time.
  if (!manifest.contains("created")) manifest["created"] = utc_time(false);
  return manifest;
}

// The entry directory's mtime is its last-use stamp. Published entries are never modified, so
// nothing else moves it. Best effort: a cache we cannot write keeps its old stamps, which only
// makes gc's order less exact.
void touch_last_use(const fs::path& dir, const struct stat& examined) {
  timespec now{};
  ::clock_gettime(CLOCK_REALTIME, &now);
  if (now.tv_sec - examined.st_mtim.tv_sec < k_last_use_resolution_s) return;
  [[maybe_unused]] const int ignored = ::utimensat(AT_FDCWD, dir.c_str(), nullptr, 0);
}

// Moves a damaged entry aside, but only if `dir` is still the directory we examined: if another
// process already quarantined it, evicted it, or replaced it with a fresh entry, leave that
// alone. (The remaining window between this check and rename() can at worst quarantine a good
// entry, which costs one recompile; it can never make a damaged entry load.)
void quarantine_entry(const fs::path& dir, const struct stat& examined, const fs::path& quarantine_dir,
                      const KernelKey& key, const std::string& problem, std::string* quarantined) {
  struct stat now {};
  if (::stat(dir.c_str(), &now) != 0 || now.st_dev != examined.st_dev || now.st_ino != examined.st_ino) return;
  try {
    make_directories(quarantine_dir);
    const std::string stamp = utc_time(true);
    fs::path target = quarantine_dir / fmt::format("{}.{}", key.entry_name(), stamp);
    // rename() is atomic: readers see the entry either in place or gone, never half moved.
    for (int attempt = 1; ::rename(dir.c_str(), target.c_str()) != 0; ++attempt) {
      const int error = errno;
      if (error == ENOENT) return;  // someone else moved it first
      if ((error != EEXIST && error != ENOTEMPTY) || attempt > 8) fail("cannot move", dir, error);
      target = quarantine_dir / fmt::format("{}.{}-{}", key.entry_name(), stamp, attempt);
    }
    warn(fmt::format("quarantined damaged cache entry {}: {} (moved to {})", dir.string(), problem, target.string()));
    if (quarantined != nullptr) *quarantined = problem;
  } catch (const IoFailure& e) {
    warn(fmt::format("damaged cache entry {}: {}; could not quarantine it: {}", dir.string(), problem, e.what()));
  }
}

}  // namespace

// ---- keys ----

std::string KernelKey::canonical() const { return fields.dump(); }

std::string sha256_hex(const void* data, std::size_t size) {
  static const unsigned char k_empty = 0;
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  if (EVP_Digest(data != nullptr ? data : &k_empty, size, digest, &length, EVP_sha256(), nullptr) != 1) {
    throw Error(ErrorCode::internal, "OpenSSL EVP_Digest(SHA-256) failed");
  }
  std::string hex;
  hex.reserve(2 * length);
  for (unsigned int i = 0; i < length; ++i) hex += fmt::format("{:02x}", digest[i]);
  return hex;
}

KernelKey make_key(const KeyFields& fields, const std::string& readable_name) {
  KernelKey key;
  key.readable_name = readable_name;
  key.fields = {
      {"spec", fields.spec},
      {"tile", fields.tile},
      {"backend", fields.backend},
      {"arch", fields.arch},
      {"compiler", fields.compiler},
      {"compiler_version", fields.compiler_version},
      {"generator_version", fields.generator_version},
      {"template_digest", fields.template_digest},
      {"compile_options", fields.compile_options},
      {"layout_version", k_layout_version},
  };
  const std::string canonical = key.canonical();
  key.hash = sha256_hex(canonical.data(), canonical.size());
  return key;
}

// ---- where the cache lives ----

fs::path default_root() {
  if (std::optional<std::string> dir = read_environment("MLAJIT_CACHE_DIR")) return fs::path(*dir);
  // XDG_CACHE_HOME and HOME are the platform's variables, not ours, so they are not in the
  // MLAJIT_* table. The XDG spec says a relative XDG_CACHE_HOME is to be ignored.
  if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg != nullptr && xdg[0] == '/') {
    return fs::path(xdg) / "mlajit";
  }
  if (const char* home = std::getenv("HOME"); home != nullptr && home[0] != '\0') {
    return fs::path(home) / ".cache" / "mlajit";
  }
  // No HOME (daemons, some containers): the password database. Never a shared /tmp, where
  // another user could plant entries.
  if (const passwd* user = ::getpwuid(::getuid()); user != nullptr && user->pw_dir != nullptr && user->pw_dir[0] != '\0') {
    return fs::path(user->pw_dir) / ".cache" / "mlajit";
  }
  throw Error(ErrorCode::cache_error, "no home directory for the kernel cache: set MLAJIT_CACHE_DIR");
}

std::optional<fs::path> default_system_root() {
  if (std::optional<std::string> dir = read_environment("MLAJIT_CACHE_SYSTEM_DIR")) return fs::path(*dir);
  return std::nullopt;
}

// ---- the store ----

DiskStore::DiskStore(fs::path root, std::optional<fs::path> system_root)
    : root_(std::move(root)), system_root_(std::move(system_root)) {}

fs::path DiskStore::entry_dir(const KernelKey& key) const { return root_ / k_layout_dir / relative_entry_path(key); }

fs::path DiskStore::lock_path(const KernelKey& key) const {
  relative_entry_path(key);  // validates the hash
  return root_ / k_layout_dir / k_locks_dir / (key.hash + ".lock");
}

fs::path DiskStore::quarantine_dir() const { return root_ / k_layout_dir / k_quarantine_dir; }

void DiskStore::set_lock_timeouts(std::chrono::milliseconds report_after, std::chrono::milliseconds give_up_after) {
  lock_report_after_ = report_after;
  lock_give_up_after_ = give_up_after;
}

std::optional<Entry> DiskStore::load_layer(const fs::path& layer_root, const KernelKey& key, bool writable,
                                           bool lock_held, std::string* quarantined) const {
  const fs::path relative = relative_entry_path(key);
  const fs::path dir = layer_root / k_layout_dir / relative;
  struct stat before {};
  // Absent (or unreadable, which is no evidence of damage): a miss.
  if (::stat(dir.c_str(), &before) != 0) return std::nullopt;

  // A shared lock while we read, so that gc (which takes the key exclusively and without
  // waiting) skips this entry instead of removing it under us. If we cannot have it (a publisher
  // or an evictor holds the key this instant, or the cache is read-only) we read anyway: entries
  // appear and disappear only by rename() of a whole directory, so the worst case is that the
  // entry vanishes mid-read and this is a miss; a partial entry can never load.
  KeyLock reading;
  if (writable && !lock_held) reading = KeyLock::try_shared(lock_path(key));

  // Entries appear only by rename() of a complete, fsynced directory (store()), so whatever we
  // find here was complete when published: any missing file or mismatch below is damage (or an
  // eviction racing us, which quarantine_entry() recognises because the directory is gone).
  std::string problem;
  try {
    EntryFiles files = read_entry_files(dir);
    check_entry(files, relative, &key.hash);
    if (writable) touch_last_use(dir, before);
    return Entry{std::move(files.code), std::move(files.manifest)};
  } catch (const IoFailure& e) {
    problem = e.what();
  } catch (const nlohmann::json::exception& e) {
    problem = e.what();
  }
  if (!writable) {
    warn(fmt::format("ignoring damaged entry {} of the read-only system cache: {}", dir.string(), problem));
    return std::nullopt;
  }
  quarantine_entry(dir, before, quarantine_dir(), key, problem, quarantined);
  return std::nullopt;
}

std::optional<Entry> DiskStore::load_any(const KernelKey& key, bool lock_held, std::string* quarantined) const {
  if (system_root_) {
    if (std::optional<Entry> hit = load_layer(*system_root_, key, false, lock_held, nullptr)) return hit;
  }
  return load_layer(root_, key, true, lock_held, quarantined);
}

std::optional<Entry> DiskStore::load(const KernelKey& key, std::string* quarantined) const {
  return load_any(key, false, quarantined);
}

bool DiskStore::store(const KernelKey& key, const Entry& entry) const {
  const fs::path final_dir = entry_dir(key);
  fs::path temp_dir;
  try {
    const std::optional<nlohmann::json> manifest = published_manifest(entry);
    if (!manifest) throw IoFailure("the manifest is not a JSON object");

    // The temporary directory sits inside the root, so the rename below never crosses a
    // filesystem (where it would fail with EXDEV instead of being atomic). gc removes what a
    // crash leaves there once it is an hour old.
    temp_dir = make_unique_directory(root_ / k_layout_dir / k_tmp_dir, key.entry_name());

    write_file_synced(temp_dir / code_file_name(*manifest), std::span(entry.code));
    write_file_synced(temp_dir / k_key_file, to_file_text(key_document(key)));
    write_file_synced(temp_dir / k_manifest_file, to_file_text(*manifest));
    sync_directory(temp_dir);  // the three names are durable before the entry becomes visible

    const fs::path parent = final_dir.parent_path();
    make_directories(parent);
    // The publish point. rename(2) of a directory is atomic within a filesystem: every reader
    // sees either no entry or the complete, fsynced one. It refuses to replace a non-empty
    // directory, so the first publisher wins and its entry is never modified afterwards.
    if (::rename(temp_dir.c_str(), final_dir.c_str()) != 0) {
      const int error = errno;
      if (error == EEXIST || error == ENOTEMPTY) {
        // Another thread or process published this key first; its entry has the same content.
        remove_tree(temp_dir);
        return true;
      }
      fail("cannot rename into", final_dir, error);
    }
    temp_dir.clear();
    // Make the rename itself durable. The entry is already visible to others, so a failure here
    // must not remove it; it only means a crash might forget it, which costs a recompile.
    try {
      sync_directory(parent);
    } catch (const IoFailure&) {
    }
    return true;
  } catch (const IoFailure& e) {
    if (!temp_dir.empty()) remove_tree(temp_dir);
    warn_once("store " + root_.string(),
              fmt::format("could not store kernel cache entry {}: {} (kernels still run; further entries this "
                          "process cannot store are not reported)",
                          key.entry_name(), e.what()));
    return false;
  }
}

Entry DiskStore::get_or_create(const KernelKey& key, const std::function<Entry()>& compile, Outcome* outcome,
                               std::string* quarantined) const {
  Outcome ignored{};
  Outcome& result = outcome != nullptr ? *outcome : ignored;

  if (std::optional<Entry> hit = load_any(key, false, quarantined)) {
    result = Outcome::disk_hit;
    return std::move(*hit);
  }

  KeyLock lock;
  std::string lock_unsupported;
  try {
    const fs::path path = lock_path(key);
    make_directories(path.parent_path());
    lock = KeyLock::acquire(path, key.entry_name(), lock_report_after_, lock_give_up_after_, &lock_unsupported);
  } catch (const IoFailure& e) {
    // No lock file means no usable cache root at all (read-only, not a directory, no
    // permission): compiling without it is slower but correct.
    warn_once("unusable " + root_.string(),
              fmt::format("kernel cache at {} is unusable ({}); compiling {} and any further kernels without caching",
                          root_.string(), e.what(), key.entry_name()));
    Entry entry = compile();
    result = Outcome::compiled;
    return entry;
  }
  if (!lock_unsupported.empty()) {
    // Without a lock two processes may both compile; publishing is still atomic, so the
    // cache stays consistent (the second rename finds the entry and backs off).
    warn_once("lock " + root_.string(),
              fmt::format("cannot lock the kernel cache ({}); {} and other kernels may be compiled more than once",
                          lock_unsupported, key.entry_name()));
  }

  // Look again under the lock: whoever held it before us may have just published this key. The
  // holder releases the lock only after its rename, so if it succeeded we see the entry now.
  if (std::optional<Entry> hit = load_any(key, true, quarantined)) {
    result = Outcome::disk_hit;
    return std::move(*hit);
  }

  // If compile() throws, ~KeyLock releases the lock and nothing was written.
  Entry entry = compile();
  if (std::optional<nlohmann::json> manifest = published_manifest(entry)) entry.manifest = std::move(*manifest);
  // A refusal is reported inside store(); the caller still gets the code object.
  if (store(key, entry) && size_limit_) {
    // Evict while we still hold this key: gc skips keys it cannot lock, so the entry we just
    // published survives even a budget smaller than itself.
    collect_garbage(*this, GcOptions{.max_size = size_limit_});
  }
  // Released only after store(): waiters that wake up find the published entry.
  lock.release();
  result = Outcome::compiled;
  return entry;
}

}  // namespace mlajit::cache
