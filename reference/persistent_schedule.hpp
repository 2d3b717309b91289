// Host reference of the persistent-decode schedule (templates/decode/schedule.cuh): a sequential,
// FlashMLA-style walk (each worker fills up to its share of the cost line, cutting a tile's KV
// blocks where the share ends), written independently of the block-parallel kernel so the CPU
// tests can compare the two element by element.
#pragma once

#include <array>
#include <vector>

#include "runtime/persistent_layout.hpp"

namespace mlajit::reference {

struct PersistentSchedule {
  int total_cost = 0;
  std::vector<std::array<int, 8>> items;  // the kernel's work item fields (schedule.cuh)
  std::vector<int> work_indptr;           // [workers + 1]
  // Each worker's head (kMljWorkerHeadInts ints, schedule.cuh): begin, end, and for a worker with
  // items the span of its first item's request (q_begin, q_count, page_begin, kv_len), two unused
  // ints (0) and that item. An empty worker's head has only begin and end set (the rest is 0 here).
  std::vector<std::array<int, kMljWorkerHeadInts>> worker_heads;
  std::vector<int> reduce_indptr;         // [tiles + 1]
  std::vector<int> reduce_tiles;          // split tiles
  std::vector<int> reduce_partial_map;    // [reduce_indptr[tiles]]
};

// Tokens of request b's KV cache (mla-semantics §1.1).
int request_kv_len(const std::vector<int>& kv_indptr, const std::vector<int>& kv_last_page_lens, int page_size, int b);

PersistentSchedule persistent_schedule(const ScheduleShape& shape, const std::vector<int>& qo_indptr,
                                       const std::vector<int>& kv_indptr, const std::vector<int>& kv_last_page_lens);

}  // namespace mlajit::reference
