// Small tuning databases for the tuning tests.
#pragma once

#include <unistd.h>

#include <filesystem>
#include <string>

#include <gtest/gtest.h>

#include "tuning/database.hpp"

namespace mlajit::tuning::test_support {

// An empty directory under the system temp dir, named after `stem`, the process and the test.
inline std::filesystem::path fresh_directory(const std::string& stem) {
  const auto dir = std::filesystem::temp_directory_path() /
                   (stem + "-" + std::to_string(::getpid()) + "-" +
                    ::testing::UnitTest::GetInstance()->current_test_info()->name());
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

// Heap allocations so far in this process (allocation_counter.cpp).
long long allocations();

inline TileConfig tile(KernelFamily family, int tokens_per_tile, int stages, int splits) {
  TileConfig t;
  t.family = family;
  t.heads_per_cta = 16;
  t.tokens_per_tile = tokens_per_tile;
  t.warps = 8;
  t.stages = stages;
  t.num_splits = splits;
  return t;
}

inline TileConfig mma(int tokens_per_tile, int stages, int splits) {
  return tile(KernelFamily::mma, tokens_per_tile, stages, splits);
}

// An entry for `heads` x `s_q` bf16 with page 64, measured on `card`.
inline Entry entry(int heads, int s_q, int batch, double context, const TileConfig& best, double best_us,
                   double model_us = 0, const std::string& date = "2026-11-29", const std::string& card = "H100") {
  Entry e;
  e.spec.heads = heads;
  e.spec.s_q = s_q;
  e.spec.page_size = 64;
  e.shape_id = "S" + std::to_string(heads);
  e.shape.batch = batch;
  e.shape.mean_kv_tokens = context;
  e.shape.max_kv_tokens = context;
  e.shape.multiprocessors = 132;
  e.best = {best, best_us, date, card, 0};
  e.model = {mma(32, 2, 2), model_us > 0 ? model_us : best_us, date, card, 0};
  e.measurements = {{best, best_us}};
  e.bucket = bucket_of(e.spec, e.shape);
  return e;
}

inline Database measured_database(std::vector<Entry> entries) {
  Database db;
  db.meta.arch = "sm_90a";
  db.meta.card = "H100";
  db.meta.date = "2026-11-29";
  db.meta.measured = true;
  db.entries = std::move(entries);
  sort_entries(db);
  return db;
}

}  // namespace mlajit::tuning::test_support
