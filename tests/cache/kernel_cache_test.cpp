// Tests of cache/kernel_cache: key stability, the disk layout, integrity checks and quarantine,
// and the compile-once protocol across threads and processes. CPU only.
#include "cache/kernel_cache.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <latch>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "codegen/error.hpp"
#include "tests/cache/cache_test_support.hpp"

namespace mlajit::cache {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

using namespace test_support;

class DiskStoreTest : public CacheDirTest {};

// ---- keys ----

TEST(Sha256, KnownVectors) {
  EXPECT_EQ(sha256_hex("", 0), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256_hex(nullptr, 0), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256_hex("abc", 3), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(KernelKey, SameFieldsSameHash) {
  const KernelKey a = golden_key();
  const KernelKey b = golden_key();
  EXPECT_EQ(a.hash, b.hash);
  EXPECT_EQ(a.canonical(), b.canonical());
  EXPECT_EQ(a.hash.size(), 64u);
  EXPECT_EQ(a.hash.find_first_not_of("0123456789abcdef"), std::string::npos);
  EXPECT_EQ(a.hash, sha256_hex(a.canonical().data(), a.canonical().size()));
}

TEST(KernelKey, GoldenHash) {
  const KernelKey key = golden_key();
  EXPECT_EQ(key.canonical(),
            R"({"arch":"sm_90a","backend":"cuda","compile_options":["--std=c++17","-default-device"],)"
            R"("compiler":"nvrtc","compiler_version":"12.8","generator_version":1,"layout_version":1,)"
            R"("spec":{"kv_dtype":"bf16","kv_lora_rank":512,"num_heads":16,"page_size":64,"q_dtype":"bf16",)"
            R"("rope_dim":64,"s_q":1,"variant":"decode"},)"
            R"("template_digest":"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",)"
            R"("tile":{"heads_per_cta":16,"stages":2,"tokens_per_tile":64,"warps":8}})");
  EXPECT_EQ(key.hash, "54b6d305c74a5ee9f71baddd3791fa1cea6519b2e641b5e3615071e6dc5cc71d");
  EXPECT_EQ(key.short_hash(), key.hash.substr(0, 16));
  EXPECT_EQ(key.entry_name(), std::string(k_name) + "." + key.hash.substr(0, 16));
}

TEST(KernelKey, AnySingleFieldChangesHash) {
  const std::string base = golden_key().hash;
  std::vector<std::pair<std::string, KeyFields>> variants;
  auto variant = [&](const std::string& what, auto change) {
    KeyFields fields = golden_fields();
    change(fields);
    variants.emplace_back(what, fields);
  };
  variant("spec", [](KeyFields& f) { f.spec["num_heads"] = 128; });
  variant("spec dtype", [](KeyFields& f) { f.spec["kv_dtype"] = "fp8_e4m3"; });
  variant("tile", [](KeyFields& f) { f.tile["warps"] = 4; });
  variant("backend", [](KeyFields& f) { f.backend = "hip"; });
  variant("arch", [](KeyFields& f) { f.arch = "sm_90"; });
  variant("compiler", [](KeyFields& f) { f.compiler = "hiprtc"; });
  variant("compiler_version", [](KeyFields& f) { f.compiler_version = "12.9"; });
  variant("generator_version", [](KeyFields& f) { f.generator_version = 2; });
  variant("template_digest", [](KeyFields& f) { f.template_digest.back() = '0'; });
  variant("compile_options added", [](KeyFields& f) { f.compile_options.push_back("-lineinfo"); });
  variant("compile_options order", [](KeyFields& f) { std::swap(f.compile_options[0], f.compile_options[1]); });
  variant("compile_options removed", [](KeyFields& f) { f.compile_options.clear(); });
  for (const auto& [what, fields] : variants) {
    EXPECT_NE(make_key(fields, k_name).hash, base) << "changing " << what << " did not change the hash";
  }
}

TEST(KernelKey, ObjectMemberOrderAndReadableNameDoNotMatter) {
  KeyFields reordered = golden_fields();
  reordered.spec = nlohmann::json::object();
  for (const char* name : {"s_q", "page_size", "rope_dim", "kv_lora_rank", "num_heads", "kv_dtype", "q_dtype", "variant"}) {
    reordered.spec[name] = golden_fields().spec[name];
  }
  EXPECT_EQ(make_key(reordered, k_name).hash, golden_key().hash);
  EXPECT_EQ(make_key(golden_fields(), "another_name").hash, golden_key().hash);
}

// ---- default_root ----

class ScopedEnvironment {
 public:
  explicit ScopedEnvironment(std::vector<std::string> names) : names_(std::move(names)) {
    for (const std::string& name : names_) {
      const char* value = std::getenv(name.c_str());
      saved_.emplace_back(value != nullptr, value != nullptr ? value : "");
    }
  }
  ~ScopedEnvironment() {
    for (std::size_t i = 0; i < names_.size(); ++i) {
      if (saved_[i].first) {
        ::setenv(names_[i].c_str(), saved_[i].second.c_str(), 1);
      } else {
        ::unsetenv(names_[i].c_str());
      }
    }
  }

 private:
  std::vector<std::string> names_;
  std::vector<std::pair<bool, std::string>> saved_;
};

TEST(DefaultRoot, FollowsEnvironmentInOrder) {
  ScopedEnvironment scope({"MLAJIT_CACHE_DIR", "XDG_CACHE_HOME", "HOME"});
  ::setenv("HOME", "/home/someone", 1);
  ::setenv("XDG_CACHE_HOME", "/var/cache/someone", 1);
  ::setenv("MLAJIT_CACHE_DIR", "/data/kernels", 1);
  EXPECT_EQ(default_root(), fs::path("/data/kernels"));
  ::setenv("MLAJIT_CACHE_DIR", "", 1);  // empty counts as unset
  EXPECT_EQ(default_root(), fs::path("/var/cache/someone/mlajit"));
  ::unsetenv("MLAJIT_CACHE_DIR");
  EXPECT_EQ(default_root(), fs::path("/var/cache/someone/mlajit"));
  ::setenv("XDG_CACHE_HOME", "relative/cache", 1);  // the XDG spec says to ignore relative paths
  EXPECT_EQ(default_root(), fs::path("/home/someone/.cache/mlajit"));
  ::unsetenv("XDG_CACHE_HOME");
  EXPECT_EQ(default_root(), fs::path("/home/someone/.cache/mlajit"));
  ::unsetenv("HOME");
  const fs::path fallback = default_root();
  EXPECT_EQ(fallback.filename(), "mlajit");
  EXPECT_NE(fallback.string().rfind("/tmp", 0), 0u) << fallback;
}

// ---- the store ----

TEST_F(DiskStoreTest, MissingEntryIsAMiss) {
  const DiskStore store(root_);
  EXPECT_FALSE(store.load(golden_key()).has_value());
  EXPECT_FALSE(fs::exists(store.quarantine_dir()));
}

TEST_F(DiskStoreTest, StoreThenLoadRoundTrips) {
  const DiskStore store(root_);
  const KernelKey key = golden_key();
  const Entry entry = make_entry(std::string("\x7f" "ELF\0binary\xff", 12));
  ASSERT_TRUE(store.store(key, entry));

  const fs::path dir = store.entry_dir(key);
  EXPECT_EQ(dir, root_ / "v1" / "cuda-sm_90a" / key.hash.substr(0, 2) / key.entry_name());
  ASSERT_TRUE(fs::is_directory(dir));
  EXPECT_EQ(read_text(dir / "code.bin"), std::string("\x7f" "ELF\0binary\xff", 12));
  const nlohmann::json key_json = nlohmann::json::parse(read_text(dir / "key.json"));
  EXPECT_EQ(key_json["hash"], key.hash);
  EXPECT_EQ(key_json["fields"], key.fields);
  const nlohmann::json manifest = nlohmann::json::parse(read_text(dir / "manifest.json"));
  EXPECT_EQ(manifest["size"], 12);
  EXPECT_EQ(manifest["sha256"], sha256_hex(entry.code.data(), entry.code.size()));
  EXPECT_EQ(manifest["registers"], 128);
  ASSERT_TRUE(manifest["created"].is_string());
  EXPECT_EQ(manifest["created"].get<std::string>().size(), 20u);  // 2025-01-31T12:00:00Z

  // Directories the cache creates are private to the user.
  for (const fs::path& created : {root_, root_ / "v1", dir.parent_path(), dir}) {
    EXPECT_EQ(fs::status(created).permissions() & fs::perms::all, fs::perms::owner_all) << created;
  }
  EXPECT_EQ(count_entries(root_ / "v1" / "tmp"), 0u) << "a temporary directory was left behind";

  const std::optional<Entry> loaded = store.load(key);
  ASSERT_TRUE(loaded.has_value());
  EXPECT_EQ(loaded->code, entry.code);
  EXPECT_EQ(loaded->manifest, manifest);

  // Another key of another target lives elsewhere and is a miss.
  KeyFields other = golden_fields();
  other.arch = "sm_80";
  EXPECT_FALSE(store.load(make_key(other, k_name)).has_value());
}

TEST_F(DiskStoreTest, SecondStoreOfSameKeyKeepsTheFirst) {
  const DiskStore store(root_);
  const KernelKey key = golden_key();
  ASSERT_TRUE(store.store(key, make_entry("first")));
  EXPECT_TRUE(store.store(key, make_entry("second")));
  EXPECT_EQ(store.load(key)->code, make_entry("first").code);
  EXPECT_EQ(count_entries(root_ / "v1" / "tmp"), 0u);
}

TEST_F(DiskStoreTest, EmptyCodeAndNullManifestRoundTrip) {
  const DiskStore store(root_);
  const KernelKey key = golden_key();
  ASSERT_TRUE(store.store(key, Entry{}));
  const std::optional<Entry> loaded = store.load(key);
  ASSERT_TRUE(loaded.has_value());
  EXPECT_TRUE(loaded->code.empty());
  EXPECT_EQ(loaded->manifest["size"], 0);
}

TEST_F(DiskStoreTest, FlippedByteIsQuarantinedAndRecompiled) {
  const DiskStore store(root_);
  const KernelKey key = golden_key();
  ASSERT_TRUE(store.store(key, make_entry("original code object")));
  const fs::path code = store.entry_dir(key) / "code.bin";
  {
    std::fstream file(code, std::ios::in | std::ios::out | std::ios::binary);
    file.seekp(3);
    file.put('X');
  }

  ::testing::internal::CaptureStderr();
  EXPECT_FALSE(store.load(key).has_value());
  const std::string warning = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(warning.find("mlajit: warning: quarantined damaged cache entry " + store.entry_dir(key).string()),
            std::string::npos)
      << warning;
  EXPECT_NE(warning.find("sha256"), std::string::npos) << warning;
  EXPECT_EQ(count_occurrences(warning, "\n"), 1u) << warning;
  EXPECT_FALSE(fs::exists(store.entry_dir(key)));
  ASSERT_EQ(count_entries(store.quarantine_dir()), 1u);
  EXPECT_EQ(fs::directory_iterator(store.quarantine_dir())->path().filename().string().rfind(key.entry_name() + ".", 0),
            0u);

  int compiles = 0;
  Outcome outcome = Outcome::memory_hit;
  const Entry entry = store.get_or_create(key, [&] { ++compiles; return make_entry("fresh code object"); }, &outcome);
  EXPECT_EQ(outcome, Outcome::compiled);
  EXPECT_EQ(compiles, 1);
  EXPECT_EQ(entry.code, make_entry("fresh code object").code);
  EXPECT_EQ(store.load(key)->code, make_entry("fresh code object").code);
}

TEST_F(DiskStoreTest, OtherDamageIsQuarantined) {
  struct Damage {
    const char* what;
    void (*apply)(const fs::path& dir);
  };
  const Damage damages[] = {
      {"truncated code.bin", [](const fs::path& dir) { fs::resize_file(dir / "code.bin", 4); }},
      {"missing code.bin", [](const fs::path& dir) { fs::remove(dir / "code.bin"); }},
      {"unparsable manifest", [](const fs::path& dir) { fs::resize_file(dir / "manifest.json", 10); }},
      {"manifest without sha256",
       [](const fs::path& dir) {
         nlohmann::json manifest = nlohmann::json::parse(read_text(dir / "manifest.json"));
         manifest.erase("sha256");
         std::ofstream(dir / "manifest.json", std::ios::trunc) << manifest.dump();
       }},
      {"key.json of another key",
       [](const fs::path& dir) {
         nlohmann::json key_json = nlohmann::json::parse(read_text(dir / "key.json"));
         key_json["hash"] = std::string(64, 'a');
         std::ofstream(dir / "key.json", std::ios::trunc) << key_json.dump();
       }},
      {"key.json fields edited",
       [](const fs::path& dir) {
         nlohmann::json key_json = nlohmann::json::parse(read_text(dir / "key.json"));
         key_json["fields"]["arch"] = "sm_80";
         std::ofstream(dir / "key.json", std::ios::trunc) << key_json.dump();
       }},
      {"entry is a file", [](const fs::path& dir) {
         fs::remove_all(dir);
         std::ofstream(dir) << "junk";
       }},
  };
  const DiskStore store(root_);
  const KernelKey key = golden_key();
  std::size_t quarantined = 0;
  for (const Damage& damage : damages) {
    ASSERT_TRUE(store.store(key, make_entry("some code"))) << damage.what;
    damage.apply(store.entry_dir(key));
    ::testing::internal::CaptureStderr();
    EXPECT_FALSE(store.load(key).has_value()) << damage.what;
    const std::string warning = ::testing::internal::GetCapturedStderr();
    EXPECT_NE(warning.find("quarantined damaged cache entry"), std::string::npos) << damage.what << ": " << warning;
    EXPECT_FALSE(fs::exists(store.entry_dir(key))) << damage.what;
    EXPECT_EQ(count_entries(store.quarantine_dir()), ++quarantined) << damage.what;
  }
}

TEST_F(DiskStoreTest, CompileThrowingLeavesNoEntryAndReleasesTheLock) {
  DiskStore store(root_);
  store.set_lock_timeouts(100ms, 2s);
  const KernelKey key = golden_key();
  EXPECT_THROW(store.get_or_create(key, []() -> Entry { throw Error(ErrorCode::compile_failed, "bad source"); }, nullptr),
               Error);
  EXPECT_FALSE(fs::exists(store.entry_dir(key)));
  EXPECT_FALSE(store.load(key).has_value());
  EXPECT_EQ(count_entries(root_ / "v1" / "tmp"), 0u);

  // The lock was released: the next call gets it at once.
  Outcome outcome = Outcome::memory_hit;
  const auto start = std::chrono::steady_clock::now();
  store.get_or_create(key, [] { return make_entry("good"); }, &outcome);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 1s);
  EXPECT_EQ(outcome, Outcome::compiled);
  store.get_or_create(key, [] { return make_entry("unused"); }, &outcome);
  EXPECT_EQ(outcome, Outcome::disk_hit);
}

TEST_F(DiskStoreTest, GetOrCreateReturnsTheSameEntryCompiledOrLoaded) {
  const DiskStore store(root_);
  const KernelKey key = golden_key();
  Outcome outcome = Outcome::memory_hit;
  const Entry compiled = store.get_or_create(key, [] { return make_entry("code"); }, &outcome);
  EXPECT_EQ(outcome, Outcome::compiled);
  const Entry loaded = store.get_or_create(key, []() -> Entry { throw std::logic_error("must not compile"); }, &outcome);
  EXPECT_EQ(outcome, Outcome::disk_hit);
  EXPECT_EQ(loaded.code, compiled.code);
  EXPECT_EQ(loaded.manifest, compiled.manifest);
  // The key's lock file stays (deleting lock files is unsafe) and no holder is recorded.
  EXPECT_TRUE(fs::exists(store.lock_path(key)));
  EXPECT_EQ(fs::file_size(store.lock_path(key)), 0u);
}

TEST_F(DiskStoreTest, EightThreadsCompileOnce) {
  const DiskStore store(root_);
  const KernelKey key = golden_key();
  std::atomic<int> compiles{0};
  std::atomic<int> compiled_outcomes{0};
  std::atomic<int> disk_hits{0};
  std::atomic<int> wrong_code{0};
  std::latch start(8);
  std::vector<std::thread> threads;
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&] {
      start.arrive_and_wait();
      Outcome outcome = Outcome::memory_hit;
      const Entry entry = store.get_or_create(
          key,
          [&] {
            ++compiles;
            std::this_thread::sleep_for(300ms);  // long enough that everyone else has to wait
            return make_entry("shared code");
          },
          &outcome);
      if (entry.code != make_entry("shared code").code) ++wrong_code;
      (outcome == Outcome::compiled ? compiled_outcomes : disk_hits)++;
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(compiles.load(), 1);
  EXPECT_EQ(compiled_outcomes.load(), 1);
  EXPECT_EQ(disk_hits.load(), 7);
  EXPECT_EQ(wrong_code.load(), 0);
}

TEST_F(DiskStoreTest, FourProcessesCompileOnce) {
  const DiskStore store(root_);
  const KernelKey key = golden_key();
  const fs::path compile_log = base_ / "compiles";
  int go[2];
  ASSERT_EQ(::pipe(go), 0);

  std::vector<pid_t> children;
  for (int i = 0; i < 4; ++i) {
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      ::close(go[1]);
      char byte;
      while (::read(go[0], &byte, 1) < 0) {  // blocks until the parent closes its end: all start together
      }
      int status = 3;
      try {
        Outcome outcome = Outcome::memory_hit;
        const Entry entry = store.get_or_create(
            key,
            [&] {
              // One byte per compile, appended atomically (O_APPEND), counted by the parent.
              const int log = ::open(compile_log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
              [[maybe_unused]] const ssize_t n = ::write(log, "c", 1);
              ::close(log);
              std::this_thread::sleep_for(300ms);
              return make_entry("process code");
            },
            &outcome);
        status = entry.code != make_entry("process code").code ? 4 : 10 + static_cast<int>(outcome);
      } catch (...) {
        status = 5;
      }
      ::_exit(status);  // no gtest teardown or atexit handlers in the child
    }
    children.push_back(pid);
  }
  ::close(go[0]);
  ::close(go[1]);

  int compiled = 0;
  int hits = 0;
  for (const pid_t pid : children) {
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status));
    const int code = WEXITSTATUS(status);
    if (code == 10 + static_cast<int>(Outcome::compiled)) {
      ++compiled;
    } else if (code == 10 + static_cast<int>(Outcome::disk_hit)) {
      ++hits;
    } else {
      ADD_FAILURE() << "child exited with " << code;
    }
  }
  EXPECT_EQ(read_text(compile_log), "c") << "compile() must run exactly once across processes";
  EXPECT_EQ(compiled, 1);
  EXPECT_EQ(hits, 3);
}

TEST_F(DiskStoreTest, KilledLockHolderDoesNotBlockOthers) {
  DiskStore store(root_);
  const KernelKey key = golden_key();
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    try {
      store.get_or_create(key, []() -> Entry { ::raise(SIGKILL); return {}; }, nullptr);
    } catch (...) {
    }
    ::_exit(1);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << "the child should have died holding the lock";
  EXPECT_EQ(read_text(store.lock_path(key)), std::to_string(child) + "\n") << "the holder records its pid";

  store.set_lock_timeouts(100ms, 5s);
  Outcome outcome = Outcome::memory_hit;
  const auto start = std::chrono::steady_clock::now();
  const Entry entry = store.get_or_create(key, [] { return make_entry("after the crash"); }, &outcome);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 1s);
  EXPECT_EQ(outcome, Outcome::compiled);
  EXPECT_EQ(entry.code, make_entry("after the crash").code);
}

TEST_F(DiskStoreTest, WaiterReportsTheHolderOnceThenGivesUp) {
  DiskStore store(root_);
  const KernelKey key = golden_key();
  fs::create_directories(store.lock_path(key).parent_path());
  // Hold the key's lock as another process would (a separate open file description conflicts
  // even within this process).
  const int holder = ::open(store.lock_path(key).c_str(), O_RDWR | O_CREAT, 0600);
  ASSERT_GE(holder, 0);
  ASSERT_EQ(::flock(holder, LOCK_EX), 0);
  ASSERT_EQ(::write(holder, "4242\n", 5), 5);

  store.set_lock_timeouts(100ms, 800ms);
  bool compiled = false;
  ::testing::internal::CaptureStderr();
  try {
    store.get_or_create(key, [&] { compiled = true; return make_entry("x"); }, nullptr);
    ADD_FAILURE() << "get_or_create should have given up";
  } catch (const Error& error) {
    EXPECT_EQ(error.code(), ErrorCode::cache_error);
    EXPECT_NE(std::string(error.what()).find("pid 4242"), std::string::npos) << error.what();
  }
  const std::string report = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(read_text(store.lock_path(key)), "4242\n") << "a waiter that gives up must not touch the holder's pid";
  ::close(holder);
  EXPECT_FALSE(compiled);
  EXPECT_EQ(count_occurrences(report, "mlajit: waiting for kernel cache lock"), 1u) << report;
  EXPECT_NE(report.find("held by pid 4242"), std::string::npos) << report;
}

TEST_F(DiskStoreTest, RootThatCannotBeCreatedStillCompiles) {
  // A root below a regular file: mkdir fails with ENOTDIR even for root (unlike chmod).
  std::ofstream(base_ / "a_file") << "not a directory";
  const DiskStore store(base_ / "a_file" / "cache");
  const KernelKey key = golden_key();

  ::testing::internal::CaptureStderr();
  EXPECT_FALSE(store.store(key, make_entry("code")));
  std::string warning = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(warning.rfind("mlajit: warning: could not store kernel cache entry " + key.entry_name() + ": ", 0), 0u)
      << warning;
  EXPECT_EQ(count_occurrences(warning, "\n"), 1u) << warning;

  Outcome outcome = Outcome::memory_hit;
  ::testing::internal::CaptureStderr();
  const Entry entry = store.get_or_create(key, [] { return make_entry("code"); }, &outcome);
  warning = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(outcome, Outcome::compiled);
  EXPECT_EQ(entry.code, make_entry("code").code);
  EXPECT_NE(warning.find("mlajit: warning:"), std::string::npos) << warning;
  EXPECT_FALSE(store.load(key).has_value());
}

TEST_F(DiskStoreTest, ReadOnlyRootStillCompiles) {
  if (::geteuid() == 0) {
    GTEST_SKIP() << "running as root, where chmod 0500 does not stop writes; "
                    "RootThatCannotBeCreatedStillCompiles covers the unwritable root instead";
  }
  fs::create_directories(root_);
  fs::permissions(root_, fs::perms::owner_read | fs::perms::owner_exec);
  made_read_only_.push_back(root_);
  const DiskStore store(root_);
  Outcome outcome = Outcome::memory_hit;
  ::testing::internal::CaptureStderr();
  const Entry entry = store.get_or_create(golden_key(), [] { return make_entry("code"); }, &outcome);
  const std::string warning = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(outcome, Outcome::compiled);
  EXPECT_EQ(entry.code, make_entry("code").code);
  EXPECT_NE(warning.find("mlajit: warning:"), std::string::npos) << warning;
}

TEST_F(DiskStoreTest, FailedPublishLeavesNothingHalfWritten) {
  // The root and its lock and tmp directories work, but the target's directory is blocked by a
  // file: the entry is written to tmp, the rename cannot happen, and tmp must be cleaned up.
  const DiskStore store(root_);
  const KernelKey key = golden_key();
  fs::create_directories(root_ / "v1");
  std::ofstream(root_ / "v1" / "cuda-sm_90a") << "in the way";

  Outcome outcome = Outcome::memory_hit;
  ::testing::internal::CaptureStderr();
  const Entry entry = store.get_or_create(key, [] { return make_entry("code"); }, &outcome);
  const std::string warning = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(outcome, Outcome::compiled);
  EXPECT_EQ(entry.code, make_entry("code").code);
  EXPECT_NE(warning.find("could not store kernel cache entry " + key.entry_name()), std::string::npos) << warning;
  EXPECT_EQ(count_entries(root_ / "v1" / "tmp"), 0u) << "the temporary directory was left behind";
}

TEST_F(DiskStoreTest, NonObjectManifestIsRefusedWithAWarning) {
  const DiskStore store(root_);
  Entry entry = make_entry("code");
  entry.manifest = nlohmann::json::array({1, 2});
  ::testing::internal::CaptureStderr();
  EXPECT_FALSE(store.store(golden_key(), entry));
  const std::string warning = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(warning.find("not a JSON object"), std::string::npos) << warning;
  EXPECT_FALSE(fs::exists(store.entry_dir(golden_key())));
}

// ---- code file names, quarantine reports, layers, last use ----

TEST_F(DiskStoreTest, CodeFileIsNamedByFormat) {
  const DiskStore store(root_);
  const struct {
    int heads;
    const char* format;
    const char* file;
  } cases[] = {{1, "cubin", "code.cubin"}, {2, "hsaco", "code.hsaco"}, {3, "", "code.bin"}, {4, "../../evil", "code.bin"}};
  for (const auto& c : cases) {
    const KernelKey key = key_with_heads(c.heads);
    ASSERT_TRUE(store.store(key, make_entry("code", c.format))) << c.format;
    EXPECT_EQ(read_text(store.entry_dir(key) / c.file), "code") << c.format;
    EXPECT_EQ(count_entries(store.entry_dir(key)), 3u) << c.format;
    ASSERT_TRUE(store.load(key).has_value()) << c.format;
  }
}

TEST_F(DiskStoreTest, GetOrCreateReportsWhatItQuarantined) {
  const DiskStore store(root_);
  const KernelKey key = golden_key();
  ASSERT_TRUE(store.store(key, make_entry("original", "cubin")));
  fs::resize_file(store.entry_dir(key) / "code.cubin", 3);

  std::string quarantined;
  Outcome outcome = Outcome::memory_hit;
  ::testing::internal::CaptureStderr();
  store.get_or_create(key, [] { return make_entry("recompiled", "cubin"); }, &outcome, &quarantined);
  ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(outcome, Outcome::compiled);
  EXPECT_NE(quarantined.find("code.cubin has 3 bytes"), std::string::npos) << quarantined;

  quarantined.clear();
  store.get_or_create(key, []() -> Entry { throw std::logic_error("must not compile"); }, &outcome, &quarantined);
  EXPECT_EQ(outcome, Outcome::disk_hit);
  EXPECT_TRUE(quarantined.empty()) << quarantined;
}

TEST_F(DiskStoreTest, SystemLayerIsSearchedFirstAndNeverWritten) {
  const fs::path system_root = base_ / "system";
  ASSERT_TRUE(DiskStore(system_root).store(golden_key(), make_entry("from the system layer", "cubin")));
  ASSERT_TRUE(DiskStore(root_).store(golden_key(), make_entry("from the user layer", "cubin")));
  const DiskStore layered(root_, system_root);

  Outcome outcome = Outcome::memory_hit;
  const Entry hit = layered.get_or_create(golden_key(), []() -> Entry { throw std::logic_error("no"); }, &outcome);
  EXPECT_EQ(outcome, Outcome::disk_hit);
  EXPECT_EQ(hit.code, make_entry("from the system layer").code);

  // A miss in both layers is compiled into the user layer only.
  const KernelKey other = key_with_heads(32);
  layered.get_or_create(other, [] { return make_entry("compiled", "cubin"); }, &outcome);
  EXPECT_EQ(outcome, Outcome::compiled);
  EXPECT_TRUE(fs::is_directory(layered.entry_dir(other)));
  EXPECT_FALSE(DiskStore(system_root).load(other).has_value());
  EXPECT_FALSE(fs::exists(system_root / "v1" / "locks")) << "nothing may be written into the system layer";
}

TEST_F(DiskStoreTest, DamagedSystemEntryIsSkippedNotMoved) {
  const fs::path system_root = base_ / "system";
  const DiskStore system(system_root);
  ASSERT_TRUE(system.store(golden_key(), make_entry("system code", "cubin")));
  fs::resize_file(system.entry_dir(golden_key()) / "code.cubin", 2);
  const DiskStore layered(root_, system_root);

  ::testing::internal::CaptureStderr();
  EXPECT_FALSE(layered.load(golden_key()).has_value());
  const std::string warning = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(warning.find("ignoring damaged entry " + system.entry_dir(golden_key()).string() +
                         " of the read-only system cache"),
            std::string::npos)
      << warning;
  EXPECT_TRUE(fs::is_directory(system.entry_dir(golden_key()))) << "the system layer is never modified";
  EXPECT_FALSE(fs::exists(system.quarantine_dir()));
}

TEST_F(DiskStoreTest, HitRefreshesTheLastUseStampAtMostOnceAMinute) {
  const DiskStore store(root_);
  const KernelKey key = golden_key();
  ASSERT_TRUE(store.store(key, make_entry("code", "cubin")));
  const fs::path dir = store.entry_dir(key);

  age(dir, 30);
  const long recent = mtime_seconds(dir);
  ASSERT_TRUE(store.load(key).has_value());
  EXPECT_EQ(mtime_seconds(dir), recent) << "a stamp younger than a minute is left alone";

  age(dir, 2 * 3600);
  ASSERT_TRUE(store.load(key).has_value());
  EXPECT_GT(mtime_seconds(dir), recent) << "a hit refreshes an old stamp";
}

TEST_F(DiskStoreTest, UnusableRootWarnsOncePerProcess) {
  std::ofstream(base_ / "a_file") << "not a directory";
  const DiskStore store(base_ / "a_file" / "cache");
  ::testing::internal::CaptureStderr();
  for (int heads : {1, 2, 3}) {
    Outcome outcome = Outcome::memory_hit;
    const Entry entry = store.get_or_create(key_with_heads(heads), [] { return make_entry("code"); }, &outcome);
    EXPECT_EQ(outcome, Outcome::compiled);
    EXPECT_EQ(entry.code, make_entry("code").code);
  }
  const std::string warning = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(count_occurrences(warning, "mlajit: warning:"), 1u) << warning;
  EXPECT_NE(warning.find("without caching"), std::string::npos) << warning;
}

}  // namespace
}  // namespace mlajit::cache
