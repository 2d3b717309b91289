// The POSIX file steps the cache is built from: private directories, fsynced new files, whole-file
// reads, unique temporary directories, and the one exception type that carries an I/O failure.
#pragma once

#include <sys/stat.h>

#include <cstdint>
#include <filesystem>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace mlajit::cache {

// An I/O step that failed, or an entry that failed verification; the message is the reason.
// Callers inside cache/ turn it into a warning, a miss or a report line; it never reaches users raw.
class IoFailure : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

std::string errno_text(int error);
[[noreturn]] void fail(std::string_view what, const std::filesystem::path& path, int error);

// Owns one file descriptor.
class FileDescriptor {
 public:
  FileDescriptor() = default;
  explicit FileDescriptor(int fd) : fd_(fd) {}
  FileDescriptor(FileDescriptor&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  FileDescriptor& operator=(FileDescriptor&& other) noexcept;
  FileDescriptor(const FileDescriptor&) = delete;
  FileDescriptor& operator=(const FileDescriptor&) = delete;
  ~FileDescriptor() { reset(); }

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  // close(), reporting its error: on NFS a failed write may surface only here.
  int close_checked();
  void reset();

 private:
  int fd_ = -1;
};

// mkdir -p, mode 0700 for every directory it creates; existing directories are kept as they are.
void make_directories(const std::filesystem::path& dir);

// A new file (O_EXCL), written completely and fsynced.
void write_file_synced(const std::filesystem::path& path, std::span<const std::uint8_t> bytes);
void write_file_synced(const std::filesystem::path& path, std::string_view text);

// fsync of a directory: makes the names in it (a new file, a rename) durable.
void sync_directory(const std::filesystem::path& dir);

std::vector<std::uint8_t> read_file(const std::filesystem::path& path);
nlohmann::json parse_json(std::span<const std::uint8_t> bytes, const std::string& what);
nlohmann::json read_json(const std::filesystem::path& path);

// Pretty JSON with a final newline; bytes that are not UTF-8 (compile logs) are replaced.
std::string to_file_text(const nlohmann::json& value);

// "2025-01-31T12:00:00Z", or "20250131T120000.123456789Z" for unique file names.
std::string utc_time(bool for_file_name);
// ISO-8601 UTC text of a file time (seconds resolution).
std::string utc_time(const timespec& time);

// 16 random hex digits, distinct across calls, threads and fork()ed children.
std::string random_hex();

// A fresh, empty directory `<parent>/<stem>.<pid>.<random>` (mode 0700); mkdir() never reuses a name.
std::filesystem::path make_unique_directory(const std::filesystem::path& parent, const std::string& stem);

// "mlajit: warning: <line>" on stderr: how the cache reports what it survived.
void warn(const std::string& line);
// The same, but only the first time this process reports `topic` (e.g. an unwritable root), so
// a cache that cannot be written costs one line, not one per kernel.
void warn_once(const std::string& topic, const std::string& line);

// Removes a tree, ignoring errors (the caller has already decided it is garbage).
void remove_tree(const std::filesystem::path& path) noexcept;

}  // namespace mlajit::cache
