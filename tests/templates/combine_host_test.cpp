// CPU tier: the split-K combine (decode_combine) and the persistent reduce
// (decode_persistent_reduce), run on the CPU through the fiber prelude on synthetic partials,
// against a double-precision merge: 1 to 300 splits (more than a CTA's threads: merged chunk by
// chunk), rows whose splits are all, some, or all but one empty (LSE -inf; their partial outputs
// are NaN, which must not be read), LSEs 200 apart (weights that underflow), CTA shapes with one
// or several split ways, idle threads and ragged rows (kv_lora_rank 512, 100, 130, 67, 16), fp32 /
// bf16 / fp16 outputs, LSE written or not. The persistent reduce also gets a shuffled slot map,
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

// decode_combine over total_q = 2 tokens x 3 heads: one row of each pattern.
template <class Cfg>
void expect_combine_matches(int splits) {
  constexpr int kVDim = Cfg::kKvLoraRank;
  const int total_q = 2;
  const int rows = total_q * Cfg::kHeads;
  const std::string what = "combine, " + std::to_string(Cfg::kCombineThreads) + " threads, v_dim " +
                           std::to_string(kVDim) + ", " + std::to_string(splits) + " splits";
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
  mlj_host::launch({unsigned(rows), 1, 1}, Cfg::kCombineThreads, 0, [&] { mlj::decode_combine<Cfg>(p); });

  for (int row = 0; row < rows; ++row) {
    expect_row_merged(got, row, merge_reference(partial_out, partial_lse, kVDim, splits, partial_row(row)), what);
  }
  if (!Cfg::kWriteLse) {
    EXPECT_TRUE(std::all_of(got.lse.begin(), got.lse.end(), [](float l) { return std::isnan(l); }));
  }
}

template <class Cfg>
void expect_combine_matches(std::initializer_list<int> split_counts) {
  for (int splits : split_counts) expect_combine_matches<Cfg>(splits);
}

TEST(CombineOnHost, GeneratorShapeOneToThreeHundredSplits) {
  // 256 threads over 512 columns: two ways of 128 x 16 B; 300 splits take two chunks.
  expect_combine_matches<MergeCfg<256, 512>>({1, 2, 3, 64, 200, 300});
}

TEST(CombineOnHost, OneWayBf16Output) { expect_combine_matches<MergeCfg<128, 512, mlj::bf16>>({2, 64, 200}); }

TEST(CombineOnHost, RaggedColumnsOverThreads) {
  // 128 vectors of 4 over 96 threads: two vectors for some threads, one for others; 3 chunks.
  expect_combine_matches<MergeCfg<96, 512>>({3, 200});
}

TEST(CombineOnHost, SeveralWaysWithIdleThreads) {
  // 25 vectors per row: 2 ways of 25 threads, 14 threads idle; 200 splits in 4 chunks.
  expect_combine_matches<MergeCfg<64, 100>>({1, 64, 200});
}

TEST(CombineOnHost, TinyRowsCapTheWaysAtEight) {
  // 4 vectors per row: 8 ways of 4 threads (the cap), 224 threads idle in the column phase.
  expect_combine_matches<MergeCfg<256, 16>>({5, 300});
}

TEST(CombineOnHost, PairsFp16OutputWithoutLse) { expect_combine_matches<MergeCfg<128, 130, mlj::fp16, false>>({3, 200}); }

TEST(CombineOnHost, ScalarColumnsRagged) { expect_combine_matches<MergeCfg<64, 67>>({64, 200}); }

// decode_persistent_reduce on a hand-built layout: 3 requests (2, 0 and 3 query tokens of 3
// heads), 4 rows per item, s_q 3 (3 row groups per request); four split tiles of 200, 3, 1 and 64
// slots, the slots shuffled over the workspace; the grid has two CTAs past them.
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
  // Tile 1 holds rows 4..7 of a 6-row request and tile 8 row 8 of a 9-row one: the others exit.
  const std::vector<SplitTile> split = {{0, 200}, {1, 3}, {6, 1}, {8, 64}};
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
  mlj_host::launch({unsigned(max_split_tiles), unsigned(kRowsPerItem), 1}, Cfg::kCombineThreads, 0,
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
}

TEST(PersistentReduceOnHost, GeneratorShape) { expect_persistent_reduce_matches<MergeCfg<256, 512>>(); }

TEST(PersistentReduceOnHost, SeveralWaysBf16Output) { expect_persistent_reduce_matches<MergeCfg<64, 100, mlj::bf16>>(); }

}  // namespace
}  // namespace mlajit
