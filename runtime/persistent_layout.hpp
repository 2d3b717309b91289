// Persistent decode metadata: the buffer layout (a constexpr formula of host integers only, so a
// size query never reads device data and a CUDA graph can be replayed with new lengths) and the
// kernel parameter block that points into one buffer laid out by it. Header-only and free of any
// backend: the metadata kernel's template (templates/decode/schedule.cuh) is the only producer,
// the C API's size query, the engine and the CPU tests the consumers. It lives in runtime/ next to
// decode_params.hpp because that is where workspace sizes are already computed for launches.
#pragma once

#include <cstddef>

#include "templates/decode/params.cuh"

namespace mlajit {

// All counts and offsets in int32 elements; sections start 16-byte aligned (items load as int4).
struct PersistentLayout {
  int groups = 0;           // row groups per request: ceil(s_q * heads / rows_per_item)
  int tiles = 0;            // batch * groups
  int max_items = 0;        // tiles + workers - 1
  int max_split_tiles = 0;  // min(tiles, workers - 1)
  int max_partials = 0;     // min(2 * (workers - 1), max_items)
  std::size_t header = 0, work_indptr = 0, work_items = 0, reduce_indptr = 0, reduce_tiles = 0,
              reduce_partial_map = 0, total_ints = 0;

  constexpr std::size_t bytes() const { return total_ints * sizeof(int); }
  // fp32 partial rows the persistent kernel needs: max_partials * rows_per_item (x v_dim, + LSE).
  constexpr std::size_t partial_rows(int rows_per_item) const { return std::size_t(max_partials) * rows_per_item; }
};

constexpr std::size_t persistent_align4(std::size_t n) { return (n + 3) / 4 * 4; }

// Preconditions: batch >= 0, heads, s_q, rows_per_item, workers >= 1.
constexpr PersistentLayout persistent_layout(int batch, int heads, int s_q, int rows_per_item, int workers) {
  PersistentLayout l;
  l.groups = (s_q * heads + rows_per_item - 1) / rows_per_item;
  l.tiles = batch * l.groups;
  l.max_items = l.tiles + workers - 1;
  l.max_split_tiles = l.tiles < workers - 1 ? l.tiles : workers - 1;
  l.max_partials = 2 * (workers - 1) < l.max_items ? 2 * (workers - 1) : l.max_items;
  std::size_t at = 0;
  l.header = at;
  at = persistent_align4(at + 4);
  l.work_indptr = at;
  at = persistent_align4(at + std::size_t(workers) + 1);
  l.work_items = at;
  at = persistent_align4(at + std::size_t(l.max_items) * 8);
  l.reduce_indptr = at;
  at = persistent_align4(at + std::size_t(l.tiles) + 1);
  l.reduce_tiles = at;
  at = persistent_align4(at + std::size_t(l.max_split_tiles));
  l.reduce_partial_map = at;
  at = persistent_align4(at + std::size_t(l.max_partials));
  l.total_ints = at;
  return l;
}

// The scheduling inputs besides the device arrays.
struct ScheduleShape {
  int batch = 0;
  int heads = 0;
  int s_q = 1;
  int page_size = 1;
  int rows_per_item = 16;
  int workers = 132;
  int kv_block = 64;  // FlashMLA's block
  int overhead = 5;   // FlashMLA's fixed per-request cost, in blocks
};

constexpr PersistentLayout persistent_layout(const ScheduleShape& s) {
  return persistent_layout(s.batch, s.heads, s.s_q, s.rows_per_item, s.workers);
}

// The metadata kernel's parameters, pointing into `metadata` (persistent_layout(shape).bytes()).
inline MljScheduleParams schedule_params(const ScheduleShape& s, const int* qo_indptr, const int* kv_indptr,
                                         const int* kv_last_page_lens, int* metadata) {
  const PersistentLayout l = persistent_layout(s);
  MljScheduleParams p{};
  p.qo_indptr = qo_indptr;
  p.kv_indptr = kv_indptr;
  p.kv_last_page_lens = kv_last_page_lens;
  p.header = metadata + l.header;
  p.work_indptr = metadata + l.work_indptr;
  p.work_items = metadata + l.work_items;
  p.reduce_indptr = metadata + l.reduce_indptr;
  p.reduce_tiles = metadata + l.reduce_tiles;
  p.reduce_partial_map = metadata + l.reduce_partial_map;
  p.batch = s.batch;
  p.heads = s.heads;
  p.s_q = s.s_q;
  p.page_size = s.page_size;
  p.rows_per_item = s.rows_per_item;
  p.workers = s.workers;
  p.kv_block = s.kv_block;
  p.overhead = s.overhead;
  return p;
}

// The section offsets the persistent kernel and its reduce read (MljPersistentLayout).
constexpr MljPersistentLayout persistent_kernel_layout(const ScheduleShape& s) {
  const PersistentLayout l = persistent_layout(s);
  return MljPersistentLayout{int(l.header),        int(l.work_indptr),  int(l.work_items),
                             int(l.reduce_indptr), int(l.reduce_tiles), int(l.reduce_partial_map),
                             l.groups,             s.rows_per_item};
}

// Dynamic shared memory of the metadata kernel with `threads` threads.
constexpr std::size_t schedule_shared_bytes(int threads) { return std::size_t(3) * threads * sizeof(int); }

static_assert(persistent_layout(1024, 128, 3, 16, 132).tiles == 1024 * 24);
static_assert(persistent_layout(1, 16, 1, 16, 1).max_partials == 0);

}  // namespace mlajit
