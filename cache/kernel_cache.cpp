// Kernel keys (canonical JSON -> SHA-256) and the on-disk store: versioned layout, atomic publish
// by rename, per-key flock() so a kernel compiles once across threads and processes, and
// integrity checks that quarantine damaged entries instead of loading them.
#include "cache/kernel_cache.hpp"

#include <fcntl.h>
#include <pwd.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <random>
#include <span>
#include <stdexcept>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>

#include <fmt/format.h>
#include <openssl/evp.h>

#include "cache/environment.hpp"
#include "codegen/error.hpp"

namespace mlajit::cache {

namespace fs = std::filesystem;

namespace {

// Bumping this makes every existing key a different key (it is part of the hashed fields).
constexpr int k_layout_version = 1;
// The on-disk layout version: a new layout lives beside the old one, never inside it.
constexpr const char* k_layout_dir = "v1";

// An I/O step that failed, or an entry that failed verification; the message is the reason.
// Never leaves this file: store() and load() turn it into a warning and a false / nullopt.
class IoFailure : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

std::string errno_text(int error) { return std::generic_category().message(error); }

[[noreturn]] void fail(std::string_view what, const fs::path& path, int error) {
  throw IoFailure(fmt::format("{} {}: {}", what, path.string(), errno_text(error)));
}

// Owns one file descriptor.
class FileDescriptor {
 public:
  FileDescriptor() = default;
  explicit FileDescriptor(int fd) : fd_(fd) {}
  FileDescriptor(FileDescriptor&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  FileDescriptor& operator=(FileDescriptor&& other) noexcept {
    if (this != &other) {
      reset();
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }
  FileDescriptor(const FileDescriptor&) = delete;
  FileDescriptor& operator=(const FileDescriptor&) = delete;
  ~FileDescriptor() { reset(); }

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  // close(), reporting its error: on NFS a failed write may surface only here.
  int close_checked() {
    const int result = ::close(std::exchange(fd_, -1));
    return result == 0 ? 0 : errno;
  }
  void reset() {
    if (fd_ >= 0) ::close(std::exchange(fd_, -1));
  }

 private:
  int fd_ = -1;
};

// mkdir -p with mode 0700 for every directory this creates (the cache holds code that will be
// executed, so other users must not be able to plant entries). Existing directories are kept as
// they are; a concurrent creator is fine (EEXIST on a directory counts as success).
void make_directories(const fs::path& dir) {
  fs::path prefix;
  for (const fs::path& part : dir.lexically_normal()) {
    prefix /= part;
    if (part.empty()) continue;
    struct stat info {};
    if (::stat(prefix.c_str(), &info) == 0) {
      if (!S_ISDIR(info.st_mode)) fail("cannot create directory", prefix, ENOTDIR);
      continue;
    }
    if (errno != ENOENT) fail("cannot create directory", prefix, errno);
    if (::mkdir(prefix.c_str(), 0700) != 0) {
      const int error = errno;
      if (error == EEXIST && ::stat(prefix.c_str(), &info) == 0 && S_ISDIR(info.st_mode)) continue;
      fail("cannot create directory", prefix, error);
    }
  }
}

// Writes a new file (O_EXCL: never through a stale file or a planted symlink) and fsyncs it, so
// that after a crash the renamed entry cannot hold zero-length files (delayed allocation).
void write_file_synced(const fs::path& path, std::span<const std::uint8_t> bytes) {
  FileDescriptor file(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (!file.valid()) fail("cannot create", path, errno);
  std::size_t written = 0;
  while (written < bytes.size()) {
    const ssize_t n = ::write(file.get(), bytes.data() + written, bytes.size() - written);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail("cannot write", path, errno);
    }
    written += static_cast<std::size_t>(n);
  }
  if (::fsync(file.get()) != 0) fail("cannot fsync", path, errno);
  if (const int error = file.close_checked(); error != 0) fail("cannot close", path, error);
}

void write_file_synced(const fs::path& path, std::string_view text) {
  write_file_synced(path, std::span(reinterpret_cast<const std::uint8_t*>(text.data()), text.size()));
}

// fsync of a directory makes the names in it (a new file, a rename) durable.
void sync_directory(const fs::path& dir) {
  FileDescriptor handle(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!handle.valid()) fail("cannot open directory", dir, errno);
  // Some filesystems cannot fsync a directory (EINVAL); their renames are as durable as they get.
  if (::fsync(handle.get()) != 0 && errno != EINVAL) fail("cannot fsync directory", dir, errno);
}

std::vector<std::uint8_t> read_file(const fs::path& path) {
  FileDescriptor file(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!file.valid()) fail("cannot open", path, errno);
  struct stat info {};
  if (::fstat(file.get(), &info) != 0) fail("cannot stat", path, errno);
  if (!S_ISREG(info.st_mode)) throw IoFailure(path.string() + " is not a regular file");
  std::vector<std::uint8_t> bytes;
  bytes.reserve(static_cast<std::size_t>(info.st_size));
  std::uint8_t buffer[1 << 16];
  for (;;) {
    const ssize_t n = ::read(file.get(), buffer, sizeof buffer);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail("cannot read", path, errno);
    }
    if (n == 0) break;
    bytes.insert(bytes.end(), buffer, buffer + n);
  }
  return bytes;
}

nlohmann::json read_json(const fs::path& path) {
  const std::vector<std::uint8_t> bytes = read_file(path);
  try {
    return nlohmann::json::parse(bytes.begin(), bytes.end());
  } catch (const nlohmann::json::exception& e) {
    throw IoFailure(fmt::format("cannot parse {}: {}", path.string(), e.what()));
  }
}

// Compile logs may hold bytes that are not UTF-8; write them replaced rather than fail.
std::string to_file_text(const nlohmann::json& value) {
  return value.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

// "2025-01-31T12:00:00Z" for manifests; "20250131T120000.123456789Z" for unique file names.
std::string utc_time(bool for_file_name) {
  timespec now{};
  ::clock_gettime(CLOCK_REALTIME, &now);
  std::tm parts{};
  ::gmtime_r(&now.tv_sec, &parts);
  char text[32];
  if (!for_file_name) {
    std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &parts);
    return text;
  }
  std::strftime(text, sizeof text, "%Y%m%dT%H%M%S", &parts);
  return fmt::format("{}.{:09}Z", text, now.tv_nsec);
}

std::string random_hex() {
  // The pid is part of every name built from this, so a fork()ed child repeating its parent's
  // sequence cannot collide; the counter separates calls within one process.
  static std::atomic<std::uint64_t> counter{0};
  thread_local std::mt19937_64 generator(std::random_device{}());
  return fmt::format("{:016x}", generator() ^ (counter.fetch_add(1) * 0x9e3779b97f4a7c15ULL));
}

// One directory name taken from a key; refuses anything that could step outside the root.
std::string path_component(const std::string& value, std::string_view what) {
  if (value.empty() || value == "." || value == ".." || value.find('/') != std::string::npos ||
      value.find('\0') != std::string::npos) {
    throw Error(ErrorCode::internal, fmt::format("kernel key has an unusable {} '{}'", what, value));
  }
  return value;
}

std::string key_string_field(const KernelKey& key, const char* name) {
  const auto it = key.fields.find(name);
  if (it == key.fields.end() || !it->is_string()) {
    throw Error(ErrorCode::internal, fmt::format("kernel key {} has no string field '{}'", key.entry_name(), name));
  }
  return it->get<std::string>();
}

bool is_lower_hex(std::string_view text) {
  return text.find_first_not_of("0123456789abcdef") == std::string_view::npos;
}

// The caller's manifest plus the integrity facts load() verifies. nullopt if it is not an object.
std::optional<nlohmann::json> published_manifest(const Entry& entry) {
  if (!entry.manifest.is_null() && !entry.manifest.is_object()) return std::nullopt;
  nlohmann::json manifest = entry.manifest.is_null() ? nlohmann::json::object() : entry.manifest;
  manifest["size"] = entry.code.size();
  manifest["sha256"] = sha256_hex(entry.code.data(), entry.code.size());
  // Re-storing a loaded entry keeps its creation time.
  if (!manifest.contains("created")) manifest["created"] = utc_time(false);
  return manifest;
}

nlohmann::json key_document(const KernelKey& key) {
  return {{"fields", key.fields}, {"hash", key.hash}, {"readable_name", key.readable_name}};
}

// The per-key lock, held from acquire() until destruction.
//
// Why flock() and this protocol are safe (after jitify's FileLock):
// - flock() locks belong to the open file description, and every acquire() opens the file
//   itself, so two threads of one process exclude each other just as two processes do. (POSIX
//   fcntl() record locks are per process and would let every thread of a process in at once.)
// - The kernel drops a flock() when the last descriptor of its open file description closes,
//   which includes the holder being killed (SIGKILL, OOM, crash): a dead holder never blocks
//   others, and there is no stale-lock timeout to guess. The pid written into the file is only
//   for the "who holds it" message, never for deciding anything.
// - Lock files are never deleted. Unlinking would let a waiter lock the old inode while a new
//   process creates and locks a fresh file at the same path: two holders at once.
// - O_CLOEXEC keeps the descriptor out of programs a compiler might exec; release() does an
//   explicit LOCK_UN so that even a fork()ed child that inherited the descriptor cannot keep the
//   lock alive after we are done.
class KeyLock {
 public:
  // Throws IoFailure when the lock file cannot be opened (the cache is unusable) and
  // Error(cache_error) after `give_up_after` of waiting. `lock_unsupported` is set, with no
  // lock held, when the filesystem refuses flock() itself (some NFS setups).
  static KeyLock acquire(const fs::path& path, const std::string& entry_name,
                         std::chrono::milliseconds report_after, std::chrono::milliseconds give_up_after,
                         std::string* lock_unsupported) {
    KeyLock lock;
    lock.file_ = FileDescriptor(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
    if (!lock.file_.valid()) fail("cannot open lock file", path, errno);

    const auto start = std::chrono::steady_clock::now();
    bool reported = false;
    for (;;) {
      // Non-blocking and polled, rather than a blocking flock(), so we can say who we wait on
      // and give up eventually; 50 ms is invisible next to a compile.
      if (::flock(lock.file_.get(), LOCK_EX | LOCK_NB) == 0) {
        lock.locked_ = true;
        break;
      }
      const int error = errno;
      if (error == EINTR) continue;
      if (error != EWOULDBLOCK) {
        *lock_unsupported = fmt::format("flock {}: {}", path.string(), errno_text(error));
        lock.file_.reset();
        return lock;
      }
      const auto waited = std::chrono::steady_clock::now() - start;
      if (waited >= give_up_after) {
        throw Error(ErrorCode::cache_error,
                    fmt::format("gave up after {} s waiting for kernel cache lock {} (entry {}, held by {})",
                                std::chrono::duration_cast<std::chrono::seconds>(give_up_after).count(),
                                path.string(), entry_name, lock.holder()));
      }
      if (!reported && waited >= report_after) {
        reported = true;
        fmt::print(stderr,
                   "mlajit: waiting for kernel cache lock {} (entry {}), held by {}; "
                   "it is released when that compile finishes or its process dies\n",
                   path.string(), entry_name, lock.holder());
        std::fflush(stderr);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }

    // We hold the lock: only we write the file now. Best effort; it only feeds the message above.
    const std::string pid = fmt::format("{}\n", ::getpid());
    if (::ftruncate(lock.file_.get(), 0) == 0) {
      [[maybe_unused]] const ssize_t n = ::pwrite(lock.file_.get(), pid.data(), pid.size(), 0);
    }
    return lock;
  }

  KeyLock() = default;
  KeyLock(KeyLock&& other) noexcept
      : file_(std::move(other.file_)), locked_(std::exchange(other.locked_, false)) {}
  KeyLock& operator=(KeyLock&& other) noexcept {
    if (this != &other) {
      release();
      file_ = std::move(other.file_);
      locked_ = std::exchange(other.locked_, false);
    }
    return *this;
  }
  KeyLock(const KeyLock&) = delete;
  KeyLock& operator=(const KeyLock&) = delete;
  ~KeyLock() { release(); }

  bool held() const { return locked_; }

  void release() {
    if (locked_) {
      // Clear our pid while still holding the lock, so a waiter never reports a finished
      // process. Only the holder may touch the contents: a waiter that gives up must not.
      [[maybe_unused]] const int truncated = ::ftruncate(file_.get(), 0);
      ::flock(file_.get(), LOCK_UN);
      locked_ = false;
    }
    file_.reset();
  }

 private:
  // "pid N" as written by the holder, or a vaguer phrase while it has not written yet.
  std::string holder() const {
    char text[32] = {};
    const ssize_t n = ::pread(file_.get(), text, sizeof text - 1, 0);
    std::string pid = n > 0 ? std::string(text, static_cast<std::size_t>(n)) : std::string();
    while (!pid.empty() && (pid.back() == '\n' || pid.back() == ' ')) pid.pop_back();
    return pid.empty() ? std::string("another process or thread") : "pid " + pid;
  }

  FileDescriptor file_;
  bool locked_ = false;
};

void warn(const std::string& line) {
  fmt::print(stderr, "mlajit: warning: {}\n", line);
  std::fflush(stderr);
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

// ---- the store ----

DiskStore::DiskStore(fs::path root) : root_(std::move(root)) {}

fs::path DiskStore::entry_dir(const KernelKey& key) const {
  if (key.hash.size() != 64 || !is_lower_hex(key.hash)) {
    throw Error(ErrorCode::internal, fmt::format("kernel key {} has a malformed hash '{}'", key.readable_name, key.hash));
  }
  const std::string target = path_component(key_string_field(key, "backend"), "backend") + "-" +
                             path_component(key_string_field(key, "arch"), "arch");
  return root_ / k_layout_dir / target / key.hash.substr(0, 2) / path_component(key.entry_name(), "entry name");
}

fs::path DiskStore::lock_path(const KernelKey& key) const {
  if (key.hash.size() != 64 || !is_lower_hex(key.hash)) {
    throw Error(ErrorCode::internal, fmt::format("kernel key {} has a malformed hash '{}'", key.readable_name, key.hash));
  }
  return root_ / k_layout_dir / "locks" / (key.hash + ".lock");
}

fs::path DiskStore::quarantine_dir() const { return root_ / k_layout_dir / "quarantine"; }

void DiskStore::set_lock_timeouts(std::chrono::milliseconds report_after, std::chrono::milliseconds give_up_after) {
  lock_report_after_ = report_after;
  lock_give_up_after_ = give_up_after;
}

std::optional<Entry> DiskStore::load(const KernelKey& key) const {
  const fs::path dir = entry_dir(key);
  struct stat before {};
  // Absent (or unreadable, which is no evidence of damage): a miss.
  if (::stat(dir.c_str(), &before) != 0) return std::nullopt;

  // Entries appear only by rename() of a complete, fsynced directory (store()), so whatever we
  // find here was complete when published: any missing file or mismatch below is damage, not a
  // writer in progress.
  std::string problem;
  try {
    const nlohmann::json key_json = read_json(dir / "key.json");
    const nlohmann::json manifest = read_json(dir / "manifest.json");
    std::vector<std::uint8_t> code = read_file(dir / "code.bin");

    if (!key_json.is_object() || !key_json.contains("hash") || key_json["hash"] != key.hash) {
      throw IoFailure(fmt::format("key.json does not name hash {}", key.hash));
    }
    const std::string stored_fields = key_json.contains("fields") ? key_json["fields"].dump() : std::string();
    if (sha256_hex(stored_fields.data(), stored_fields.size()) != key.hash) {
      throw IoFailure("key.json fields do not hash to the key");
    }
    if (!manifest.is_object() || !manifest.contains("size") || !manifest["size"].is_number_unsigned() ||
        !manifest.contains("sha256") || !manifest["sha256"].is_string()) {
      throw IoFailure("manifest.json lacks size or sha256");
    }
    if (manifest["size"].get<std::uint64_t>() != code.size()) {
      throw IoFailure(fmt::format("code.bin has {} bytes, manifest says {}", code.size(),
                                  manifest["size"].get<std::uint64_t>()));
    }
    if (manifest["sha256"].get<std::string>() != sha256_hex(code.data(), code.size())) {
      throw IoFailure("code.bin does not match its sha256 in manifest.json");
    }
    return Entry{std::move(code), manifest};
  } catch (const IoFailure& e) {
    problem = e.what();
  } catch (const nlohmann::json::exception& e) {
    problem = e.what();
  }

  // Move it aside only if it is still the directory we examined: if another process already
  // quarantined it, or replaced it with a fresh entry, leave that alone. (The remaining window
  // between this check and rename() can at worst quarantine a good entry, which costs one
  // recompile; it can never make a damaged entry load.)
  struct stat now {};
  if (::stat(dir.c_str(), &now) != 0 || now.st_dev != before.st_dev || now.st_ino != before.st_ino) {
    return std::nullopt;
  }
  try {
    make_directories(quarantine_dir());
    const std::string stamp = utc_time(true);
    fs::path target = quarantine_dir() / fmt::format("{}.{}", key.entry_name(), stamp);
    // rename() is atomic: readers see the entry either in place or gone, never half moved.
    for (int attempt = 1; ::rename(dir.c_str(), target.c_str()) != 0; ++attempt) {
      const int error = errno;
      if (error == ENOENT) return std::nullopt;  // someone else moved it first
      if ((error != EEXIST && error != ENOTEMPTY) || attempt > 8) fail("cannot move", dir, error);
      target = quarantine_dir() / fmt::format("{}.{}-{}", key.entry_name(), stamp, attempt);
    }
    warn(fmt::format("quarantined damaged cache entry {}: {} (moved to {})", dir.string(), problem, target.string()));
  } catch (const IoFailure& e) {
    warn(fmt::format("damaged cache entry {}: {}; could not quarantine it: {}", dir.string(), problem, e.what()));
  }
  return std::nullopt;
}

bool DiskStore::store(const KernelKey& key, const Entry& entry) const {
  const fs::path final_dir = entry_dir(key);
  fs::path temp_dir;
  try {
    const std::optional<nlohmann::json> manifest = published_manifest(entry);
    if (!manifest) throw IoFailure("the manifest is not a JSON object");

    // The temporary directory sits inside the root, so the rename below never crosses a
    // filesystem (where it would fail with EXDEV instead of being atomic).
    const fs::path temp_root = root_ / k_layout_dir / "tmp";
    make_directories(temp_root);
    // pid + random: unique among concurrent writers; mkdir() fails rather than reuse a name.
    for (int attempt = 0;; ++attempt) {
      temp_dir = temp_root / fmt::format("{}.{}.{}", key.entry_name(), ::getpid(), random_hex());
      if (::mkdir(temp_dir.c_str(), 0700) == 0) break;
      const int error = errno;
      const fs::path failed = std::exchange(temp_dir, fs::path());
      if (error != EEXIST || attempt >= 8) fail("cannot create directory", failed, error);
    }

    write_file_synced(temp_dir / "code.bin", std::span(entry.code));
    write_file_synced(temp_dir / "key.json", to_file_text(key_document(key)));
    write_file_synced(temp_dir / "manifest.json", to_file_text(*manifest));
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
        std::error_code ignored;
        fs::remove_all(temp_dir, ignored);
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
    if (!temp_dir.empty()) {
      std::error_code ignored;
      fs::remove_all(temp_dir, ignored);
    }
    warn(fmt::format("could not store kernel cache entry {}: {}", key.entry_name(), e.what()));
    return false;
  }
}

Entry DiskStore::get_or_create(const KernelKey& key, const std::function<Entry()>& compile, Outcome* outcome) const {
  Outcome ignored{};
  Outcome& result = outcome != nullptr ? *outcome : ignored;

  if (std::optional<Entry> hit = load(key)) {
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
    warn(fmt::format("kernel cache at {} is unusable ({}); compiling {} without caching", root_.string(), e.what(),
                     key.entry_name()));
    Entry entry = compile();
    result = Outcome::compiled;
    return entry;
  }
  if (!lock_unsupported.empty()) {
    // Without a lock two processes may both compile; publishing is still atomic, so the
    // cache stays consistent (the second rename finds the entry and backs off).
    warn(fmt::format("cannot lock the kernel cache ({}); {} may be compiled more than once", lock_unsupported,
                     key.entry_name()));
  }

  // Look again under the lock: whoever held it before us may have just published this key. The
  // holder releases the lock only after its rename, so if it succeeded we see the entry now.
  if (std::optional<Entry> hit = load(key)) {
    result = Outcome::disk_hit;
    return std::move(*hit);
  }

  // If compile() throws, ~KeyLock releases the lock and nothing was written.
  Entry entry = compile();
  if (std::optional<nlohmann::json> manifest = published_manifest(entry)) entry.manifest = std::move(*manifest);
  store(key, entry);  // a refusal is reported inside; the caller still gets the code object
  // Released only after store(): waiters that wake up find the published entry.
  lock.release();
  result = Outcome::compiled;
  return entry;
}

}  // namespace mlajit::cache
