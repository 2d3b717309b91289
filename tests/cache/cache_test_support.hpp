// Shared pieces of the cache tests: realistic key fields, entries, and a private temporary root.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "cache/kernel_cache.hpp"

namespace mlajit::cache::test_support {

namespace fs = std::filesystem;

// A fixed, realistic set of key fields (its hash is pinned in kernel_cache_test.cpp).
inline KeyFields golden_fields() {
  KeyFields fields;
  fields.spec = {{"variant", "decode"}, {"q_dtype", "bf16"}, {"kv_dtype", "bf16"}, {"num_heads", 16},
                 {"kv_lora_rank", 512}, {"rope_dim", 64},    {"page_size", 64},    {"s_q", 1}};
  fields.tile = {{"heads_per_cta", 16}, {"tokens_per_tile", 64}, {"warps", 8}, {"stages", 2}};
  fields.backend = "cuda";
  fields.arch = "sm_90a";
  fields.compiler = "nvrtc";
  fields.compiler_version = "12.8";
  fields.generator_version = 1;
  fields.template_digest = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
  fields.compile_options = {"--std=c++17", "-default-device"};
  return fields;
}

inline constexpr const char* k_name = "mla_decode_q-bf16_kv-bf16_h16_sq1_ps64_bn64";

inline KernelKey golden_key() { return make_key(golden_fields(), k_name); }

// Another key of the same target, differing only in the head count.
inline KernelKey key_with_heads(int heads) {
  KeyFields fields = golden_fields();
  fields.spec["num_heads"] = heads;
  return make_key(fields, "mla_decode_h" + std::to_string(heads));
}

// An entry as the JIT path makes one; `format` "cubin" / "hsaco" names the code file.
inline Entry make_entry(const std::string& payload, const std::string& format = "") {
  Entry entry;
  entry.code.assign(payload.begin(), payload.end());
  entry.manifest = {{"registers", 128}, {"shared_bytes", 49152}, {"log", "ok"}};
  if (!format.empty()) entry.manifest["format"] = format;
  return entry;
}

inline std::string read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

inline std::size_t count_entries(const fs::path& dir) {
  std::error_code error;
  if (!fs::exists(dir, error)) return 0;
  return static_cast<std::size_t>(std::distance(fs::directory_iterator(dir), fs::directory_iterator()));
}

inline std::size_t count_occurrences(const std::string& text, const std::string& needle) {
  std::size_t count = 0;
  for (std::size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++count;
  return count;
}

// Sets a file's or directory's mtime to `seconds_ago` before now.
inline void age(const fs::path& path, long seconds_ago) {
  timespec times[2]{};
  ::clock_gettime(CLOCK_REALTIME, &times[0]);
  times[0].tv_sec -= seconds_ago;
  times[1] = times[0];
  ASSERT_EQ(::utimensat(AT_FDCWD, path.c_str(), times, 0), 0) << path;
}

inline long mtime_seconds(const fs::path& path) {
  struct stat info {};
  return ::stat(path.c_str(), &info) == 0 ? static_cast<long>(info.st_mtim.tv_sec) : -1;
}

// A fresh directory per test, removed afterwards (permissions restored first).
class CacheDirTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::random_device random;
    base_ = fs::temp_directory_path() /
            ("mlajit-cache-test-" + std::to_string(::getpid()) + "-" + std::to_string(random()));
    fs::create_directories(base_);
    root_ = base_ / "root";
  }
  void TearDown() override {
    std::error_code error;
    for (const fs::path& dir : made_read_only_) fs::permissions(dir, fs::perms::owner_all, error);
    fs::remove_all(base_, error);
  }

  fs::path base_;
  fs::path root_;
  std::vector<fs::path> made_read_only_;
};

}  // namespace mlajit::cache::test_support
