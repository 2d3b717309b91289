// Persistent decode, step 1: the metadata kernel. One CTA, block-wide, no host synchronisation:
// it reads the indptrs on the device and fills fixed-size int32 buffers (MljScheduleParams;
// sizes from mlajit::persistent_layout on the host), so metadata + persistent kernel + reduce
// can be captured in one CUDA graph and replayed with new lengths.
//
// Model. A tile is (request b, row group g): query rows [g*R, (g+1)*R) of the request, a row being
// token * heads + head over its query tokens (as in portable.cuh), R = rows_per_item. Tile ids are
// t = b * G + g with G = ceil(s_q * heads / R) fixed, so ids never depend on device data; row groups
// past a request's own query rows (qo_indptr diff < s_q) are idle and get no work. A tile costs
// n + overhead with n = ceil(kv_len / kv_block) (FlashMLA: 64-token blocks, +5). On the line of
// cumulative cost (tiles in id order; each tile's n blocks, then its overhead), worker w owns
// [C(w), C(w+1)), C(w) = floor(w * total / workers) (shares of floor or ceil of total / workers
// blocks; with fewer blocks than workers, C(w) = min(w, total): one block each): a tile's blocks
// are cut at the C(w) into pieces (work items), each owned by the worker holding its first block;
// a tile with no KV is one item of its worker. (`workers` here is the sharing count of
// schedule_sharing_workers: all of them but for some uniform lines; the rest get empty lists.)
// So every worker's items are one contiguous run of the item list (work_indptr), the KV cuts are
// kv_block-aligned, and a worker pays at most Q + overhead, Q = ceil(total / workers) (the last
// item's overhead may lie past its range). At most workers - 1 cuts exist: items <= tiles +
// workers - 1, split tiles <= workers - 1, partial slots <= 2 * (workers - 1).
//
// Work item (8 int32, 32 bytes): [0] request, [1] row group, [2] kv_begin, [3] kv_end (tokens of
// the request's KV, relative to its start; page = kv_indices[kv_indptr[b] + token / page_size]),
// [4] partial slot or -1 when the item is the whole tile, [5] worker, [6] tile id, [7] piece index
// within the tile (KV order).
//
// Worker head (kMljWorkerHeadInts = 16 int32, in the header after the tiles' counts): [0] the
// worker's first item, [1] one past its last (work_indptr[w], work_indptr[w+1]); when the list is not
// empty, [2] q_begin, [3] q_count (qo_indptr[b], qo_indptr[b+1] - qo_indptr[b]), [4] page_begin
// (kv_indptr[b]) and [5] kv_len (tokens) of its first item's request b, [6..7] unused, [8..15] that
// item. A persistent CTA reads its head alone to start: its first KV pages' addresses are one read
// further (kv_indices), as on the grid path, instead of three (work_indptr, the item, the indptrs).
//
// Consumer (next step, not here): the persistent kernel launches `workers` CTAs; CTA w loops over
// items work_indptr[w] .. work_indptr[w+1] and runs the existing tile code on rows g*R .. of
// request b (same row mapping as portable.cuh) over keys [kv_begin, kv_end) with the causal limit
// of each row as today. Slot -1: write o (+ LSE) directly, normalised. Otherwise write the
// normalised fp32 partial and natural-log LSE of its R rows to partial slot s (rows s*R .. s*R+R-1
// of a [max_partials * R, v_dim] fp32 workspace + [max_partials * R] LSE); an empty KV range gives
// LSE = -inf. The reduce launches a fixed grid of (rows x max_split_tiles) CTAs, graph-safe: those
// of split tile i exit when i >= header[1], else take t = reduce_tiles[i], and for their rows merge
// the slots reduce_partial_map[reduce_indptr[t] .. reduce_indptr[t+1]) exactly as decode_combine
// merges splits (max LSE, exp-weighted sum), then write o / LSE of tile t's rows
// (request t / G, row group t % G). Slots are assigned in item order, so the map is the identity
// today; it is kept (AITER's reduce_partial_map form) so slot recycling can change later.
// The reduce does not wait for all of stage 1: header[4 + t] counts tile t's pieces as stage 1
// writes them, and its CTAs wait for their tile's count (header[4 + tiles + t] counts those past
// that wait; the last zeroes both, so the buffers serve the next decode too). This kernel zeroes
// both for every tile.
//
// Launch: grid 1, kThreads threads (any count; 256 is plenty), kMljScheduleSharedIntsPerThread *
// kThreads ints of dynamic shared memory (mlajit::schedule_shared_bytes). Preconditions: workers >= 1, total cost < 2^31;
// requests with more than s_q query tokens are clamped to s_q rows (the layout assumes s_q max).
// Checked on the CPU against reference/persistent_schedule.cpp (tests/templates/schedule_host_test).
#pragma once

#include "decode/numeric.cuh"
#include "decode/params.cuh"
#include "decode/trace.cuh"

namespace mlj {

enum : int {
  kItemRequest = 0,
  kItemRowGroup = 1,
  kItemKvBegin = 2,
  kItemKvEnd = 3,
  kItemPartial = 4,
  kItemWorker = 5,
  kItemTile = 6,
  kItemPiece = 7,
  kItemInts = 8,
};

enum : int {
  kHeadBegin = 0,
  kHeadEnd = 1,
  kHeadQBegin = 2,
  kHeadQCount = 3,
  kHeadPageBegin = 4,
  kHeadKvLen = 5,
  kHeadItem = 8,
};
static_assert(int(kHeadItem) + int(kItemInts) <= kMljWorkerHeadInts, "a worker head holds its first item");

// work_indptr[x] = item, and the heads' copies of it: worker x's first item, worker x - 1's end.
MLJ_DEVICE void schedule_set_work_start(const MljScheduleParams& p, int x, int item) {
  p.work_indptr[x] = item;
  if (x < p.workers) p.worker_heads[x * kMljWorkerHeadInts + kHeadBegin] = item;
  if (x > 0) p.worker_heads[(x - 1) * kMljWorkerHeadInts + kHeadEnd] = item;
}

// Where request b's query rows and KV pages lie (mla-semantics §1.1): what every stage-1 family
// reads of the indptrs (decode/work.cuh's DecodeWork), and what a worker head keeps of its first
// item's request.
struct RequestSpan {
  int q_begin;     // qo_indptr[b]
  int q_count;     // qo_indptr[b + 1] - qo_indptr[b]
  int page_begin;  // kv_indptr[b]
  int kv_len;      // tokens of its KV cache
};

struct ScheduleTile {
  bool valid;        // the row group has query rows
  int blocks;        // ceil(span.kv_len / kv_block)
  int cost;          // blocks + overhead when valid, else 0
  RequestSpan span;  // of its request
};

MLJ_DEVICE ScheduleTile schedule_tile(const MljScheduleParams& p, bool valid, RequestSpan span) {
  ScheduleTile tile;
  tile.valid = valid;
  tile.blocks = ceil_div(span.kv_len, p.kv_block);
  tile.cost = valid ? tile.blocks + p.overhead : 0;
  tile.span = span;
  return tile;
}

MLJ_DEVICE ScheduleTile schedule_tile(const MljScheduleParams& p, int groups, int t) {
  const int b = t / groups;
  const int g = t - b * groups;
  RequestSpan span;
  span.q_begin = p.qo_indptr[b];
  span.q_count = p.qo_indptr[b + 1] - span.q_begin;
  span.page_begin = p.kv_indptr[b];
  const int pages = p.kv_indptr[b + 1] - span.page_begin;
  span.kv_len = pages > 0 ? (pages - 1) * p.page_size + p.kv_last_page_lens[b] : 0;
  return schedule_tile(p, g * p.rows_per_item < min_int(max_int(span.q_count, 0), p.s_q) * p.heads, span);
}

// A thread's tiles (its segment): the first read once, in pass 1, and kept (in registers, and in
// shared memory for the threads that emit its items); the others (more tiles than threads) are
// read again where they are needed. Every pass is one step of a chain of dependent latencies.
struct ScheduleSegment {
  int t0;
  ScheduleTile first;
  MLJ_DEVICE ScheduleTile tile(const MljScheduleParams& p, int groups, int t) const {
    return t == t0 ? first : schedule_tile(p, groups, t);
  }
};

// Where worker w's share of a cost line of `total` blocks starts (ScheduleShares: C(w) above), and
// which worker's share holds position x. The divisions by total and workers go through their
// reciprocals (floor_div_by): the metadata kernel is a chain of dependent steps, and a 64-bit
// integer division is a long one.
struct ScheduleShares {
  int total;
  int workers;
  double inv_total;
  double inv_workers;
  MLJ_DEVICE ScheduleShares(int total_cost, int worker_count)
      : total(total_cost), workers(worker_count), inv_total(1.0 / max_int(total_cost, 1)), inv_workers(1.0 / worker_count) {}
  MLJ_DEVICE int start(int w) const {
    return total >= workers ? (int)floor_div_by((long long)w * total, workers, inv_workers) : min_int(w, total);
  }
  MLJ_DEVICE int owner(int x) const {
    const int w = total >= workers ? (int)floor_div_by(((long long)x + 1) * workers - 1, total, inv_total) : x;
    return min_int(max_int(w, 0), workers - 1);
  }
  // Pieces of a valid tile whose blocks start at `pos`.
  MLJ_DEVICE int pieces(int pos, int blocks) const { return blocks == 0 ? 1 : owner(pos + blocks - 1) - owner(pos) + 1; }
};

// Inclusive scan of four ints across the warp (shuffles): x[0..2] summed, x[3] by max.
MLJ_DEVICE void schedule_warp_scan(int x[4], int lane) {
#pragma unroll
  for (int offset = 1; offset < MLJ_WARP_SIZE; offset *= 2) {
    const int src = lane >= offset ? lane - offset : lane;
    int y[4];
#pragma unroll
    for (int k = 0; k < 4; ++k) y[k] = shfl_int(x[k], src);
    if (lane >= offset) {
#pragma unroll
      for (int k = 0; k < 3; ++k) x[k] += y[k];
      x[3] = max_int(x[3], y[3]);
    }
  }
}

// Block-wide scans of four ints per thread: v[0..2] become each thread's exclusive prefix sums
// (the totals in total[0..2]), v[3] the largest v[3] of the threads before it (-1 for thread 0;
// the largest of all in total[3]). Within each warp by shuffles, then across the warps' totals
// (warp 0, shuffles again) through shared memory s (8 * warps + 4 ints <= 4 * kThreads); three
// barriers.
template <int kThreads>
MLJ_DEVICE void schedule_scan(int* s, int tid, int v[4], int total[4]) {
  constexpr int kWarps = kThreads / MLJ_WARP_SIZE;
  static_assert(kThreads % MLJ_WARP_SIZE == 0 && kWarps <= MLJ_WARP_SIZE, "schedule_scan: whole warps, at most a warp of them");
  const int lane = tid % MLJ_WARP_SIZE;
  const int warp = tid / MLJ_WARP_SIZE;
  int x[4] = {v[0], v[1], v[2], v[3]};
  schedule_warp_scan(x, lane);
  const int previous_lane = shfl_int(x[3], lane > 0 ? lane - 1 : 0);
  const int max_before_in_warp = lane > 0 ? previous_lane : -1;
  if (lane == MLJ_WARP_SIZE - 1) {
    for (int k = 0; k < 4; ++k) s[k * kWarps + warp] = x[k];
  }
  mlj_barrier();
  if (warp == 0) {
    int t[4];
    for (int k = 0; k < 4; ++k) t[k] = lane < kWarps ? s[k * kWarps + lane] : (k < 3 ? 0 : -1);
    schedule_warp_scan(t, lane);
    for (int k = 0; k < 4; ++k) {
      const int before = shfl_int(t[k], lane > 0 ? lane - 1 : 0);  // warps before warp `lane`
      if (lane < kWarps) s[(4 + k) * kWarps + lane] = lane > 0 ? before : (k < 3 ? 0 : -1);
      if (lane == kWarps - 1) s[8 * kWarps + k] = t[k];
    }
  }
  mlj_barrier();
  for (int k = 0; k < 3; ++k) v[k] = s[(4 + k) * kWarps + warp] + x[k] - v[k];
  for (int k = 0; k < 4; ++k) total[k] = s[8 * kWarps + k];
  v[3] = max_int(s[7 * kWarps + warp], max_before_in_warp);
  mlj_barrier();  // s may be reused
}

// How many workers share the line (the others get empty lists). All of them, except for a line
// of `valid` tiles of equal cost with valid <= workers: then valid * floor(workers / valid) when
// that leaves at most workers / 16 idle, so that every cut falls on a tile's boundary or splits
// every tile into equal pieces (a uniform batch of 128 requests on 132 workers: 128 unsplit tiles,
// no partial and no merge, instead of 131 cuts that split 127 tiles).
MLJ_DEVICE int schedule_sharing_workers(int workers, int valid, int total_cost, int largest_cost) {
  if (valid < 1 || valid > workers || (long long)valid * largest_cost != total_cost) return workers;
  const int aligned = valid * (workers / valid);
  return (workers - aligned) * 16 <= workers ? aligned : workers;
}

// One CTA of kThreads threads; dynamic shared memory: kMljScheduleSharedIntsPerThread * kThreads ints.
template <int kThreads>
MLJ_DEVICE void persistent_schedule(const MljScheduleParams& p) {
  const int tid = threadIdx.x;
  int* s = reinterpret_cast<int*>(mlj_dynamic_shared());
  const int groups = ceil_div(p.s_q * p.heads, p.rows_per_item);
  const int tiles = p.batch * groups;
  const int workers = p.workers;
  // Each thread owns a contiguous segment of tiles.
  const int per_thread = ceil_div(tiles, kThreads);
  const int t0 = min_int(tiles, tid * per_thread);
  const int t1 = min_int(tiles, t0 + per_thread);

  ScheduleSegment segment{t0, ScheduleTile{false, 0, 0, RequestSpan{0, 0, 0, 0}}};
  if (t0 < t1) segment.first = schedule_tile(p, groups, t0);

  // Pass 1: cost line, and the valid tiles' count and largest cost (all equal when the line is
  // count x largest).
  int v[4] = {0, 0, 0, -1};
  int total[4];
  for (int t = t0; t < t1; ++t) {
    const ScheduleTile tile = segment.tile(p, groups, t);
    v[0] += tile.cost;
    if (tile.valid) {
      v[1] += 1;
      v[3] = max_int(v[3], tile.cost);
    }
  }
  trace_metadata_mark(0);  // MLJ_TRACE only (decode/trace.cuh)
  schedule_scan<kThreads>(s, tid, v, total);
  trace_metadata_mark(1);
  const int cost_base = v[0];
  const int total_cost = total[0];
  const ScheduleShares shares(total_cost, schedule_sharing_workers(workers, total[1], total_cost, total[3]));

  // Pass 2: items, partial slots and split tiles before each segment, and the worker of the
  // segment's last item (-1 without items).
  v[0] = v[1] = v[2] = 0;
  v[3] = -1;
  int pos = cost_base;
  for (int t = t0; t < t1; ++t) {
    const ScheduleTile tile = segment.tile(p, groups, t);
    if (tile.valid) {
      const int pieces = shares.pieces(pos, tile.blocks);
      v[0] += pieces;
      if (pieces > 1) {
        v[1] += pieces;
        v[2] += 1;
      }
      v[3] = shares.owner(pos) + pieces - 1;
    }
    pos += tile.cost;
  }
  trace_metadata_mark(2);
  schedule_scan<kThreads>(s, tid, v, total);
  trace_metadata_mark(3);
  const int total_items = total[0];

  // Pass 3a: the segment's tiles (partial slots, split tiles), by its owner.
  {
    int slot = v[1], split = v[2];
    pos = cost_base;
    for (int t = t0; t < t1; ++t) {
      const ScheduleTile tile = segment.tile(p, groups, t);
      p.reduce_indptr[t] = slot;
      p.header[4 + t] = 0;          // pieces done (stage 1 counts, the reduce waits)
      p.header[4 + tiles + t] = 0;  // reduce CTAs past that wait
      if (tile.valid) {
        const int pieces = shares.pieces(pos, tile.blocks);
        if (pieces > 1) {
          p.reduce_tiles[split++] = t;
          slot += pieces;
        }
      }
      pos += tile.cost;
    }
  }

  // Pass 3b: the items, an even share a thread (a request cut into many pieces is not left to
  // one thread): thread tid emits items [i0, i1) of the list. It starts in the segment that holds
  // i0 (a search over the segments' first items, kept in shared memory with their cost, slot
  // and previous item's worker) and walks on across tiles and segments.
  trace_metadata_mark(4);
  int* seg_item = s;
  int* seg_pos = s + kThreads;
  int* seg_slot = s + 2 * kThreads;
  int* seg_worker = s + 3 * kThreads;  // the worker of the item before the segment's first
  int* seg_len = s + 4 * kThreads;     // the KV tokens of its first tile, -1 when not valid
  int* seg_q_begin = s + 5 * kThreads;  // and the rest of that tile's request span
  int* seg_q_count = s + 6 * kThreads;
  int* seg_page = s + 7 * kThreads;
  static_assert(kMljScheduleSharedIntsPerThread >= 8, "eight per-segment arrays in shared memory");
  seg_item[tid] = v[0];
  seg_pos[tid] = cost_base;
  seg_slot[tid] = v[1];
  seg_worker[tid] = v[3];
  seg_len[tid] = segment.first.valid ? segment.first.span.kv_len : -1;
  seg_q_begin[tid] = segment.first.span.q_begin;
  seg_q_count[tid] = segment.first.span.q_count;
  seg_page[tid] = segment.first.span.page_begin;
  mlj_barrier();
  trace_metadata_mark(5);
  const int share = ceil_div(total_items, kThreads);
  const int i0 = min_int(total_items, tid * share);
  const int i1 = min_int(total_items, i0 + share);
  if (i0 < i1) {
    int lo = 0, hi = kThreads;  // the first segment whose first item is past i0
    while (lo < hi) {
      const int mid = (lo + hi) / 2;
      if (seg_item[mid] <= i0) {
        lo = mid + 1;
      } else {
        hi = mid;
      }
    }
    const int seg = lo - 1;  // holds i0 (segments without items start where the next one does)
    trace_metadata_mark(6);
    int t = seg * per_thread;
    int item = seg_item[seg], slot = seg_slot[seg], previous_worker = seg_worker[seg];
    pos = seg_pos[seg];
    for (int i = i0; i < i1; ++t) {  // the tiles run on across segments: theirs are contiguous
      const int k = t / per_thread;  // a segment's first tile comes from shared memory
      const ScheduleTile tile =
          t % per_thread == 0
              ? schedule_tile(p, seg_len[k] >= 0, RequestSpan{seg_q_begin[k], seg_q_count[k], seg_page[k], max_int(seg_len[k], 0)})
              : schedule_tile(p, groups, t);
      if (tile.valid) {
        const int b = t / groups;
        const int pieces = shares.pieces(pos, tile.blocks);
        const int first = shares.owner(pos);
        for (int j = i - item; j < pieces && item + j < i1; ++j) {
          const int w = first + j;
          const int lo_block = max_int(pos, shares.start(w)) - pos;
          const int hi_block = min_int(pos + tile.blocks, shares.start(w + 1)) - pos;
          int fields[kItemInts];
          fields[kItemRequest] = b;
          fields[kItemRowGroup] = t - b * groups;
          fields[kItemKvBegin] = min_int(lo_block * p.kv_block, tile.span.kv_len);
          fields[kItemKvEnd] = min_int(hi_block * p.kv_block, tile.span.kv_len);
          fields[kItemPartial] = pieces > 1 ? slot + j : -1;
          fields[kItemWorker] = w;
          fields[kItemTile] = t;
          fields[kItemPiece] = j;
          int* it = p.work_items + (item + j) * kItemInts;
#pragma unroll
          for (int f = 0; f < kItemInts; ++f) it[f] = fields[f];
          if (pieces > 1) p.reduce_partial_map[slot + j] = slot + j;
          // work_indptr[x] = the first item whose worker is >= x: this one for the workers after
          // the previous item's, up to its own, whose head gets the item and its request's span.
          const int after = j > 0 ? w - 1 : previous_worker;
          for (int x = after + 1; x <= w; ++x) schedule_set_work_start(p, x, item + j);
          if (after < w) {
            int* head = p.worker_heads + w * kMljWorkerHeadInts;
            head[kHeadQBegin] = tile.span.q_begin;
            head[kHeadQCount] = tile.span.q_count;
            head[kHeadPageBegin] = tile.span.page_begin;
            head[kHeadKvLen] = tile.span.kv_len;
#pragma unroll
            for (int f = 0; f < kItemInts; ++f) head[kHeadItem + f] = fields[f];
          }
          i = item + j + 1;
        }
        previous_worker = first + pieces - 1;
        item += pieces;
        if (pieces > 1) slot += pieces;
      }
      pos += tile.cost;
    }
    trace_metadata_mark(7);
    // The workers after the last item's (all of them without items) start at the list's end.
    if (i1 == total_items) {
      for (int x = previous_worker + 1; x <= workers; ++x) schedule_set_work_start(p, x, total_items);
    }
  }
  trace_metadata_mark(8);
  if (tid == kThreads - 1) {
    if (total_items == 0) {
      for (int x = 0; x <= workers; ++x) schedule_set_work_start(p, x, 0);
    }
    p.reduce_indptr[tiles] = total[1];
    p.header[0] = total_items;
    p.header[1] = total[2];
    p.header[2] = total[1];
    p.header[3] = total_cost;
  }
}

}  // namespace mlj
