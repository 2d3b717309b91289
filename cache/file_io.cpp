// POSIX file steps of the cache: private directories, fsynced writes, whole-file reads.
#include "cache/file_io.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <ctime>
#include <mutex>
#include <random>
#include <set>
#include <system_error>

#include <fmt/format.h>

namespace mlajit::cache {

namespace fs = std::filesystem;

std::string errno_text(int error) { return std::generic_category().message(error); }

void fail(std::string_view what, const fs::path& path, int error) {
  throw IoFailure(fmt::format("{} {}: {}", what, path.string(), errno_text(error)));
}

FileDescriptor& FileDescriptor::operator=(FileDescriptor&& other) noexcept {
  if (this != &other) {
    reset();
    fd_ = std::exchange(other.fd_, -1);
  }
  return *this;
}

int FileDescriptor::close_checked() {
  const int result = ::close(std::exchange(fd_, -1));
  return result == 0 ? 0 : errno;
}

void FileDescriptor::reset() {
  if (fd_ >= 0) ::close(std::exchange(fd_, -1));
}

// Mode 0700: the cache holds code that will be executed, so other users must not be able to
// plant entries. A concurrent creator is fine (EEXIST on a directory counts as success).
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

// O_EXCL: never writes through a stale file or a planted symlink. The fsync means that after a
// crash a renamed entry cannot hold zero-length files (delayed allocation).
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

nlohmann::json parse_json(std::span<const std::uint8_t> bytes, const std::string& what) {
  try {
    return nlohmann::json::parse(bytes.begin(), bytes.end());
  } catch (const nlohmann::json::exception& e) {
    throw IoFailure(fmt::format("cannot parse {}: {}", what, e.what()));
  }
}

nlohmann::json read_json(const fs::path& path) { return parse_json(read_file(path), path.string()); }

std::string to_file_text(const nlohmann::json& value) {
  return value.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

namespace {

std::string format_utc(std::time_t seconds, const char* format) {
  std::tm parts{};
  ::gmtime_r(&seconds, &parts);
  char text[32];
  std::strftime(text, sizeof text, format, &parts);
  return text;
}

}  // namespace

std::string utc_time(const timespec& time) { return format_utc(time.tv_sec, "%Y-%m-%dT%H:%M:%SZ"); }

std::string utc_time(bool for_file_name) {
  timespec now{};
  ::clock_gettime(CLOCK_REALTIME, &now);
  if (!for_file_name) return utc_time(now);
  return fmt::format("{}.{:09}Z", format_utc(now.tv_sec, "%Y%m%dT%H%M%S"), now.tv_nsec);
}

std::string random_hex() {
  // The pid is part of every name built from this, so a fork()ed child repeating its parent's
  // sequence cannot collide; the counter separates calls within one process.
  static std::atomic<std::uint64_t> counter{0};
  thread_local std::mt19937_64 generator(std::random_device{}());
  return fmt::format("{:016x}", generator() ^ (counter.fetch_add(1) * 0x9e3779b97f4a7c15ULL));
}

fs::path make_unique_directory(const fs::path& parent, const std::string& stem) {
  make_directories(parent);
  // pid + random: unique among concurrent writers; mkdir() fails rather than reuse a name.
  for (int attempt = 0;; ++attempt) {
    const fs::path dir = parent / fmt::format("{}.{}.{}", stem, ::getpid(), random_hex());
    if (::mkdir(dir.c_str(), 0700) == 0) return dir;
    const int error = errno;
    if (error != EEXIST || attempt >= 8) fail("cannot create directory", dir, error);
  }
}

void warn(const std::string& line) {
  fmt::print(stderr, "mlajit: warning: {}\n", line);
  std::fflush(stderr);
}

void warn_once(const std::string& topic, const std::string& line) {
  static std::mutex mutex;
  static std::set<std::string> reported;
  {
    std::lock_guard lock(mutex);
    if (!reported.insert(topic).second) return;
  }
  warn(line);
}

void remove_tree(const fs::path& path) noexcept {
  std::error_code ignored;
  fs::remove_all(path, ignored);
}

}  // namespace mlajit::cache
