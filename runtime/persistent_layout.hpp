// Persistent decode metadata: the sizes of its six int32 buffers (a constexpr formula of host
// integers only, so a size query never reads device data and a CUDA graph can be replayed with
// new lengths), and the kernel parameter blocks that point into them. Header-only and free of any
// backend: the metadata kernel's template (templates/decode/schedule.cuh) is the only producer,
// the C API's size query, the engine and the CPU tests the consumers. The buffers are the
// caller's (PersistentMetadata); `metadata_in` lays all six out in one buffer, for tools and tests.
#pragma once

#include <array>
#include <cstddef>

#include "templates/decode/params.cuh"

namespace mlajit {

// The six metadata buffers, with AITER's names (mla-semantics §1.4; the contents are mlajit's
// own, decode/schedule.cuh): work_meta_data = the header, work_info_set = the work items,
// reduce_final_map = the split tiles. A buffer of 0 elements may be null.
struct PersistentMetadata {
  int* work_meta_data = nullptr;      // [header_ints]: items, split tiles, partial slots, total cost,
                                      // then each tile's finished pieces and reduce CTAs past them,
                                      // then the worker heads (schedule.cuh)
  int* work_indptr = nullptr;         // [workers + 1]
  int* work_info_set = nullptr;       // [max_items][8]
  int* reduce_indptr = nullptr;       // [tiles + 1]
  int* reduce_final_map = nullptr;    // [max_split_tiles]
  int* reduce_partial_map = nullptr;  // [max_partials]
};

// All counts and offsets in int32 elements. The offsets place the six buffers in one (sections
// 16-byte aligned), for callers that want a single allocation (metadata_in).
struct PersistentLayout {
  int workers = 0;
  int groups = 0;           // row groups per request: ceil(s_q * heads / rows_per_item)
  int tiles = 0;            // batch * groups
  int max_items = 0;        // tiles + workers - 1
  int max_split_tiles = 0;  // min(tiles, workers - 1)
  int max_partials = 0;     // min(2 * (workers - 1), max_items)
  std::size_t header_ints = 0;  // work_meta_data: 4 + 2 tiles, padded to 4, + kMljWorkerHeadInts x workers
  std::size_t worker_heads = 0;  // where the heads start inside work_meta_data
  std::size_t header = 0, work_indptr = 0, work_items = 0, reduce_indptr = 0, reduce_tiles = 0,
              reduce_partial_map = 0, total_ints = 0;

  constexpr std::size_t bytes() const { return total_ints * sizeof(int); }
  // int32 elements of each buffer, in PersistentMetadata order.
  constexpr std::array<std::size_t, 6> elements() const {
    return {header_ints, std::size_t(workers) + 1, std::size_t(max_items) * 8, std::size_t(tiles) + 1,
            std::size_t(max_split_tiles), std::size_t(max_partials)};
  }
  // fp32 partial rows the persistent kernel needs: max_partials * rows_per_item (x v_dim, + LSE).
  constexpr std::size_t partial_rows(int rows_per_item) const { return std::size_t(max_partials) * rows_per_item; }
};

constexpr std::size_t persistent_align4(std::size_t n) { return (n + 3) / 4 * 4; }

// Preconditions: batch >= 0, heads, s_q, rows_per_item, workers >= 1.
constexpr PersistentLayout persistent_layout(int batch, int heads, int s_q, int rows_per_item, int workers) {
  PersistentLayout l;
  l.workers = workers;
  l.groups = (s_q * heads + rows_per_item - 1) / rows_per_item;
  l.tiles = batch * l.groups;
  l.max_items = l.tiles + workers - 1;
  l.max_split_tiles = l.tiles < workers - 1 ? l.tiles : workers - 1;
  l.max_partials = 2 * (workers - 1) < l.max_items ? 2 * (workers - 1) : l.max_items;
  l.worker_heads = persistent_align4(4 + 2 * std::size_t(l.tiles));
  l.header_ints = l.worker_heads + std::size_t(kMljWorkerHeadInts) * workers;
  std::size_t at = 0;
  l.header = at;
  at = persistent_align4(at + l.header_ints);
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

// The six buffers as sections of one buffer of layout.bytes().
constexpr PersistentMetadata metadata_in(const PersistentLayout& l, int* buffer) {
  return PersistentMetadata{buffer + l.header,        buffer + l.work_indptr,  buffer + l.work_items,
                            buffer + l.reduce_indptr, buffer + l.reduce_tiles, buffer + l.reduce_partial_map};
}

// The metadata kernel's parameters: it reads the indptrs and fills `m`.
inline MljScheduleParams schedule_params(const ScheduleShape& s, const int* qo_indptr, const int* kv_indptr,
                                         const int* kv_last_page_lens, const PersistentMetadata& m) {
  MljScheduleParams p{};
  p.qo_indptr = qo_indptr;
  p.kv_indptr = kv_indptr;
  p.kv_last_page_lens = kv_last_page_lens;
  p.header = m.work_meta_data;
  p.worker_heads = m.work_meta_data != nullptr ? m.work_meta_data + persistent_layout(s).worker_heads : nullptr;
  p.work_indptr = m.work_indptr;
  p.work_items = m.work_info_set;
  p.reduce_indptr = m.reduce_indptr;
  p.reduce_tiles = m.reduce_final_map;
  p.reduce_partial_map = m.reduce_partial_map;
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

// What the persistent kernel and its reduce read: the buffers `m` as the metadata kernel filled them.
constexpr MljPersistentLayout persistent_kernel_layout(const ScheduleShape& s, const PersistentMetadata& m) {
  const PersistentLayout l = persistent_layout(s);
  int* const counts = m.work_meta_data != nullptr ? m.work_meta_data + 4 : nullptr;  // after the header's 4
  return MljPersistentLayout{m.work_meta_data,
                             m.work_meta_data != nullptr ? m.work_meta_data + l.worker_heads : nullptr,
                             m.work_indptr,      m.work_info_set,
                             m.reduce_indptr,  m.reduce_final_map, m.reduce_partial_map,
                             l.groups,         s.rows_per_item,    counts,
                             counts != nullptr ? counts + l.tiles : nullptr};
}

// Dynamic shared memory of the metadata kernel with `threads` threads.
constexpr std::size_t schedule_shared_bytes(int threads) {
  return std::size_t(kMljScheduleSharedIntsPerThread) * threads * sizeof(int);
}

static_assert(persistent_layout(1024, 128, 3, 16, 132).tiles == 1024 * 24);
static_assert(persistent_layout(1, 16, 1, 16, 1).max_partials == 0);

}  // namespace mlajit
