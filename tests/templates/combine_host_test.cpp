// CPU tier: the split-K combine (decode_combine) and the persistent reduce
// (decode_persistent_reduce), run on the CPU through the fiber prelude on synthetic partials,
// against a double-precision merge: 1 to 300 splits (more than a warp's lanes: merged chunk by
// chunk), rows whose splits are all, some, or all but one empty (LSE -inf; their partial outputs
// are NaN, which must not be read), LSEs 200 apart (weights that underflow), CTAs of 2 to 8 warps
// (a warp a row; warps past the last row), idle lanes and ragged rows (kv_lora_rank 512, 100, 130,
// 67, 16), fp32 / bf16 / fp16 outputs, LSE written or not. The persistent reduce also gets a shuffled slot map,
// CTAs past the run's split tiles and rows past a request's query rows, which must write nothing.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "codegen/generator.hpp"
#include "tests/templates/host_platform.hpp"
// The kernel templates, as the generated stub includes them (after a platform prelude).
#include "decode/combine.cuh"

namespace mlajit {
namespace {

// What decode_combine / decode_persistent_reduce read of the stub's MljDecodeConfig.
template <int Threads, int VDim, class Out = mlj::fp32, bool WriteLse = true>
struct MergeCfg {
  using OutType = Out;
  static constexpr int kHeads = 3;
  static constexpr int kKvLoraRank = VDim;
  static constexpr bool kWriteLse = WriteLse;
  static constexpr int kCombineThreads = Threads;
};

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// LSE of split k of n in a row of the given pattern (pattern % 6).
float pattern_lse(int pattern, int k, int n, std::mt19937& rng) {
  std::uniform_real_distribution<float> near(-5.0f, 5.0f), far(-100.0f, 100.0f);
  switch (pattern % 6) {
    case 0: return near(rng);                             // every split has keys
    case 1: return kNegInf;                               // no split has keys: 0 and -inf
    case 2: return k % 3 == 1 ? kNegInf : near(rng);      // some empty
    case 3: return k == n - 1 ? near(rng) : kNegInf;      // only the last split (the last chunk's)
    case 4: return far(rng);                              // weights down to exp(-200): underflow to 0
    default: return k == 0 ? kNegInf : near(rng);         // the first split empty
  }
}

// Fills row `row` of `n` partial rows (partial_row(k)) with the pattern's LSEs and outputs in
// [-1, 1]; an empty split's output is NaN (a merge must not read it).
template <class PartialRow>
void fill_partials(std::vector<float>& out, std::vector<float>& lse, int v_dim, int pattern, int n,
                   PartialRow partial_row, std::mt19937& rng) {
  std::uniform_real_distribution<float> value(-1.0f, 1.0f);
  for (int k = 0; k < n; ++k) {
    const std::size_t r = std::size_t(partial_row(k));
    lse[r] = pattern_lse(pattern, k, n, rng);
    for (int c = 0; c < v_dim; ++c) out[r * v_dim + c] = lse[r] == kNegInf ? NAN : value(rng);
  }
}

struct Merged {
  std::vector<double> out;
  double lse = -INFINITY;
};

// The merge written out plainly, in double.
template <class PartialRow>
Merged merge_reference(const std::vector<float>& out, const std::vector<float>& lse, int v_dim, int n,
                       PartialRow partial_row) {
  Merged m;
  m.out.assign(v_dim, 0.0);
  double max_lse = -INFINITY;
  for (int k = 0; k < n; ++k) max_lse = std::max(max_lse, double(lse[partial_row(k)]));
  if (max_lse == -INFINITY) return m;
  double sum = 0.0;
  for (int k = 0; k < n; ++k) {
    const std::size_t r = std::size_t(partial_row(k));
    if (lse[r] == kNegInf) continue;
    const double w = std::exp(double(lse[r]) - max_lse);
    sum += w;
    for (int c = 0; c < v_dim; ++c) m.out[c] += w * out[r * v_dim + c];
  }
  for (double& o : m.out) o /= sum;
  m.lse = max_lse + std::log(sum);
  return m;
}

// Output rows, poisoned (NaN) so that a row nobody writes shows.
template <class Cfg>
struct OutputRows {
  using Storage = typename Cfg::OutType::storage;
  std::vector<Storage> out;
  std::vector<float> lse;
  explicit OutputRows(int rows) : out(std::size_t(rows) * Cfg::kKvLoraRank, Cfg::OutType::from_float(NAN)), lse(rows, NAN) {}
  float value(long long row, int c) const { return Cfg::OutType::to_float(out[row * Cfg::kKvLoraRank + c]); }
};

template <class Cfg>
void expect_row_merged(const OutputRows<Cfg>& got, long long row, const Merged& want, const std::string& what) {
  SCOPED_TRACE(what + ", row " + std::to_string(row));
  const bool exact = std::is_same_v<typename Cfg::OutType, mlj::fp32>;
  const double rtol = exact ? 1e-5 : std::is_same_v<typename Cfg::OutType, mlj::bf16> ? 1.0 / 256 : 1.0 / 2048;
  int mismatches = 0;
  for (int c = 0; c < Cfg::kKvLoraRank; ++c) {
    const float o = got.value(row, c);
    const bool ok = want.lse == -INFINITY ? o == 0.0f && !std::signbit(o)
                                          : std::abs(o - want.out[c]) <= 2e-5 + rtol * std::abs(want.out[c]);
    if (!ok && ++mismatches <= 3) ADD_FAILURE() << "column " << c << ": " << o << ", want " << want.out[c];
  }
  EXPECT_EQ(mismatches, 0);
  if (!Cfg::kWriteLse) return;
  if (want.lse == -INFINITY) {
    EXPECT_EQ(got.lse[row], kNegInf);
  } else {
    EXPECT_NEAR(got.lse[row], want.lse, 1e-5 * std::max(1.0, std::abs(want.lse)));
  }
}

// decode_combine over total_q = 2 tokens x 3 heads: one row of each pattern, merged by 1, 2, 4 ...
// warps a row (p.ways; whatever Source::combine_ways would pick).
template <class Cfg>
void expect_combine_matches(int splits, int ways) {
  constexpr int kVDim = Cfg::kKvLoraRank;
  const int total_q = 2;
  const int rows = total_q * Cfg::kHeads;
  const std::string what = "combine, " + std::to_string(Cfg::kCombineThreads) + " threads, v_dim " +
                           std::to_string(kVDim) + ", " + std::to_string(splits) + " splits, " + std::to_string(ways) +
                           " warps a row";
  std::mt19937 rng(splits * 7919 + kVDim);
  std::vector<float> partial_out(std::size_t(splits) * rows * kVDim), partial_lse(std::size_t(splits) * rows);
  auto partial_row = [&](int row) { return [=](int k) { return (long long)k * rows + row; }; };
  for (int row = 0; row < rows; ++row) fill_partials(partial_out, partial_lse, kVDim, row, splits, partial_row(row), rng);

  OutputRows<Cfg> got(rows);
  MljCombineParams p{};
  p.partial_out = partial_out.data();
  p.partial_lse = partial_lse.data();
  p.out = got.out.data();
  p.lse = Cfg::kWriteLse ? got.lse.data() : nullptr;
  p.total_q = total_q;
  p.num_splits = splits;
  p.ways = ways;
  const int rows_per_cta = mlj::kCombineWarps<Cfg> / ways;
  mlj_host::launch({unsigned(mlj::ceil_div(rows, rows_per_cta)), 1, 1}, Cfg::kCombineThreads, 0,
                   [&] { mlj::decode_combine<Cfg>(p); });

  for (int row = 0; row < rows; ++row) {
    expect_row_merged(got, row, merge_reference(partial_out, partial_lse, kVDim, splits, partial_row(row)), what);
  }
  if (!Cfg::kWriteLse) {
    EXPECT_TRUE(std::all_of(got.lse.begin(), got.lse.end(), [](float l) { return std::isnan(l); }));
  }
}

template <class Cfg>
void expect_combine_matches(std::initializer_list<int> split_counts) {
  for (int splits : split_counts) {
    for (int ways = 1; ways <= mlj::kCombineWarps<Cfg>; ways *= 2) expect_combine_matches<Cfg>(splits, ways);
  }
}

TEST(CombineOnHost, GeneratorShapeOneToThreeHundredSplits) {
  // 8 warps a CTA (6 rows: 2 warps idle), 128 vectors of 4 a row: 4 a lane; 300 splits take 10
  // chunks of 32.
  expect_combine_matches<MergeCfg<256, 512>>({1, 2, 3, 32, 33, 64, 200, 300});
}

TEST(CombineOnHost, FourWarpsBf16Output) { expect_combine_matches<MergeCfg<128, 512, mlj::bf16>>({2, 64, 200}); }

TEST(CombineOnHost, OneWarpACta) {
  // 6 rows over CTAs of 1 warp: 6 CTAs, every split in one warp.
  expect_combine_matches<MergeCfg<32, 512>>({3, 200});
}

TEST(CombineOnHost, IdleLanes) {
  // 25 vectors a row: lanes 25-31 load nothing; CTAs of 2 warps.
  expect_combine_matches<MergeCfg<64, 100>>({1, 64, 200});
}

TEST(CombineOnHost, TinyRows) {
  // 4 vectors a row: 28 lanes load nothing.
  expect_combine_matches<MergeCfg<256, 16>>({5, 300});
}

TEST(CombineOnHost, PairsFp16OutputWithoutLse) {
  // 65 vectors of 2: lane 0 has a third, the others two.
  expect_combine_matches<MergeCfg<128, 130, mlj::fp16, false>>({3, 200});
}

TEST(CombineOnHost, ScalarColumnsRagged) { expect_combine_matches<MergeCfg<64, 67>>({64, 200}); }

// decode_persistent_reduce on a hand-built layout: 3 requests (2, 0 and 3 query tokens of 3
// heads), 4 rows per item, s_q 3 (3 row groups per request); six split tiles of 200, 7, 3, 1, 13
// and 64 slots, the slots shuffled over the workspace; the grid has two CTAs past them.
template <class Cfg>
void expect_persistent_reduce_matches() {
  constexpr int kVDim = Cfg::kKvLoraRank;
  constexpr int kRowsPerItem = 4;
  constexpr int kGroups = 3;
  const std::vector<int> qo_indptr = {0, 2, 2, 5};
  const int total_q = qo_indptr.back();
  const int tiles = 3 * kGroups;
  struct SplitTile {
    int tile, slots;
  };
  // Tile 1 holds rows 4..7 of a 6-row request, tile 2 rows 8..11 of it (none) and tile 8 row 8 of
  // a 9-row one: the others exit.
  // Slot counts pick 8, 2, 1, 1, 4 and 8 warps a row (merge_ways); tile 2 (3 slots) is past
  // request 0's rows.
  const std::vector<SplitTile> split = {{0, 200}, {1, 7}, {2, 3}, {6, 1}, {7, 13}, {8, 64}};
  const int max_split_tiles = int(split.size()) + 2;

  std::vector<int> reduce_indptr(tiles + 1, 0), reduce_tiles(max_split_tiles, 0x7f7f7f7f);
  for (std::size_t i = 0; i < split.size(); ++i) {
    reduce_tiles[i] = split[i].tile;
    reduce_indptr[split[i].tile + 1] = split[i].slots;
  }
  std::partial_sum(reduce_indptr.begin(), reduce_indptr.end(), reduce_indptr.begin());
  const int slots = reduce_indptr.back();
  std::vector<int> partial_map(slots);
  std::iota(partial_map.begin(), partial_map.end(), 0);
  std::mt19937 rng(kVDim);
  std::shuffle(partial_map.begin(), partial_map.end(), rng);
  const int header[4] = {0, int(split.size()), slots, 0};

  std::vector<float> partial_out(std::size_t(slots) * kRowsPerItem * kVDim, NAN);
  std::vector<float> partial_lse(std::size_t(slots) * kRowsPerItem, NAN);
  auto partial_row = [&](int t, int r) {
    return [&, t, r](int k) { return (long long)partial_map[reduce_indptr[t] + k] * kRowsPerItem + r; };
  };
  for (std::size_t i = 0; i < split.size(); ++i) {
    for (int r = 0; r < kRowsPerItem; ++r) {
      fill_partials(partial_out, partial_lse, kVDim, int(i) + r, split[i].slots, partial_row(split[i].tile, r), rng);
    }
  }

  OutputRows<Cfg> got(total_q * Cfg::kHeads);
  MljDecodeParams p{};
  p.out = got.out.data();
  p.lse = Cfg::kWriteLse ? got.lse.data() : nullptr;
  p.partial_out = partial_out.data();
  p.partial_lse = partial_lse.data();
  p.qo_indptr = qo_indptr.data();
  MljPersistentLayout layout{};
  layout.header = header;
  layout.reduce_indptr = reduce_indptr.data();
  layout.reduce_tiles = reduce_tiles.data();
  layout.reduce_partial_map = partial_map.data();
  layout.groups = kGroups;
  layout.rows_per_item = kRowsPerItem;
  // Stage 1 has written every piece (the reduce waits for each tile's count).
  std::vector<int> pieces_done(std::size_t(reduce_indptr.size()), 0);
  std::vector<int> pieces_taken(pieces_done.size(), 0);
  for (const SplitTile& s : split) pieces_done[s.tile] = s.slots;
  layout.pieces_done = pieces_done.data();
  layout.pieces_taken = pieces_taken.data();
  mlj_host::launch({unsigned(kRowsPerItem), unsigned(max_split_tiles), 1}, Cfg::kCombineThreads, 0,
                   [&] { mlj::decode_persistent_reduce<Cfg>(p, layout); });

  std::vector<bool> merged(got.lse.size(), false);
  for (const SplitTile& s : split) {
    const int b = s.tile / kGroups;
    const int g = s.tile % kGroups;
    const int request_rows = (qo_indptr[b + 1] - qo_indptr[b]) * Cfg::kHeads;
    for (int r = 0; r < kRowsPerItem && g * kRowsPerItem + r < request_rows; ++r) {
      const long long out_row = (long long)qo_indptr[b] * Cfg::kHeads + g * kRowsPerItem + r;
      merged[out_row] = true;
      expect_row_merged(got, out_row, merge_reference(partial_out, partial_lse, kVDim, s.slots, partial_row(s.tile, r)),
                        "persistent reduce, tile " + std::to_string(s.tile) + " of " + std::to_string(s.slots) + " slots");
    }
  }
  for (std::size_t row = 0; row < merged.size(); ++row) {
    if (merged[row]) continue;
    EXPECT_TRUE(std::isnan(got.value(row, 0)) && std::isnan(got.lse[row])) << "row " << row << " written";
  }
  // Every split tile's last reduce CTA zeroed its counts: the metadata is ready for the next decode.
  for (std::size_t t = 0; t < pieces_done.size(); ++t) {
    EXPECT_EQ(pieces_done[t], 0) << "tile " << t;
    EXPECT_EQ(pieces_taken[t], 0) << "tile " << t;
  }
}

TEST(PersistentReduceOnHost, GeneratorShape) { expect_persistent_reduce_matches<MergeCfg<256, 512>>(); }

TEST(PersistentReduceOnHost, TwoWarpsBf16Output) { expect_persistent_reduce_matches<MergeCfg<64, 100, mlj::bf16>>(); }

// The grid combine's host side sizes its grid with Source::combine_ways; the reduce picks its
// warps a row on the device with merge_ways: one rule.
template <class Cfg>
void expect_one_ways_rule() {
  Source source;
  source.combine_warps = mlj::kCombineWarps<Cfg>;
  for (int n = 0; n <= 600; ++n) {
    ASSERT_EQ(source.combine_ways(n), mlj::merge_ways<Cfg>(n)) << n << " partials, " << source.combine_warps << " warps";
  }
  EXPECT_EQ(source.combine_ways(31), std::min(8, source.combine_warps));
  EXPECT_EQ(source.combine_ways(2), 1);
  EXPECT_EQ(source.combine_ways(3), std::min(2, source.combine_warps));
}

TEST(CombineWays, HostAndDeviceAgree) {
  expect_one_ways_rule<MergeCfg<256, 512>>();
  expect_one_ways_rule<MergeCfg<64, 100>>();
}

}  // namespace
}  // namespace mlajit
