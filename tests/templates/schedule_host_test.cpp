// CPU tier: the persistent-decode metadata kernel (decode/schedule.cuh), run on the CPU through
// the fiber prelude with the host's layout and parameter block, against the sequential host
// reference (reference/persistent_schedule.hpp), plus the schedule's properties: every
// (request, row group, KV token) covered exactly once, no item crossing a request, every worker's
// cost within one item's overhead of its share, reduce maps consistent with the items.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "tests/templates/host_platform.hpp"
// The kernel template, as a generated stub would include it (after a platform prelude).
#include "decode/schedule.cuh"
#include "reference/persistent_schedule.hpp"
#include "runtime/persistent_layout.hpp"

namespace mlajit {
namespace {

struct Batch {
  std::vector<int> qo_indptr{0};
  std::vector<int> kv_indptr{0};
  std::vector<int> kv_last_page_lens;
};

// q_lens empty: s_q query tokens per request.
Batch make_batch(const std::vector<int>& kv_lens, const std::vector<int>& q_lens, int s_q, int page_size) {
  Batch b;
  for (std::size_t i = 0; i < kv_lens.size(); ++i) {
    const int len = kv_lens[i];
    const int pages = (len + page_size - 1) / page_size;
    b.kv_indptr.push_back(b.kv_indptr.back() + pages);
    b.kv_last_page_lens.push_back(pages > 0 ? len - (pages - 1) * page_size : 1);
    b.qo_indptr.push_back(b.qo_indptr.back() + (q_lens.empty() ? s_q : q_lens[i]));
  }
  return b;
}

struct KernelRun {
  PersistentLayout layout;
  std::vector<int> metadata;
  const int* at(std::size_t offset) const { return metadata.data() + offset; }
  int items() const { return at(layout.header)[0]; }
  int split_tiles() const { return at(layout.header)[1]; }
  int partials() const { return at(layout.header)[2]; }
  int total_cost() const { return at(layout.header)[3]; }
  const int* item(int i) const { return at(layout.work_items) + std::size_t(i) * mlj::kItemInts; }
};

template <int kThreads = 256>
KernelRun run_kernel(const ScheduleShape& shape, const Batch& b) {
  KernelRun run;
  run.layout = persistent_layout(shape);
  run.metadata.assign(run.layout.total_ints, 0x7f7f7f7f);  // unwritten entries show
  const MljScheduleParams params =
      schedule_params(shape, b.qo_indptr.data(), b.kv_indptr.data(), b.kv_last_page_lens.data(),
                      metadata_in(run.layout, run.metadata.data()));
  mlj_host::launch({1, 1, 1}, kThreads, schedule_shared_bytes(kThreads),
                   [&] { mlj::persistent_schedule<kThreads>(params); });
  return run;
}

std::string describe(const ScheduleShape& s) {
  return "batch " + std::to_string(s.batch) + " heads " + std::to_string(s.heads) + " s_q " + std::to_string(s.s_q) +
         " page " + std::to_string(s.page_size) + " rows/item " + std::to_string(s.rows_per_item) + " workers " +
         std::to_string(s.workers) + " block " + std::to_string(s.kv_block) + " overhead " + std::to_string(s.overhead);
}

void expect_matches_reference(const ScheduleShape& shape, const Batch& b, const KernelRun& run) {
  const reference::PersistentSchedule ref =
      reference::persistent_schedule(shape, b.qo_indptr, b.kv_indptr, b.kv_last_page_lens);
  const PersistentLayout& l = run.layout;
  ASSERT_EQ(run.total_cost(), ref.total_cost);
  ASSERT_EQ(run.items(), int(ref.items.size()));
  ASSERT_LE(run.items(), l.max_items);
  ASSERT_EQ(run.split_tiles(), int(ref.reduce_tiles.size()));
  ASSERT_LE(run.split_tiles(), l.max_split_tiles);
  ASSERT_EQ(run.partials(), int(ref.reduce_partial_map.size()));
  ASSERT_LE(run.partials(), l.max_partials);
  for (int i = 0; i < run.items(); ++i) {
    for (int f = 0; f < mlj::kItemInts; ++f) ASSERT_EQ(run.item(i)[f], ref.items[i][f]) << "item " << i << " field " << f;
  }
  for (int w = 0; w <= shape.workers; ++w) ASSERT_EQ(run.at(l.work_indptr)[w], ref.work_indptr[w]) << "worker " << w;
  // Worker heads: bounds always; the span and first item where the list is not empty (the kernel
  // leaves the rest of an empty worker's head as it was, here 0x7f7f7f7f).
  for (int w = 0; w < shape.workers; ++w) {
    const int* head = run.at(l.header + l.worker_heads) + std::size_t(w) * kMljWorkerHeadInts;
    const auto& want = ref.worker_heads[w];
    const bool empty = want[mlj::kHeadBegin] == want[mlj::kHeadEnd];
    for (int f = 0; f < kMljWorkerHeadInts; ++f) {
      if (f == 6 || f == 7 || (empty && f >= 2)) continue;  // unused; an empty list's span and item
      ASSERT_EQ(head[f], want[f]) << "worker " << w << " head field " << f;
    }
  }
  for (int t = 0; t <= l.tiles; ++t) ASSERT_EQ(run.at(l.reduce_indptr)[t], ref.reduce_indptr[t]) << "tile " << t;
  for (int i = 0; i < run.split_tiles(); ++i) ASSERT_EQ(run.at(l.reduce_tiles)[i], ref.reduce_tiles[i]);
  for (int i = 0; i < run.partials(); ++i) ASSERT_EQ(run.at(l.reduce_partial_map)[i], ref.reduce_partial_map[i]);
}

void expect_properties(const ScheduleShape& shape, const Batch& b, const KernelRun& run) {
  const PersistentLayout& l = run.layout;
  const int* work_indptr = run.at(l.work_indptr);
  const int* reduce_indptr = run.at(l.reduce_indptr);
  // Each tile's pieces-done counter starts at 0 (stage 1 counts, the reduce waits).
  for (int t = 0; t < 2 * l.tiles; ++t) ASSERT_EQ(run.at(l.header)[4 + t], 0) << "reduce counts, entry " << t;
  // Worker lists: a partition of the item list, in order.
  ASSERT_EQ(work_indptr[0], 0);
  ASSERT_EQ(work_indptr[shape.workers], run.items());
  std::vector<long> worker_cost(shape.workers, 0);
  int max_item_cost = 0;
  for (int w = 0; w < shape.workers; ++w) {
    ASSERT_LE(work_indptr[w], work_indptr[w + 1]);
    for (int i = work_indptr[w]; i < work_indptr[w + 1]; ++i) {
      const int* it = run.item(i);
      ASSERT_EQ(it[mlj::kItemWorker], w);
      const int cost = shape.overhead + (it[mlj::kItemKvEnd] - it[mlj::kItemKvBegin] + shape.kv_block - 1) / shape.kv_block;
      worker_cost[w] += cost;
      max_item_cost = std::max(max_item_cost, cost);
    }
  }
  // Balance: at most the worker's share of the cost line plus one item's overhead, hence within
  // one (maximal) item of the ideal total / sharing workers. A line of equal tiles, at most one a
  // worker, is shared by the largest multiple of its tile count that idles at most 1/16 of them.
  long total = 0;
  for (long c : worker_cost) total += c;
  int valid = 0, largest = 0;
  for (int t = 0; t < l.tiles; ++t) {
    const int req = t / l.groups;
    const int q_count = std::clamp(b.qo_indptr[req + 1] - b.qo_indptr[req], 0, shape.s_q);
    if ((t % l.groups) * shape.rows_per_item >= q_count * shape.heads) continue;
    const int kv_len = reference::request_kv_len(b.kv_indptr, b.kv_last_page_lens, shape.page_size, req);
    ++valid;
    largest = std::max(largest, (kv_len + shape.kv_block - 1) / shape.kv_block + shape.overhead);
  }
  const int sharing = mlj::schedule_sharing_workers(shape.workers, valid, run.total_cost(), largest);
  for (int w = sharing; w < shape.workers; ++w) ASSERT_EQ(worker_cost[w], 0) << "idle worker " << w;
  const long share = std::max(1, (run.total_cost() + sharing - 1) / sharing);
  const double ideal = double(run.total_cost()) / sharing;
  for (int w = 0; w < shape.workers; ++w) {
    ASSERT_LE(worker_cost[w], share + shape.overhead) << "worker " << w;
    ASSERT_LE(double(worker_cost[w]), ideal + std::max(max_item_cost, 1) + 1e-9) << "worker " << w;
  }
  ASSERT_EQ(total, long(run.total_cost()) + long(run.partials() - run.split_tiles()) * shape.overhead)
      << "each extra piece of a split tile pays the overhead once more";

  // Coverage: per tile, the items are its consecutive pieces covering [0, kv_len) exactly once.
  int i = 0, split_seen = 0;
  for (int t = 0; t < l.tiles; ++t) {
    const int req = t / l.groups, group = t % l.groups;
    const int q_count = std::clamp(b.qo_indptr[req + 1] - b.qo_indptr[req], 0, shape.s_q);
    const int kv_len = reference::request_kv_len(b.kv_indptr, b.kv_last_page_lens, shape.page_size, req);
    const bool valid = group * shape.rows_per_item < q_count * shape.heads;
    int pieces = 0, covered = 0;
    while (i < run.items() && run.item(i)[mlj::kItemTile] == t) {
      const int* it = run.item(i);
      ASSERT_EQ(it[mlj::kItemRequest], req);
      ASSERT_EQ(it[mlj::kItemRowGroup], group);
      ASSERT_EQ(it[mlj::kItemPiece], pieces);
      ASSERT_EQ(it[mlj::kItemKvBegin], covered) << "tile " << t << ": a gap or an overlap";
      ASSERT_LE(it[mlj::kItemKvBegin], it[mlj::kItemKvEnd]);
      ASSERT_LE(it[mlj::kItemKvEnd], kv_len) << "an item crosses its request";
      if (it[mlj::kItemKvEnd] < kv_len) {
        ASSERT_EQ(it[mlj::kItemKvEnd] % shape.kv_block, 0) << "cut off a block";
      }
      covered = it[mlj::kItemKvEnd];
      ++pieces;
      ++i;
    }
    ASSERT_EQ(pieces > 0, valid) << "tile " << t;
    if (!valid) {
      ASSERT_EQ(reduce_indptr[t + 1], reduce_indptr[t]);
      continue;
    }
    ASSERT_EQ(covered, kv_len) << "tile " << t;
    if (kv_len > 0) {
      ASSERT_GT(run.item(i - 1)[mlj::kItemKvEnd], run.item(i - 1)[mlj::kItemKvBegin]) << "empty piece";
    }
    // Reduce maps: unsplit tiles write the output themselves; split tiles list one slot per piece.
    if (pieces == 1) {
      ASSERT_EQ(run.item(i - 1)[mlj::kItemPartial], -1);
      ASSERT_EQ(reduce_indptr[t + 1], reduce_indptr[t]);
    } else {
      ASSERT_EQ(run.at(l.reduce_tiles)[split_seen++], t);
      ASSERT_EQ(reduce_indptr[t + 1] - reduce_indptr[t], pieces);
      for (int j = 0; j < pieces; ++j) {
        ASSERT_EQ(run.at(l.reduce_partial_map)[reduce_indptr[t] + j], run.item(i - pieces + j)[mlj::kItemPartial]);
      }
    }
  }
  ASSERT_EQ(i, run.items());
  ASSERT_EQ(split_seen, run.split_tiles());
  // Slots are distinct and dense.
  std::vector<int> slots(run.at(l.reduce_partial_map), run.at(l.reduce_partial_map) + run.partials());
  std::sort(slots.begin(), slots.end());
  for (int s = 0; s < int(slots.size()); ++s) ASSERT_EQ(slots[s], s);
}

template <int kThreads = 256>
void check(const ScheduleShape& shape, const Batch& b) {
  SCOPED_TRACE(describe(shape));
  const KernelRun run = run_kernel<kThreads>(shape, b);
  expect_matches_reference(shape, b, run);
  expect_properties(shape, b, run);
}

// Ragged context lengths: zero-length and one-token requests among short, medium and long ones.
std::vector<int> ragged_lens(int batch, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int> lens(batch);
  for (int i = 0; i < batch; ++i) {
    switch (rng() % 6) {
      case 0: lens[i] = 0; break;
      case 1: lens[i] = 1; break;
      case 2: lens[i] = int(rng() % 200); break;
      case 3: lens[i] = int(rng() % 4000); break;
      case 4: lens[i] = 64 * int(1 + rng() % 40); break;  // block-aligned
      default: lens[i] = int(rng() % 40000); break;
    }
  }
  return lens;
}

TEST(PersistentLayout, FormulaMatchesTheBounds) {
  // heads 128, s_q 3, 16 rows per item: 24 row groups per request.
  constexpr PersistentLayout l = persistent_layout(1024, 128, 3, 16, 132);
  static_assert(l.groups == 24 && l.tiles == 24576 && l.max_items == 24576 + 131);
  static_assert(l.max_split_tiles == 131 && l.max_partials == 262);
  static_assert(l.work_items % 4 == 0 && l.reduce_indptr % 4 == 0 && l.total_ints % 4 == 0);
  // Fewer tiles than workers: bounded by the tiles.
  constexpr PersistentLayout small = persistent_layout(1, 20, 1, 16, 264);
  static_assert(small.groups == 2 && small.max_split_tiles == 2 && small.max_partials == 2 + 263);
  EXPECT_EQ(l.bytes(), l.total_ints * 4);
  EXPECT_EQ(l.partial_rows(16), 262u * 16);
}

// The matrix: heads 16/20/128, s_q 1/3, workers 132/264, batch 1 and 1024, ragged.
TEST(PersistentSchedule, MatchesReferenceOnRaggedBatches) {
  for (int heads : {16, 20, 128}) {
    for (int s_q : {1, 3}) {
      for (int workers : {132, 264}) {
        for (int page_size : {1, 64}) {
          ScheduleShape shape;
          shape.heads = heads;
          shape.s_q = s_q;
          shape.workers = workers;
          shape.page_size = page_size;
          shape.rows_per_item = 16;
          for (const std::vector<int>& lens : std::vector<std::vector<int>>{
                   {0}, {1}, {63}, {64}, {100000}, ragged_lens(1024, 7 + heads + s_q), ragged_lens(37, 3)}) {
            shape.batch = int(lens.size());
            check(shape, make_batch(lens, {}, s_q, page_size));
          }
          // All requests empty, and all requests one token.
          shape.batch = 1024;
          check(shape, make_batch(std::vector<int>(1024, 0), {}, s_q, page_size));
          check(shape, make_batch(std::vector<int>(1024, 1), {}, s_q, page_size));
        }
      }
    }
  }
}

// Ragged query tokens (fewer than s_q, none at all), other tile shapes and cost constants.
TEST(PersistentSchedule, RaggedQueriesAndParameters) {
  const std::vector<int> lens = ragged_lens(300, 11);
  std::vector<int> q_lens(300);
  for (int i = 0; i < 300; ++i) q_lens[i] = i % 4;  // 0..3 tokens with s_q 3 (3 = full)
  for (int rows : {1, 8, 16, 64}) {
    for (int overhead : {0, 5, 40}) {
      for (int block : {16, 64}) {
        ScheduleShape shape{.batch = 300, .heads = 20, .s_q = 3, .page_size = 16, .rows_per_item = rows,
                            .workers = 132, .kv_block = block, .overhead = overhead};
        q_lens.back() = 3;
        check(shape, make_batch(lens, q_lens, 3, 16));
      }
    }
  }
  // No request has a query token: no items; every worker's run is empty.
  ScheduleShape shape{.batch = 300, .heads = 20, .s_q = 3, .page_size = 16, .rows_per_item = 16, .workers = 132};
  check(shape, make_batch(lens, std::vector<int>(300, 0), 3, 16));
}

TEST(PersistentSchedule, FewWorkersAndThreadCounts) {
  const std::vector<int> lens = ragged_lens(50, 5);
  for (int workers : {1, 2, 7, 1000}) {
    ScheduleShape shape{.batch = 50, .heads = 16, .s_q = 1, .page_size = 1, .rows_per_item = 16, .workers = workers};
    check<32>(shape, make_batch(lens, {}, 1, 1));
    check<128>(shape, make_batch(lens, {}, 1, 1));
    check<1024>(shape, make_batch(lens, {}, 1, 1));
  }
  // Empty batch: no items, all workers idle.
  ScheduleShape empty{.batch = 0, .heads = 16, .s_q = 1, .workers = 132};
  const KernelRun run = run_kernel(empty, make_batch({}, {}, 1, 1));
  EXPECT_EQ(run.items(), 0);
  for (int w = 0; w <= 132; ++w) EXPECT_EQ(run.at(run.layout.work_indptr)[w], 0);
}

// A skewed batch (one long request among short ones) is split across many workers and balanced.
TEST(PersistentSchedule, SplitsALongRequestAcrossWorkers) {
  std::vector<int> lens(64, 100);
  lens[10] = 132 * 64 * 64;  // dominates the cost line
  ScheduleShape shape{.batch = 64, .heads = 16, .s_q = 1, .page_size = 64, .rows_per_item = 16, .workers = 132};
  const Batch b = make_batch(lens, {}, 1, 64);
  check(shape, b);
  const KernelRun run = run_kernel(shape, b);
  EXPECT_GE(run.split_tiles(), 1);
  int pieces_of_long = 0;
  for (int i = 0; i < run.items(); ++i) pieces_of_long += run.item(i)[mlj::kItemRequest] == 10;
  EXPECT_GE(pieces_of_long, 100);
}

// Shares of floor or ceil of total / workers blocks: a cost line just longer than the workers
// (133 blocks over 132) gives every worker a piece (ceil-sized shares of 2 blocks would leave 65
// of them idle), and S3-like lines give the last worker a full share.
TEST(PersistentSchedule, EveryWorkerGetsAnEvenShare) {
  ScheduleShape shape{.batch = 1, .heads = 16, .s_q = 1, .page_size = 64, .rows_per_item = 16, .workers = 132,
                      .overhead = 0};
  const Batch one = make_batch({133 * 64}, {}, 1, 64);
  check(shape, one);
  const KernelRun run = run_kernel(shape, one);
  ASSERT_EQ(run.items(), 132);
  for (int i = 0; i < run.items(); ++i) {
    const int blocks = (run.item(i)[mlj::kItemKvEnd] - run.item(i)[mlj::kItemKvBegin]) / 64;
    EXPECT_TRUE(blocks == 1 || blocks == 2) << "item " << i << ": " << blocks << " blocks";
    EXPECT_EQ(run.item(i)[mlj::kItemWorker], i);
  }
  shape = ScheduleShape{.batch = 64, .heads = 16, .s_q = 1, .page_size = 64, .rows_per_item = 16, .workers = 132};
  const Batch ragged = make_batch(ragged_lens(64, 0), {}, 1, 64);
  check(shape, ragged);
  const KernelRun s3 = run_kernel(shape, ragged);
  std::vector<long> cost(shape.workers, 0);
  for (int i = 0; i < s3.items(); ++i) {
    const int* it = s3.item(i);
    cost[it[mlj::kItemWorker]] += (it[mlj::kItemKvEnd] - it[mlj::kItemKvBegin] + 63) / 64;
  }
  const long share = s3.total_cost() / shape.workers;
  EXPECT_GE(cost.back() + shape.overhead, share - shape.overhead) << "the last worker's blocks";
}

// A uniform batch of at most one tile a worker is shared by a multiple of its tile count (when
// that idles at most 1/16 of the workers): 128 equal requests on 132 workers are 128 unsplit
// items; 32 are 4 pieces each on 128 workers (equal shares of blocks + overhead); 70 would idle 62 workers, so all 132 share.
TEST(PersistentSchedule, UniformBatchesAlignTheirCuts) {
  ScheduleShape shape{.batch = 128, .heads = 16, .s_q = 1, .page_size = 64, .rows_per_item = 16, .workers = 132};
  const Batch s1 = make_batch(std::vector<int>(128, 4096), {}, 1, 64);
  check(shape, s1);
  const KernelRun run = run_kernel(shape, s1);
  EXPECT_EQ(run.items(), 128);
  EXPECT_EQ(run.split_tiles(), 0);
  for (int w = 0; w < 132; ++w) EXPECT_EQ(run.at(run.layout.work_indptr)[w], std::min(w, 128)) << w;

  shape.batch = 32;
  const Batch s6 = make_batch(std::vector<int>(32, 8192), {}, 1, 64);
  check(shape, s6);
  const KernelRun quarters = run_kernel(shape, s6);
  ASSERT_EQ(quarters.items(), 128);
  EXPECT_EQ(quarters.split_tiles(), 32);
  for (int i = 0; i < 128; ++i) {
    const int* it = quarters.item(i);
    EXPECT_EQ(it[mlj::kItemWorker], i);
    EXPECT_EQ(it[mlj::kItemPiece], i % 4);  // each worker's share starts in its own tile
    EXPECT_GE(it[mlj::kItemKvEnd] - it[mlj::kItemKvBegin], 64 * 28) << "item " << i;  // 33, 33, 33, 29 blocks
  }

  shape.batch = 70;
  const Batch few = make_batch(std::vector<int>(70, 4096), {}, 1, 64);
  check(shape, few);
  EXPECT_GT(run_kernel(shape, few).split_tiles(), 0) << "all 132 workers share 70 tiles";
  // Query tokens make tiles invalid, not unequal: 128 requests, 64 of them with no query token.
  std::vector<int> q_lens(128, 1);
  for (int i = 0; i < 128; i += 2) q_lens[i] = 0;
  shape.batch = 128;
  check(shape, make_batch(std::vector<int>(128, 4096), q_lens, 1, 64));
}

// The shares' divisions go through reciprocals (floor_div_by); they must still be exact, at exact
// multiples (where the product may land just below the quotient) and at the largest operands
// the schedule forms (positions near 2^31 times a few thousand workers).
TEST(PersistentSchedule, FloorDivByIsExact) {
  std::mt19937_64 rng(7);
  const auto check_one = [](long long a, int b) {
    ASSERT_EQ(mlj::floor_div_by(a, b, 1.0 / b), a / b) << a << " / " << b;
  };
  for (int b : {1, 2, 3, 7, 64, 132, 133, 1000, 4096, 65535, 1 << 20, 2147483647}) {
    for (long long q : {0LL, 1LL, 2LL, 131LL, 1LL << 20, (1LL << 31) - 1, 1LL << 35}) {
      for (long long r : {0LL, 1LL, (long long)b - 1}) {
        const long long a = q * b + r;
        if (r < b && a >= 0 && a < (1LL << 52)) check_one(a, b);
      }
    }
  }
  for (int k = 0; k < 200000; ++k) {
    const int b = 1 + int(rng() % 2147483647ULL);
    const long long a = (long long)(rng() % (1ULL << (rng() % 48 + 1)));
    check_one(a, b);
    check_one((long long)(rng() % 2147483648ULL) * (1 + int(rng() % 4096)), 1 + int(rng() % 4096));
  }
}

}  // namespace
}  // namespace mlajit
