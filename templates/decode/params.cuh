// Kernel parameter blocks for the decode family. Plain C layout, included both by generated
// kernels and by host code (runtime/), so the two can never disagree about the layout.
#pragma once

struct MljDecodeParams {
  const void* q;                 // [total_q, heads, qk_dim], rows of one token contiguous
  const void* kv;                // pages of [page_size, qk_dim]; V = first v_dim columns
  void* out;                     // [total_q, heads, v_dim]: written when num_splits == 1
  float* lse;                    // [total_q, heads] natural-log LSE (when the spec asks for it)
  float* partial_out;            // [num_splits, total_q, heads, v_dim]: when num_splits > 1
  float* partial_lse;            // [num_splits, total_q, heads]
  const int* qo_indptr;          // [batch + 1] query tokens per request (cumulative)
  const int* kv_indptr;          // [batch + 1] entries of kv_indices per request (cumulative)
  const int* kv_indices;         // page ids into kv
  const int* kv_last_page_lens;  // [batch] tokens used in each request's last page
  long long q_token_stride;      // elements between consecutive query tokens
  long long kv_page_stride;      // elements between consecutive pages
  int batch;
  int total_q;
  int num_splits;
  float sm_scale;
  float q_scale;                 // dequant scale of an fp8 q (1 otherwise)
  float kv_scale;                // dequant scale of an fp8 kv cache (1 otherwise)
  // Fused RoPE (mla-semantics §2; read only when the kernel's spec has a rope style).
  const void* cos_sin_cache;     // [max_positions, rope_dim]: row p = [cos(p t_i) | sin(p t_i)], i < rope_dim / 2
  const long long* positions;    // [total_q] position of each query token
  void* k_pe_out;                // [total_q, rope_dim] in the kv dtype: each query token's roped k_pe
  int cos_sin_dtype;             // 0 bf16, 1 fp16, 3 fp32 (mlajit_dtype values)
  int max_positions;             // rows of cos_sin_cache; positions are clamped into them
};

struct MljCombineParams {
  const float* partial_out;      // [num_splits, total_q, heads, v_dim]
  const float* partial_lse;      // [num_splits, total_q, heads]
  void* out;                     // [total_q, heads, v_dim]
  float* lse;                    // [total_q, heads] or null
  int total_q;
  int num_splits;
  int ways;  // warps that merge one row (decode/combine.cuh; mlajit::Source::combine_ways)
};

// Persistent-decode metadata (decode/schedule.cuh). Six int32 buffers (the caller's, or sections of
// one buffer) whose sizes mlajit::persistent_layout (runtime/persistent_layout.hpp) computes from
// (batch, heads, s_q, rows_per_item, workers) only, never from device data.
// Dynamic shared memory of the metadata kernel, in ints a thread (decode/schedule.cuh: the scans'
// scratch, then its eight per-segment arrays).
constexpr int kMljScheduleSharedIntsPerThread = 8;
// Ints of a worker's head (decode/schedule.cuh): its list's bounds, the request span of its first
// item and that item, so that a persistent CTA starts from one record instead of three dependent
// reads (work_indptr, then the item, then the request's indptrs).
constexpr int kMljWorkerHeadInts = 16;

struct MljScheduleParams {
  const int* qo_indptr;          // [batch + 1]
  const int* kv_indptr;          // [batch + 1] pages (or tokens when page_size == 1)
  const int* kv_last_page_lens;  // [batch]
  int* header;                   // [4 + 2 tiles, padded to 4, + 16 workers]: items, split tiles, partial
                                 // slots, total cost, then each tile's finished pieces and its reduce
                                 // CTAs past their wait (zeroed here; stage 1 and the reduce count, the
                                 // reduce re-zeroes), then the worker heads
  int* worker_heads;             // [workers][kMljWorkerHeadInts], inside header (schedule.cuh)
  int* work_indptr;              // [workers + 1]: worker w walks items work_indptr[w] .. [w+1]
  int* work_items;               // [max_items][8]: MljWorkItem fields, in worker order
  int* reduce_indptr;            // [tiles + 1]: partial slots of tile t (empty when unsplit)
  int* reduce_tiles;             // [max_split_tiles]: the split tiles, in order (first header[1])
  int* reduce_partial_map;       // [max_partials]: partial slot of each split piece, KV order
  int batch;
  int heads;
  int s_q;                       // max query tokens per request (row groups are sized with it)
  int page_size;
  int rows_per_item;             // query rows (token * heads + head) per work item
  int workers;                   // persistent CTAs
  int kv_block;                  // tokens per cost unit (FlashMLA: 64)
  int overhead;                  // fixed cost per work item, in kv blocks (FlashMLA: 5)
};

// Where the persistent kernel and its reduce find the metadata the metadata kernel wrote
// (MljScheduleParams' buffers, read-only here). In persistent mode MljDecodeParams' partial_out /
// partial_lse point at [max_partials * rows_per_item] rows (x v_dim) / rows of the workspace.
struct MljPersistentLayout {
  const int* header;              // [4 + 2 tiles, padded to 4, + 16 workers]: items, split tiles, ...
  const int* worker_heads;        // [workers][kMljWorkerHeadInts], inside header
  const int* work_indptr;         // [workers + 1]
  const int* work_items;          // [max_items][8]
  const int* reduce_indptr;       // [tiles + 1]
  const int* reduce_tiles;        // [max_split_tiles]
  const int* reduce_partial_map;  // [max_partials]
  int groups;         // row groups per request: tile t = request * groups + row group
  int rows_per_item;  // query rows per tile (the stage-1 kernel's rows per CTA)
  int* pieces_done;   // [tiles] = header + 4: a split tile's pieces written so far (the reduce waits
                      // for all of its tile's)
  int* pieces_taken;  // [tiles] = header + 4 + tiles: the tile's reduce CTAs past that wait (the last
                      // zeroes both, so the metadata serves the next decode too: one fill per step,
                      // a decode per layer)
};
