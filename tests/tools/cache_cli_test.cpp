// Compile tier: the built `mlajit` binary against one cache under what a serving node does to
// it — eight ranks warming at once, a warm killed mid-run, a flipped byte, shipping a bundle,
// a read-only system layer, MLAJIT_DISABLE_JIT, an unwritable cache directory. NVRTC, no GPU.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "cache/inventory.hpp"
#include "runtime/backend.hpp"
#include "tests/cache/cache_test_support.hpp"

extern char** environ;

namespace mlajit {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using cache::test_support::count_entries;
using cache::test_support::count_occurrences;
using cache::test_support::read_text;

constexpr const char* k_cli = MLAJIT_CLI_PATH;
constexpr std::size_t k_catalog_size = 6;  // entries of tests/tools/small_catalog.json

fs::path catalog() { return fs::path(MLAJIT_TEST_DATA_DIR) / "tools" / "small_catalog.json"; }

struct CliRun {
  int status = -1;  // exit code, or 128 + signal
  std::string out;
  std::string err;

  nlohmann::json json() const {
    try {
      return nlohmann::json::parse(out);
    } catch (const nlohmann::json::exception& e) {
      ADD_FAILURE() << "not JSON (" << e.what() << "):\n" << out << "\nstderr:\n" << err;
      return nlohmann::json::object();
    }
  }
};

// One `mlajit` process with stdout and stderr in files. The environment is ours minus every
// MLAJIT_* variable, plus `env`.
class CliProcess {
 public:
  CliProcess(const std::vector<std::string>& args, const std::map<std::string, std::string>& env,
             const fs::path& scratch) {
    static int counter = 0;
    out_ = scratch / ("out." + std::to_string(++counter));
    err_ = scratch / ("err." + std::to_string(counter));
    std::vector<std::string> environment;
    for (char** e = environ; *e != nullptr; ++e) {
      if (std::string_view(*e).rfind("MLAJIT_", 0) != 0) environment.emplace_back(*e);
    }
    for (const auto& [name, value] : env) environment.push_back(name + "=" + value);
    std::vector<std::string> argv = {k_cli};
    argv.insert(argv.end(), args.begin(), args.end());

    std::vector<char*> argv_ptrs, env_ptrs;
    for (std::string& a : argv) argv_ptrs.push_back(a.data());
    argv_ptrs.push_back(nullptr);
    for (std::string& e : environment) env_ptrs.push_back(e.data());
    env_ptrs.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 1, out_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    posix_spawn_file_actions_addopen(&actions, 2, err_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    const int error = ::posix_spawn(&pid_, k_cli, &actions, nullptr, argv_ptrs.data(), env_ptrs.data());
    posix_spawn_file_actions_destroy(&actions);
    if (error != 0) ADD_FAILURE() << "cannot start " << k_cli << ": " << std::strerror(error);
  }

  pid_t pid() const { return pid_; }

  CliRun wait() {
    CliRun run;
    int status = 0;
    if (::waitpid(pid_, &status, 0) != pid_) return run;
    run.status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    run.out = read_text(out_);
    run.err = read_text(err_);
    return run;
  }

 private:
  pid_t pid_ = -1;
  fs::path out_, err_;
};

class CacheCliTest : public cache::test_support::CacheDirTest {
 protected:
  void SetUp() override {
    if (!runtime::backend(Backend::cuda).compiler_available()) {
      GTEST_SKIP() << "NVRTC not found on this machine; the mlajit cache CLI tests need it to compile";
    }
    CacheDirTest::SetUp();
    scratch_ = base_ / "scratch";
    fs::create_directories(scratch_);
  }

  std::map<std::string, std::string> env_for(const fs::path& cache_dir) const {
    return {{"MLAJIT_CACHE_DIR", cache_dir.string()}};
  }

  CliRun run(const std::vector<std::string>& args, const std::map<std::string, std::string>& env) {
    return CliProcess(args, env, scratch_).wait();
  }
  CliRun run(const std::vector<std::string>& args) { return run(args, env_for(root_)); }

  std::vector<std::string> warm_args(const std::string& jobs = "2") const {
    return {"warm", "--catalog", catalog().string(), "--arch", "sm_90a", "--json", "--jobs", jobs};
  }

  // Warms the small catalogue into `cache_dir` and checks that it all compiled.
  void warm_into(const fs::path& cache_dir) {
    const CliRun warm = run(warm_args(), env_for(cache_dir));
    ASSERT_EQ(warm.status, 0) << warm.err;
    ASSERT_EQ(warm.json()["compiled"], k_catalog_size) << warm.out;
  }

  void expect_verify_clean(const fs::path& cache_dir) {
    const CliRun verify = run({"cache", "verify", "--json"}, env_for(cache_dir));
    EXPECT_EQ(verify.status, 0) << verify.out << verify.err;
    EXPECT_EQ(verify.json()["bad"], nlohmann::json::array()) << verify.out;
  }

  fs::path scratch_;
};

TEST_F(CacheCliTest, EightConcurrentWarmsCompileEveryEntryExactlyOnce) {
  std::vector<std::unique_ptr<CliProcess>> ranks;
  for (int rank = 0; rank < 8; ++rank) ranks.push_back(std::make_unique<CliProcess>(warm_args(), env_for(root_), scratch_));
  int compiled = 0;
  for (auto& rank : ranks) {
    const CliRun warm = rank->wait();
    ASSERT_EQ(warm.status, 0) << warm.err;
    const nlohmann::json result = warm.json();
    EXPECT_EQ(result["failed"], 0) << warm.out;
    EXPECT_EQ(result["compiled"].get<int>() + result["cached"].get<int>(), int(k_catalog_size)) << warm.out;
    compiled += result["compiled"].get<int>();
  }
  EXPECT_EQ(compiled, int(k_catalog_size)) << "each entry must be compiled by exactly one of the 8 processes";
  EXPECT_EQ(cache::list_entries(root_).size(), k_catalog_size);
  EXPECT_EQ(count_entries(root_ / "v1" / "tmp"), 0u);
  expect_verify_clean(root_);
}

// hipRTC (ROCm 5.2) crashed when two of its compiles overlapped in a process that had loaded
// NVRTC; the HIP backend now runs its compiles one at a time. Both vendors, both orders, 2 jobs.
TEST_F(CacheCliTest, WarmForBothVendorsAtOnceCompilesEverything) {
  if (!runtime::backend(Backend::hip).compiler_available()) GTEST_SKIP() << "hipRTC not found on this machine";
  for (const auto& archs : {std::vector<std::string>{"gfx90a", "sm_90a"}, std::vector<std::string>{"sm_90a", "gfx90a"}}) {
    const fs::path dir = base_ / ("both-" + archs[0]);
    const CliRun warm = run({"warm", "--catalog", catalog().string(), "--arch", archs[0], "--arch", archs[1], "--json",
                             "--jobs", "2"},
                            env_for(dir));
    ASSERT_EQ(warm.status, 0) << archs[0] << " first: " << warm.err;
    EXPECT_EQ(warm.json()["compiled"], 2 * k_catalog_size) << warm.out;
  }
}

TEST_F(CacheCliTest, WarmKilledMidRunLeavesNoPartialEntryAndTheNextWarmCompletes) {
  CliProcess victim(warm_args("1"), env_for(root_), scratch_);
  // Kill it once the first entry is published and the next compile is under way.
  const auto deadline = std::chrono::steady_clock::now() + 120s;
  while (cache::list_entries(root_).empty() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(5ms);
  }
  std::this_thread::sleep_for(100ms);
  ASSERT_EQ(::kill(victim.pid(), SIGKILL), 0);
  const CliRun killed = victim.wait();
  ASSERT_EQ(killed.status, 128 + SIGKILL) << "the warm finished before it could be killed";
  const std::size_t published = cache::list_entries(root_).size();
  EXPECT_GE(published, 1u);
  EXPECT_LT(published, k_catalog_size);
  expect_verify_clean(root_);

  const CliRun next = run(warm_args());
  ASSERT_EQ(next.status, 0) << next.err;
  const nlohmann::json result = next.json();
  EXPECT_EQ(result["failed"], 0);
  EXPECT_EQ(result["cached"], published);
  EXPECT_EQ(result["compiled"], k_catalog_size - published);
  expect_verify_clean(root_);
}

TEST_F(CacheCliTest, FlippedByteIsNamedByVerifyAndRecompiledByTheNextWarm) {
  warm_into(root_);
  const cache::EntryInfo victim = cache::list_entries(root_).at(2);
  const fs::path code = victim.dir / "code.cubin";
  {
    std::fstream file(code, std::ios::in | std::ios::out | std::ios::binary);
    file.seekg(static_cast<std::streamoff>(fs::file_size(code) / 2));
    const char byte = static_cast<char>(file.peek());
    file.seekp(static_cast<std::streamoff>(fs::file_size(code) / 2));
    file.put(static_cast<char>(byte ^ 0x01));
  }

  const CliRun verify = run({"cache", "verify"});
  EXPECT_EQ(verify.status, 1) << verify.out;
  EXPECT_NE(verify.out.find(victim.relative.string() + ": code.cubin does not match its sha256"), std::string::npos)
      << verify.out;
  const CliRun verify_json = run({"cache", "verify", "--json"});
  EXPECT_EQ(verify_json.status, 1);
  ASSERT_EQ(verify_json.json()["bad"].size(), 1u) << verify_json.out;
  EXPECT_EQ(verify_json.json()["bad"][0]["name"], victim.name);

  const CliRun warm = run(warm_args());
  ASSERT_EQ(warm.status, 0) << warm.err;
  const nlohmann::json result = warm.json();
  EXPECT_EQ(result["compiled"], 1);
  EXPECT_EQ(result["recompiled"], 1);
  EXPECT_EQ(result["cached"], k_catalog_size - 1);
  int notes = 0;
  for (const nlohmann::json& entry : result["entries"]) {
    if (!entry.contains("note")) continue;
    ++notes;
    EXPECT_EQ(victim.name.rfind(entry["name"].get<std::string>() + ".", 0), 0u) << entry.dump();
    EXPECT_EQ(entry["outcome"], "compiled");
    EXPECT_EQ(entry["note"].get<std::string>().rfind("recompiled (damaged entry quarantined: ", 0), 0u) << entry.dump();
  }
  EXPECT_EQ(notes, 1);
  EXPECT_NE(warm.err.find("quarantined damaged cache entry"), std::string::npos) << warm.err;
  EXPECT_EQ(count_entries(root_ / "v1" / "quarantine"), 1u);
  expect_verify_clean(root_);
}

TEST_F(CacheCliTest, ExportImportIntoAnEmptyCacheThenWarmFindsEverythingCached) {
  warm_into(root_);
  const fs::path bundle = base_ / "warmed.mlajit";
  const CliRun exported = run({"cache", "export", bundle.string(), "--json"});
  ASSERT_EQ(exported.status, 0) << exported.err;
  EXPECT_EQ(exported.json()["entries"], k_catalog_size);
  EXPECT_EQ(exported.json()["archs"], nlohmann::json({"cuda-sm_90a"}));

  const fs::path other = base_ / "other";
  const CliRun imported = run({"cache", "import", bundle.string(), "--json"}, env_for(other));
  ASSERT_EQ(imported.status, 0) << imported.err;
  EXPECT_EQ(imported.json()["installed"].size(), k_catalog_size);

  const CliRun warm = run(warm_args(), env_for(other));
  ASSERT_EQ(warm.status, 0) << warm.err;
  EXPECT_EQ(warm.json()["cached"], k_catalog_size);
  EXPECT_EQ(warm.json()["compiled"], 0);
  expect_verify_clean(other);
}

TEST_F(CacheCliTest, DisableJitServesOnlyWarmedKernelsFromTheSystemLayer) {
  std::map<std::string, std::string> env = env_for(root_);
  env["MLAJIT_DISABLE_JIT"] = "1";
  const CliRun refused = run({"compile", "--arch", "sm_90a", "--heads", "16"}, env);
  EXPECT_EQ(refused.status, 2);
  EXPECT_NE(refused.err.find("mlajit: error: MLAJIT_DISABLE_JIT=1 and the kernel cache has no entry for mla_decode_"),
            std::string::npos)
      << refused.err;
  EXPECT_TRUE(cache::list_entries(root_).empty());

  // An admin's warmed cache as the system layer, an empty user cache, JIT off.
  const fs::path system = base_ / "system";
  warm_into(system);
  env["MLAJIT_CACHE_SYSTEM_DIR"] = system.string();
  const CliRun warm = run(warm_args(), env);
  ASSERT_EQ(warm.status, 0) << warm.err;
  EXPECT_EQ(warm.json()["cached"], k_catalog_size);
  EXPECT_EQ(warm.json()["failed"], 0);
  EXPECT_TRUE(cache::list_entries(root_).empty()) << "hits in the system layer write nothing";

  const CliRun unwarmed = run({"compile", "--arch", "sm_90a", "--heads", "8", "--json"}, env);
  EXPECT_EQ(unwarmed.status, 2);
  EXPECT_NE(unwarmed.err.find("and the system layer " + system.string()), std::string::npos) << unwarmed.err;

  env.erase("MLAJIT_DISABLE_JIT");
  const CliRun compiled = run({"compile", "--arch", "sm_90a", "--heads", "8", "--json"}, env);
  ASSERT_EQ(compiled.status, 0) << compiled.err;
  EXPECT_EQ(cache::list_entries(root_).size(), 1u) << "a compile lands in the user layer";
  EXPECT_EQ(cache::list_entries(system).size(), k_catalog_size) << "and never in the system layer";
}

TEST_F(CacheCliTest, UnwritableCacheDirectoryStillWarmsWithOneWarning) {
  std::ofstream(base_ / "a_file") << "not a directory";
  const CliRun warm = run(warm_args(), env_for(base_ / "a_file" / "cache"));
  ASSERT_EQ(warm.status, 0) << warm.err;
  EXPECT_EQ(warm.json()["compiled"], k_catalog_size);
  EXPECT_EQ(warm.json()["failed"], 0);
  EXPECT_EQ(count_occurrences(warm.err, "mlajit: warning:"), 1u) << warm.err;
}

TEST_F(CacheCliTest, LsStatExplainAndGcSpeakJson) {
  warm_into(root_);
  const nlohmann::json ls = run({"cache", "ls", "--json"}).json();
  ASSERT_EQ(ls["entries"].size(), k_catalog_size);
  for (const nlohmann::json& entry : ls["entries"]) {
    EXPECT_EQ(entry["arch"], "sm_90a");
    EXPECT_GT(entry["bytes"].get<std::uint64_t>(), 1000u);
    EXPECT_EQ(entry["created"].get<std::string>().size(), 20u);
    EXPECT_EQ(entry["last_use"].get<std::string>().size(), 20u);
  }
  const nlohmann::json stat = run({"cache", "stat", "--json"}).json();
  EXPECT_EQ(stat["targets"]["cuda-sm_90a"]["entries"], k_catalog_size);
  EXPECT_EQ(stat["entries"], k_catalog_size);

  const nlohmann::json hit = run({"cache", "explain", "--arch", "sm_90a", "--heads", "16", "--json"}).json();
  EXPECT_EQ(hit["status"], "hit");
  EXPECT_EQ(hit["layer"], "user");
  const CliRun miss = run({"cache", "explain", "--arch", "sm_90a", "--heads", "24", "--json"});
  ASSERT_EQ(miss.status, 0) << miss.err;
  const nlohmann::json explained = miss.json();
  EXPECT_EQ(explained["status"], "miss");
  ASSERT_TRUE(explained["nearest"].is_object()) << miss.out;
  bool heads_differ = false;
  for (const nlohmann::json& d : explained["nearest"]["differences"]) heads_differ |= d["field"] == "spec.heads";
  EXPECT_TRUE(heads_differ) << miss.out;

  const CliRun gc = run({"cache", "gc", "--max-size", "0", "--json"});
  ASSERT_EQ(gc.status, 0) << gc.err;
  EXPECT_EQ(gc.json()["evicted"].size(), k_catalog_size);
  EXPECT_EQ(gc.json()["bytes_after"], 0);
  EXPECT_TRUE(cache::list_entries(root_).empty());
  const CliRun bad_size = run({"cache", "gc", "--max-size", "lots"});
  EXPECT_EQ(bad_size.status, 2);
  EXPECT_NE(bad_size.err.find("--max-size"), std::string::npos) << bad_size.err;
}

}  // namespace
}  // namespace mlajit
