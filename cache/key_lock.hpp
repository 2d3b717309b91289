// The per-key flock(): exclusive for whoever compiles, publishes or evicts a key, shared for a
// process reading the key's entry, so that eviction never removes an entry while it is being read.
#pragma once

#include <chrono>
#include <filesystem>
#include <string>

#include "cache/file_io.hpp"

namespace mlajit::cache {

// Why flock() and this protocol are safe (after jitify's FileLock):
// - flock() locks belong to the open file description, and every KeyLock opens the file itself,
//   so two threads of one process exclude each other just as two processes do. (POSIX fcntl()
//   record locks are per process and would let every thread of a process in at once.)
// - The kernel drops a flock() when the last descriptor of its open file description closes,
//   which includes the holder being killed (SIGKILL, OOM, crash): a dead holder never blocks
//   others, and there is no stale-lock timeout to guess. The pid an exclusive holder writes into
//   the file is only for the "who holds it" message, never for deciding anything.
// - Lock files are never deleted (not even by gc). Unlinking would let a waiter lock the old
//   inode while a new process creates and locks a fresh file at the same path: two holders.
// - O_CLOEXEC keeps the descriptor out of programs a compiler might exec; release() does an
//   explicit LOCK_UN so that even a fork()ed child that inherited the descriptor cannot keep the
//   lock alive after we are done.
class KeyLock {
 public:
  // Exclusive, waiting: the compile-once protocol. Throws IoFailure when the lock file cannot be
  // opened (the cache is unusable) and Error(cache_error) after `give_up_after` of waiting.
  // `lock_unsupported` is set, with no lock held, when the filesystem refuses flock() itself.
  static KeyLock acquire(const std::filesystem::path& path, const std::string& entry_name,
                         std::chrono::milliseconds report_after, std::chrono::milliseconds give_up_after,
                         std::string* lock_unsupported);
  // Exclusive, never waiting (eviction): not held() when someone else holds the key in any mode
  // or the lock file cannot be opened.
  static KeyLock try_exclusive(const std::filesystem::path& path);
  // Shared, never waiting (reading an entry): not held() when a writer or evictor holds the key,
  // or when the lock file cannot be opened (a read-only cache). Creates no directories.
  static KeyLock try_shared(const std::filesystem::path& path);

  KeyLock() = default;
  KeyLock(KeyLock&& other) noexcept;
  KeyLock& operator=(KeyLock&& other) noexcept;
  KeyLock(const KeyLock&) = delete;
  KeyLock& operator=(const KeyLock&) = delete;
  ~KeyLock() { release(); }

  bool held() const { return locked_; }
  void release();

 private:
  static KeyLock try_lock(const std::filesystem::path& path, int open_flags, int lock_mode);
  // "pid N" as written by the holder, or a vaguer phrase while it has not written yet.
  std::string holder() const;

  FileDescriptor file_;
  bool locked_ = false;
  bool wrote_pid_ = false;
};

}  // namespace mlajit::cache
