// The per-key flock(): waiting exclusive lock for compiles, non-blocking ones for readers and gc.
#include "cache/key_lock.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <thread>

#include <fmt/format.h>

#include "codegen/error.hpp"

namespace mlajit::cache {

namespace fs = std::filesystem;

KeyLock KeyLock::acquire(const fs::path& path, const std::string& entry_name, std::chrono::milliseconds report_after,
                         std::chrono::milliseconds give_up_after, std::string* lock_unsupported) {
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

  // We hold the lock exclusively: only we write the file now. Best effort; it only feeds the
  // message above.
  const std::string pid = fmt::format("{}\n", ::getpid());
  if (::ftruncate(lock.file_.get(), 0) == 0) {
    [[maybe_unused]] const ssize_t n = ::pwrite(lock.file_.get(), pid.data(), pid.size(), 0);
    lock.wrote_pid_ = true;
  }
  return lock;
}

KeyLock KeyLock::try_lock(const fs::path& path, int open_flags, int lock_mode) {
  KeyLock lock;
  lock.file_ = FileDescriptor(::open(path.c_str(), open_flags | O_CREAT | O_CLOEXEC, 0600));
  if (!lock.file_.valid()) return lock;
  while (::flock(lock.file_.get(), lock_mode | LOCK_NB) != 0) {
    if (errno != EINTR) {
      lock.file_.reset();
      return lock;
    }
  }
  lock.locked_ = true;
  return lock;
}

KeyLock KeyLock::try_exclusive(const fs::path& path) { return try_lock(path, O_RDWR, LOCK_EX); }

// O_RDONLY is enough for flock(), and opening an existing file needs no write permission on the
// directory, so readers of a cache they cannot write still lock where the file exists.
KeyLock KeyLock::try_shared(const fs::path& path) { return try_lock(path, O_RDONLY, LOCK_SH); }

KeyLock::KeyLock(KeyLock&& other) noexcept
    : file_(std::move(other.file_)),
      locked_(std::exchange(other.locked_, false)),
      wrote_pid_(std::exchange(other.wrote_pid_, false)) {}

KeyLock& KeyLock::operator=(KeyLock&& other) noexcept {
  if (this != &other) {
    release();
    file_ = std::move(other.file_);
    locked_ = std::exchange(other.locked_, false);
    wrote_pid_ = std::exchange(other.wrote_pid_, false);
  }
  return *this;
}

void KeyLock::release() {
  if (locked_) {
    // Clear our pid while still holding the lock, so a waiter never reports a finished
    // process. Only the exclusive holder may touch the contents: a waiter that gives up must not.
    if (wrote_pid_) {
      [[maybe_unused]] const int truncated = ::ftruncate(file_.get(), 0);
    }
    ::flock(file_.get(), LOCK_UN);
    locked_ = false;
    wrote_pid_ = false;
  }
  file_.reset();
}

std::string KeyLock::holder() const {
  char text[32] = {};
  const ssize_t n = ::pread(file_.get(), text, sizeof text - 1, 0);
  std::string pid = n > 0 ? std::string(text, static_cast<std::size_t>(n)) : std::string();
  while (!pid.empty() && (pid.back() == '\n' || pid.back() == ' ')) pid.pop_back();
  return pid.empty() ? std::string("another process or thread") : "pid " + pid;
}

}  // namespace mlajit::cache
