// GPU tier: the generated decode against the float32 reference on many shapes, including odd
// head counts (1, 20, 100), ragged and zero-length requests, pages of 1 to 256 tokens, s_q 1..8,
// bf16, fp16 and both FP8 forms, fused RoPE (NeoX, GPT-J), soft-cap, forced and automatic
// split-K, on every kernel family that serves each spec. Skips with a message where no GPU is.
//
// FP8 tolerance: the same elementwise bounds as bf16 / fp16 output (tools::tolerance_for), far
// tighter than AITER's cosine similarity >= 0.97. The reference reads the very fp8 bytes the
// kernel reads and widens them exactly (every e4m3 value is an fp32), both apply the same scales,
// and the portable family keeps P in fp32: FP8's quantisation error is in the inputs of both,
// not between them. What differs is fp32 summation order and the output's own rounding, as for
// bf16; on the mma family (which widens e4m3 to bf16 / fp16 exactly) also P's rounding to the
// operand type, as for a 16-bit cache. Every case also checks AITER's cal_diff cosine distance
// < 1e-5 (its bf16 bound).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <set>

#include <fmt/format.h>

#include "codegen/error.hpp"
#include "tests/gpu/gpu_engine.hpp"
#include "tools/decode_check.hpp"
#include "tuning/choose.hpp"

namespace mlajit {
namespace {

struct Case {
  int heads;
  int page_size;
  int s_q;
  DType dtype;        // q, kv and out
  int splits;         // 0 = auto
  bool lse;
  std::vector<int> kv_lens;
  std::vector<int> q_lens;  // empty = s_q for every request
  bool causal = true;
  float logit_cap = 0.0f;
  DType kv_dtype_override = DType::fp32;  // fp32 = same as dtype
  DType q_dtype_override = DType::fp32;   // fp32 = same as dtype
  RopeStyle rope = RopeStyle::none;
  // Forced mma tile (0 = the model's per-family choice, every family): rows per CTA, tokens per
  // KV tile, stages. Set: the mma family runs with this tile (and wgmma with its model tile).
  int mma_rows = 0;
  int mma_tokens = 0;
  int mma_stages = 0;
  // Forced wgmma rows per CTA (64: the wide tile) and tokens per tile (0: the model's; 32: the
  // wide tile's 4-slot ring); set: only the wgmma family runs, with them.
  int wgmma_rows = 0;
  int wgmma_tokens = 0;
  // q times 2^q_gain_log2 (exact in bf16) and sm_scale times its inverse: the same logits from q
  // values past fp16's range (> 65504) or below its subnormals (< 2^-24), which wgmma's fp16 math
  // for an fp8 cache must bring into range (wgmma_stage_q).
  int q_gain_log2 = 0;
};

std::string case_name(const Case& c) {
  std::string name = fmt::format("h{}_ps{}_sq{}_{}_s{}{}{}", c.heads, c.page_size, c.s_q, dtype_name(c.dtype),
                                 c.splits, c.lse ? "_lse" : "", c.causal ? "" : "_nc");
  if (c.logit_cap > 0) name += "_cap";
  if (c.kv_dtype_override != DType::fp32) name += "_kv" + std::string(dtype_name(c.kv_dtype_override));
  if (c.q_dtype_override != DType::fp32) name += "_q" + std::string(dtype_name(c.q_dtype_override));
  if (c.q_gain_log2 != 0) name += fmt::format("_qgain{}", c.q_gain_log2 < 0 ? "m" + std::to_string(-c.q_gain_log2) : std::to_string(c.q_gain_log2));
  if (c.rope != RopeStyle::none) name += "_rope" + std::string(rope_style_name(c.rope));
  if (!c.q_lens.empty()) name += "_raggedq";
  if (c.mma_rows > 0) name += fmt::format("_mmahc{}_bn{}_st{}", c.mma_rows, c.mma_tokens, c.mma_stages);
  if (c.wgmma_rows > 0) name += fmt::format("_wghc{}", c.wgmma_rows);
  if (c.wgmma_tokens > 0) name += fmt::format("_bn{}", c.wgmma_tokens);
  int longest = 0;
  for (int len : c.kv_lens) longest = std::max(longest, len);
  return name + fmt::format("_kv{}", longest);
}

// gtest prints parameters by name instead of dumping their bytes.
void PrintTo(const Case& c, std::ostream* os) { *os << case_name(c); }

std::vector<Case> all_cases() {
  std::vector<Case> cases;
  const int heads_list[] = {1, 16, 20, 64, 100, 128};
  const int pages[] = {1, 16, 64};
  const int split_choices[] = {0, 1, 5};
  int i = 0;
  for (int heads : heads_list) {
    for (int page : pages) {
      Case c;
      c.heads = heads;
      c.page_size = page;
      c.s_q = 1 + i % 4;
      c.dtype = i % 2 == 0 ? DType::bf16 : DType::fp16;
      c.splits = split_choices[i % 3];
      c.lse = i % 2 == 1;
      // Ragged: empty, one token, a partial page, several pages plus a remainder.
      c.kv_lens = heads >= 64 ? std::vector<int>{0, 1, page + 3, 203}
                              : std::vector<int>{0, 1, page + 3, 517, 1029};
      cases.push_back(c);
      ++i;
    }
  }
  for (int s_q = 1; s_q <= 8; ++s_q) {
    for (DType dtype : {DType::bf16, DType::fp16}) {
      Case c{16, 64, s_q, dtype, 0, true, {3000, 64, 0, 65}, {}};
      if (s_q > 1) c.q_lens = {s_q, 1, 0, s_q - 1};  // ragged query lengths, one empty request
      cases.push_back(c);
    }
  }
  Case non_causal{20, 16, 3, DType::bf16, 3, true, {50, 2, 0}, {}};
  non_causal.causal = false;
  cases.push_back(non_causal);
  Case capped{16, 64, 1, DType::bf16, 0, true, {700, 33}, {}};
  capped.logit_cap = 5.0f;
  cases.push_back(capped);
  Case long_context{16, 64, 1, DType::bf16, 0, true, {32768}, {}};  // auto split-K on one request
  cases.push_back(long_context);
  Case fp8_kv{16, 64, 2, DType::bf16, 4, true, {300, 0, 77}, {}};
  fp8_kv.kv_dtype_override = DType::fp8_e4m3;
  cases.push_back(fp8_kv);
  for (int page : {128, 256}) {  // pages larger than a tile; kv_indices padded past the end
    const DType dtype = page == 128 ? DType::bf16 : DType::fp16;
    cases.push_back(Case{16, page, 2, dtype, 0, true, {0, 1, page + 5, 3 * page}, {2, 2, 1, 2}});
  }
  return cases;
}

// The issue's matrix: GQA 1 / 20 / 100 x s_q 3 / 5 / 7, each with a bf16 or fp16 case (both
// families) and an FP8 case (both forms in turn), RoPE styles, pages 1 / 16 / 128, causal or not,
// soft-cap and splits cycling. Requests are ragged: one empty, one with a single key (its first
// query tokens have no key of their own and, causally, see nothing), one partial page, one long.
std::vector<Case> feature_cases() {
  std::vector<Case> cases;
  const int pages[] = {1, 16, 128};
  const RopeStyle ropes[] = {RopeStyle::neox, RopeStyle::gptj, RopeStyle::none};
  const int split_choices[] = {0, 1, 3};
  int i = 0;
  for (int heads : {1, 20, 100}) {
    for (int s_q : {3, 5, 7}) {
      for (bool fp8 : {false, true}) {
        Case c;
        c.heads = heads;
        c.page_size = pages[i % 3];
        c.s_q = s_q;
        c.dtype = fp8 ? DType::bf16 : (i % 4 == 0 ? DType::fp16 : DType::bf16);
        if (fp8) {
          c.kv_dtype_override = DType::fp8_e4m3;
          if (i % 4 == 1) c.q_dtype_override = DType::fp8_e4m3;
        }
        c.splits = split_choices[(i / 3) % 3];
        c.lse = true;
        c.kv_lens = {0, 1, c.page_size + 3, heads == 100 ? 190 : 700};
        c.q_lens = {s_q, s_q, s_q - 1, s_q};
        c.causal = i % 5 != 3;
        c.logit_cap = i % 7 == 2 ? 20.0f : 0.0f;
        c.rope = ropes[i % 3];
        cases.push_back(c);
        ++i;
      }
    }
  }
  return cases;
}

// Multi-row mma CTAs (heads_per_cta 32 and 64: 2 and 4 M tiles) forced on GPU-tier shapes: head
// counts that fill, straddle and under-fill a CTA's rows (16, 20, 64, 100, 128: with s_q 1..4 a
// CTA holds several query tokens, and the causal mask differs row by row inside it), pages 1 /
// 16 / 64, ragged requests (empty, one key, a partial page, long), split-K off, forced and auto,
// fused RoPE, soft-cap and fp16 on some; tile shapes 32 x 32 x 4, 32 x 64 x 2, 64 x 32 x 3 and
// 64 x 32 x 2 (rows x tokens x stages); and 16-row CTAs on heads 20 / 100.
// The wide wgmma tile (64 rows per CTA), forced: heads 64 / 100 / 128 and 20 x s_q 4, s_q 1-3,
// pages 1 / 16 / 64, bf16 / fp16, split-K off, auto and forced, ragged query lengths, empty and
// one-token requests, soft-cap, non-causal, LSE.
std::vector<Case> wide_wgmma_cases() {
  const int pages[] = {1, 16, 64};
  const int split_choices[] = {1, 0, 4};
  std::vector<Case> cases;
  int i = 0;
  for (int heads : {64, 100, 128, 20}) {
    for (int s_q : {1, 2, 3}) {
      if (heads == 20 && s_q < 3) continue;  // 20 x 3 = 60 rows: one wide CTA, padded
      if (heads * s_q > 256) continue;
      Case c;
      c.heads = heads;
      c.s_q = s_q;
      c.page_size = pages[i % 3];
      c.dtype = i % 3 == 2 ? DType::fp16 : DType::bf16;
      c.splits = split_choices[i % 3];
      c.lse = true;
      c.kv_lens = {0, 1, c.page_size + 3, 203, 600};
      if (s_q > 1 && i % 2 == 0) {
        c.q_lens.assign(c.kv_lens.size(), s_q);
        c.q_lens[2] = s_q - 1;
      }
      c.causal = i % 4 != 3;
      c.logit_cap = i % 3 == 1 ? 25.0f : 0.0f;
      c.wgmma_rows = 64;
      cases.push_back(c);
      c.wgmma_tokens = 32;  // the same case on the 32-token, 4-slot ring
      cases.push_back(c);
      ++i;
    }
  }
  return cases;
}

std::vector<Case> mma_row_cases() {
  struct Tile {
    int rows, tokens, stages;
  };
  const Tile tiles[] = {{32, 32, 4}, {64, 32, 3}, {32, 64, 2}, {64, 32, 2}};
  const int heads_list[] = {20, 100, 128, 16, 64};
  const int pages[] = {1, 16, 64};
  const int split_choices[] = {1, 0, 4};
  std::vector<Case> cases;
  int i = 0;
  for (int heads : heads_list) {
    for (int s_q = 1; s_q <= 4; ++s_q) {
      if (heads * s_q > 256) continue;  // 128 x 3, 128 x 4, 100 x 3 ...: the same code paths, slower references
      Case c;
      c.heads = heads;
      c.s_q = s_q;
      c.page_size = pages[i % 3];
      c.dtype = i % 4 == 3 ? DType::fp16 : DType::bf16;
      c.splits = split_choices[i % 3];
      c.lse = true;
      c.kv_lens = heads * s_q >= 128 ? std::vector<int>{0, 1, c.page_size + 3, 203}
                                     : std::vector<int>{0, 1, c.page_size + 3, 517, 1029};
      if (s_q > 1 && i % 2 == 0) {  // ragged query lengths
        c.q_lens.assign(c.kv_lens.size(), s_q);
        c.q_lens[2] = s_q - 1;
      }
      c.causal = i % 5 != 4;
      c.logit_cap = i % 6 == 2 ? 20.0f : 0.0f;
      c.rope = i % 4 == 1 ? RopeStyle::neox : (i % 7 == 3 ? RopeStyle::gptj : RopeStyle::none);
      const Tile& t = tiles[i % 4];
      c.mma_rows = t.rows;
      c.mma_tokens = t.tokens;
      c.mma_stages = t.stages;
      cases.push_back(c);
      ++i;
    }
  }
  // The v2 row split (16-row CTAs) on head counts the model now gives 32 / 64 rows, so it keeps
  // its GPU coverage there.
  for (int heads : {20, 100}) {
    Case c{heads, 16, 3, DType::bf16, 0, true, {0, 1, 19, 700}, {3, 3, 2, 3}};
    c.rope = heads == 20 ? RopeStyle::neox : RopeStyle::none;
    c.mma_rows = 16;
    c.mma_tokens = 32;
    c.mma_stages = 2;
    cases.push_back(c);
  }
  // One long request: many tiles through the ring, auto split-K, 64 and 32 rows.
  for (int rows : {64, 32}) {
    Case c{128, 64, 1, DType::bf16, 0, true, {9000, 4097}, {}};
    c.mma_rows = rows;
    c.mma_tokens = 32;
    c.mma_stages = rows == 64 ? 3 : 4;
    cases.push_back(c);
  }
  return cases;
}

// fp8 (e4m3) caches on the mma family, forced (and on sm_90a the wgmma family with its model
// tile): q bf16 / fp8 / fp16 in turn (the
// fp16 cases also write fp16 output), heads 1 / 16 / 20 / 128, s_q 1 / 3 (ragged query lengths
// on some), pages 1 / 16 / 64, ragged requests with an empty one, split-K off, auto and forced,
// every rows x tokens x stages tile that fits (16 rows with 32- and 64-token tiles, 32 and 64
// rows). make_problem gives fp8 tensors non-unit scales: kv_scale 0.25, q_scale 0.5 for fp8 q.
std::vector<Case> fp8_mma_cases() {
  struct Tile {
    int rows, tokens, stages;
  };
  const Tile tiles[] = {{16, 32, 2}, {32, 32, 4}, {64, 32, 3}, {16, 64, 2}, {32, 64, 2}, {64, 32, 4}};
  const int pages[] = {1, 16, 64};
  const int split_choices[] = {1, 0, 4};
  std::vector<Case> cases;
  int i = 0;
  for (int heads : {1, 16, 20, 128}) {
    for (int s_q : {1, 3}) {
      for (int variant = 0; variant < 2; ++variant, ++i) {
        Case c;
        c.heads = heads;
        c.s_q = s_q;
        c.page_size = pages[i % 3];
        const int form = i % 3;  // q: bf16, fp8, fp16
        c.dtype = form == 2 ? DType::fp16 : DType::bf16;
        c.kv_dtype_override = DType::fp8_e4m3;
        if (form == 1) c.q_dtype_override = DType::fp8_e4m3;
        c.splits = split_choices[i % 3];
        c.lse = i % 2 == 0;
        c.kv_lens = heads * s_q >= 128 ? std::vector<int>{0, 1, c.page_size + 3, 203}
                                       : std::vector<int>{0, 1, c.page_size + 3, 517, 1029};
        if (s_q > 1 && variant == 1) {
          c.q_lens.assign(c.kv_lens.size(), s_q);
          c.q_lens[2] = s_q - 1;
        }
        c.causal = i % 5 != 4;
        const Tile& t = tiles[i % 6];
        c.mma_rows = t.rows;
        c.mma_tokens = t.tokens;
        c.mma_stages = t.stages;
        cases.push_back(c);
      }
    }
  }
  // bf16 q far outside fp16's range both ways (wgmma computes an fp8 cache in fp16), same logits.
  for (int gain : {20, -40}) {
    Case c{20, 16, 2, DType::bf16, 0, true, {0, 1, 77, 700}, {}};
    c.kv_dtype_override = DType::fp8_e4m3;
    c.q_gain_log2 = gain;
    c.mma_rows = 16;  // mma with this tile, and wgmma with its model tile
    c.mma_tokens = 32;
    c.mma_stages = 2;
    cases.push_back(c);
  }
  // One long request: many tiles through the ring (and ring slots reused), auto split-K, the
  // model's S7 tile (16 rows, 2 CTAs / SM) and 64 rows.
  for (int rows : {16, 64}) {
    Case c{rows == 16 ? 16 : 128, 64, 1, DType::bf16, 0, true, {9000, 4097}, {}};
    c.kv_dtype_override = DType::fp8_e4m3;
    c.mma_rows = rows;
    c.mma_tokens = 32;
    c.mma_stages = rows == 64 ? 3 : 2;
    cases.push_back(c);
  }
  return cases;
}

Spec spec_of(const Case& c) {
  Spec spec;
  spec.heads = c.heads;
  spec.page_size = c.page_size;
  spec.s_q = c.s_q;
  spec.q_dtype = c.q_dtype_override == DType::fp32 ? c.dtype : c.q_dtype_override;
  spec.out_dtype = c.dtype;
  spec.kv_dtype = c.kv_dtype_override == DType::fp32 ? c.dtype : c.kv_dtype_override;
  spec.rope = c.rope;
  spec.return_lse = c.lse;
  spec.causal = c.causal;
  spec.logit_cap = c.logit_cap;
  return spec;
}

reference::DecodeProblem problem_of(const Case& c) {
  reference::ProblemOptions options;
  options.kv_lens = c.kv_lens;
  options.q_lens = c.q_lens;
  options.seed = std::hash<std::string>{}(case_name(c));
  reference::DecodeProblem problem = reference::make_problem(spec_of(c), options);
  if (c.q_gain_log2 != 0) {
    const Spec spec = spec_of(c);
    const std::size_t count = problem.q.size() / dtype_size(spec.q_dtype);
    for (std::size_t i = 0; i < count; ++i) {
      store_element(problem.q.data(), spec.q_dtype, i,
                    std::ldexp(load_element(problem.q.data(), spec.q_dtype, i), c.q_gain_log2));
    }
    problem.sm_scale = std::ldexp(problem.sm_scale, -c.q_gain_log2);
  }
  return problem;
}

class DecodeNumerics : public ::testing::TestWithParam<Case> {};

TEST_P(DecodeNumerics, MatchesFloat32Reference) {
  REQUIRE_GPU();
  const Case& c = GetParam();
  const Spec spec = spec_of(c);
  const reference::DecodeProblem problem = problem_of(c);
  const reference::DecodeResult want = reference::decode(problem);
  const double max_v = tools::max_abs_value(problem);
  // Every kernel family that can serve the spec on this device, on the same problem.
  const Target target = engine->device_info().target;
  std::vector<KernelFamily> families = families_serving(spec, target);
  if (c.mma_rows > 0) {
    // A forced mma tile: the mma family with it, and the wgmma family (its model tile) where it
    // serves the spec too.
    if (!mma_family_supports(spec, target)) GTEST_SKIP() << "no mma family on " << target.arch;
    families = {KernelFamily::mma};
    if (wgmma_family_supports(spec, target)) families.push_back(KernelFamily::wgmma);
  }
  if (c.wgmma_rows > 0) {
    if (!wgmma_family_supports(spec, target)) GTEST_SKIP() << "no wgmma family on " << target.arch;
    families = {KernelFamily::wgmma};
  }
  for (KernelFamily family : families) {
    SCOPED_TRACE(std::string(family_name(family)));
    TileConfig tile = tuning::choose_tile(spec, target, family);
    const bool forced = c.mma_rows > 0 && family == KernelFamily::mma;
    if (forced) {
      tile.heads_per_cta = c.mma_rows;
      tile.tokens_per_tile = c.mma_tokens;
      tile.stages = c.mma_stages;
    }
    if (c.wgmma_rows > 0) tile.heads_per_cta = c.wgmma_rows;
    if (c.wgmma_tokens > 0) {
      tile.tokens_per_tile = c.wgmma_tokens;
      tile.stages = wgmma_stages(tile);
    }
    const tools::DeviceRun run = tools::run_on_device(*engine, problem, c.splits, tile);
    const tools::Tolerance tol = tools::tolerance_for(spec, family, max_v);
    const reference::Comparison cmp = reference::compare(want, run.out, c.lse ? &run.lse : nullptr, tol.atol, tol.rtol);
    std::printf("[ numerics ] %-56s %-8s splits %-3d max|err| %.3g  max|lse err| %.3g  cos dist %.2g\n",
                case_name(c).c_str(), std::string(family_name(family)).c_str(), run.plan.tile.num_splits,
                cmp.max_abs_error, cmp.max_lse_error, cmp.cosine_distance);
    EXPECT_EQ(run.plan.tile.family, family);
    if (forced) {
      EXPECT_EQ(run.plan.tile.heads_per_cta, c.mma_rows);
    }
    if (c.wgmma_rows > 0) {
      EXPECT_EQ(run.plan.tile.heads_per_cta, c.wgmma_rows);
    }
    if (c.wgmma_tokens > 0) {
      EXPECT_EQ(run.plan.tile.tokens_per_tile, c.wgmma_tokens);
    }
    EXPECT_EQ(cmp.non_finite_outputs, 0);
    EXPECT_EQ(cmp.mismatches, 0) << "max abs error " << cmp.max_abs_error;
    EXPECT_LT(cmp.cosine_distance, 1e-5);
    if (c.rope != RopeStyle::none) {
      const reference::Comparison k_pe = tools::compare_k_pe(want, run, spec);
      EXPECT_EQ(k_pe.mismatches, 0) << "k_pe_out: max abs error " << k_pe.max_abs_error;
    }
    if (c.lse) {
      EXPECT_TRUE(cmp.lse_pattern_ok) << "LSE must be -inf exactly for rows that see no key";
      EXPECT_LT(cmp.max_lse_error, 1e-3);
    }
    if (c.splits > 0) {
      EXPECT_EQ(run.plan.tile.num_splits, c.splits);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, DecodeNumerics, ::testing::ValuesIn(all_cases()),
                         [](const auto& info) { return case_name(info.param); });
INSTANTIATE_TEST_SUITE_P(Features, DecodeNumerics, ::testing::ValuesIn(feature_cases()),
                         [](const auto& info) { return case_name(info.param); });
INSTANTIATE_TEST_SUITE_P(MmaRows, DecodeNumerics, ::testing::ValuesIn(mma_row_cases()),
                         [](const auto& info) { return case_name(info.param); });
INSTANTIATE_TEST_SUITE_P(WideWgmma, DecodeNumerics, ::testing::ValuesIn(wide_wgmma_cases()),
                         [](const auto& info) { return case_name(info.param); });
INSTANTIATE_TEST_SUITE_P(Fp8Mma, DecodeNumerics, ::testing::ValuesIn(fp8_mma_cases()),
                         [](const auto& info) { return case_name(info.param); });

TEST(DecodeNumericsCount, CoversAtLeastThirtyCombinations) { EXPECT_GE(all_cases().size(), 30u); }

// The fp8 mma cases cover what the issue asks (host side: names, tiles valid on sm_90a, the mma
// family serves each spec, non-unit scales in the problems), without a GPU.
TEST(DecodeNumericsCount, Fp8MmaCasesCoverTheIssue) {
  std::set<std::string> names;
  for (const auto& list : {all_cases(), feature_cases(), mma_row_cases()}) {
    for (const Case& c : list) names.insert(case_name(c));
  }
  std::set<int> heads, s_q, pages, rows, splits;
  std::set<DType> q_dtypes;
  bool empty_request = false, ragged_q = false;
  const Target sm90 = parse_target("sm_90a");
  for (const Case& c : fp8_mma_cases()) {
    SCOPED_TRACE(case_name(c));
    EXPECT_TRUE(names.insert(case_name(c)).second) << "duplicate case name";
    const Spec spec = spec_of(c);
    EXPECT_EQ(spec.kv_dtype, DType::fp8_e4m3);
    EXPECT_TRUE(mma_family_supports(spec, sm90));
    EXPECT_GT(c.mma_rows, 0);  // forced: the mma family with this tile (plus wgmma on sm_90a)
    TileConfig tile = tuning::choose_tile(spec, sm90, KernelFamily::mma);
    tile.heads_per_cta = c.mma_rows;
    tile.tokens_per_tile = c.mma_tokens;
    tile.stages = c.mma_stages;
    EXPECT_NO_THROW(validate(tile, spec, sm90));
    const reference::DecodeProblem problem = problem_of(c);
    EXPECT_EQ(problem.kv_scale, 0.25f);
    EXPECT_EQ(problem.q_scale, spec.q_dtype == DType::fp8_e4m3 ? 0.5f : 1.0f);
    heads.insert(c.heads);
    s_q.insert(c.s_q);
    pages.insert(c.page_size);
    rows.insert(c.mma_rows);
    splits.insert(c.splits);
    q_dtypes.insert(spec.q_dtype);
    empty_request |= std::count(c.kv_lens.begin(), c.kv_lens.end(), 0) > 0;
    ragged_q |= !c.q_lens.empty();
  }
  EXPECT_TRUE(heads.count(1) && heads.count(16) && heads.count(20) && heads.count(128));
  EXPECT_TRUE(s_q.count(1) && s_q.count(3));
  EXPECT_EQ(pages, (std::set<int>{1, 16, 64}));
  EXPECT_EQ(rows, (std::set<int>{16, 32, 64}));
  EXPECT_TRUE(splits.count(0) && splits.count(1) && splits.size() >= 3);
  EXPECT_EQ(q_dtypes, (std::set<DType>{DType::bf16, DType::fp16, DType::fp8_e4m3}));
  EXPECT_TRUE(empty_request && ragged_q);
}

// On sm_90a the wgmma family runs on the same odd shapes as the portable kernel: GQA 1 / 20 / 100,
// pages 1 / 16 / 64, ragged and zero-length requests, s_q up to 8, fp8 caches, every split mode.
TEST(DecodeNumericsCount, WgmmaRunsTheOddShapes) {
  const Target sm90 = parse_target("sm_90a");
  std::set<int> heads, pages, s_q;
  int cases = 0, fp8 = 0;
  bool empty_request = false, forced_splits = false;
  for (const auto& list : {all_cases(), feature_cases(), mma_row_cases(), fp8_mma_cases()}) {
    for (const Case& c : list) {
      const Spec spec = spec_of(c);
      const std::vector<KernelFamily> families = families_serving(spec, sm90);
      if (std::find(families.begin(), families.end(), KernelFamily::wgmma) == families.end()) {
        EXPECT_NE(spec.rope, RopeStyle::none) << case_name(c) << ": only fused RoPE keeps a case off wgmma";
        continue;
      }
      EXPECT_NO_THROW(validate(tuning::choose_tile(spec, sm90, KernelFamily::wgmma), spec, sm90)) << case_name(c);
      ++cases;
      fp8 += spec.kv_dtype == DType::fp8_e4m3;
      heads.insert(c.heads);
      pages.insert(c.page_size);
      s_q.insert(c.s_q);
      empty_request |= std::count(c.kv_lens.begin(), c.kv_lens.end(), 0) > 0;
      forced_splits |= c.splits > 1;
    }
  }
  EXPECT_GE(cases, 60);
  EXPECT_GE(fp8, 20);
  EXPECT_TRUE(heads.count(1) && heads.count(20) && heads.count(100) && heads.count(128));
  EXPECT_TRUE(pages.count(1) && pages.count(16) && pages.count(64));
  EXPECT_TRUE(s_q.count(1) && s_q.count(3) && s_q.count(8));
  EXPECT_TRUE(empty_request && forced_splits);
}

// The wide wgmma cases are valid tiles on sm_90a with distinct names (host side).
TEST(DecodeNumericsCount, WideWgmmaCasesAreValidTiles) {
  std::set<std::string> names;
  const Target sm90 = parse_target("sm_90a");
  for (const Case& c : wide_wgmma_cases()) {
    EXPECT_TRUE(names.insert(case_name(c)).second) << case_name(c);
    const Spec spec = spec_of(c);
    ASSERT_TRUE(wgmma_family_supports(spec, sm90)) << case_name(c);
    TileConfig tile = tuning::choose_tile(spec, sm90, KernelFamily::wgmma);
    tile.heads_per_cta = c.wgmma_rows;
    if (c.wgmma_tokens > 0) {
      tile.tokens_per_tile = c.wgmma_tokens;
      tile.stages = wgmma_stages(tile);
    }
    EXPECT_NO_THROW(validate(tile, spec, sm90)) << case_name(c);
  }
  EXPECT_GE(names.size(), 16u);
}

// The host side of every case (problem, reference, names) is sound without a GPU, so a GPU
// session spends its time on kernels, not on fixing the test.
TEST(DecodeNumericsCount, FeatureCasesCoverTheIssueAndBuildTheirProblems) {
  std::set<std::string> names;
  bool rope[3] = {}, fp8_q = false, fp8_kv = false, capped = false, non_causal = false;
  for (const Case& c : feature_cases()) {
    EXPECT_TRUE(names.insert(case_name(c)).second) << "duplicate case name " << case_name(c);
    rope[int(c.rope)] = true;
    fp8_q |= c.q_dtype_override == DType::fp8_e4m3;
    fp8_kv |= c.kv_dtype_override == DType::fp8_e4m3 && c.q_dtype_override != DType::fp8_e4m3;
    capped |= c.logit_cap > 0;
    non_causal |= !c.causal;
  }
  for (const Case& c : all_cases()) {
    EXPECT_TRUE(names.insert(case_name(c)).second) << "duplicate case name " << case_name(c);
  }
  std::set<int> mma_rows, mma_heads, mma_pages, mma_splits;
  for (const Case& c : mma_row_cases()) {
    EXPECT_TRUE(names.insert(case_name(c)).second) << "duplicate case name " << case_name(c);
    mma_rows.insert(c.mma_rows);
    mma_heads.insert(c.heads);
    mma_pages.insert(c.page_size);
    mma_splits.insert(c.splits);
    TileConfig tile = tuning::choose_tile(spec_of(c), parse_target("sm_90a"), KernelFamily::mma);
    tile.heads_per_cta = c.mma_rows;
    tile.tokens_per_tile = c.mma_tokens;
    tile.stages = c.mma_stages;
    EXPECT_NO_THROW(validate(tile, spec_of(c), parse_target("sm_90a"))) << case_name(c);
  }
  EXPECT_EQ(mma_rows, (std::set<int>{16, 32, 64}));
  EXPECT_TRUE(mma_heads.count(20) && mma_heads.count(100) && mma_heads.count(128));
  EXPECT_EQ(mma_pages, (std::set<int>{1, 16, 64}));
  EXPECT_TRUE(mma_splits.count(0) && mma_splits.count(1) && mma_splits.size() >= 3);
  EXPECT_TRUE(rope[0] && rope[1] && rope[2] && fp8_q && fp8_kv && capped && non_causal);
  for (const Case& c : feature_cases()) {
    SCOPED_TRACE(case_name(c));
    const reference::DecodeProblem problem = problem_of(c);
    const reference::DecodeResult want = reference::decode(problem);
    long long keyless = 0;  // rows that see no key: the empty request, and the one-key request's first tokens
    for (float lse : want.lse) keyless += std::isinf(lse);
    EXPECT_GE(keyless, (long long)c.heads * (c.causal ? 2 * c.s_q - 1 : c.s_q));
    EXPECT_EQ(want.k_pe_out.size(), c.rope == RopeStyle::none ? 0u : std::size_t(problem.total_q) * 64);
  }
}

TEST(DecodeValidation, BadArgumentsLaunchNothing) {
  REQUIRE_GPU();
  Spec spec;
  reference::ProblemOptions options;
  options.kv_lens = {100};
  const reference::DecodeProblem p = reference::make_problem(spec, options);
  runtime::Device& device = engine->device();
  runtime::DeviceBuffer out(device, std::size_t(p.total_q) * spec.heads * spec.v_dim() * 2);
  device.fill_bytes(out.get(), 0x5a, out.size());
  runtime::DeviceBuffer dummy(device, 4096);
  DecodeArgs a;
  a.q = dummy.get();
  a.kv_buffer = dummy.get();
  a.out = out.get();
  a.qo_indptr = a.kv_indptr = a.kv_indices = a.kv_last_page_lens = dummy.as<int>();
  a.batch = 1;
  a.total_q = 1;
  a.num_heads = 16;
  a.num_kv_indices = 1;
  a.num_kv_splits = 4;  // needs a workspace, none given
  try {
    engine->decode(a);
    FAIL() << "decode without its workspace was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'workspace'"), std::string::npos) << e.what();
  }
  a.num_kv_splits = 1;
  a.num_heads = 300;
  EXPECT_THROW(engine->decode(a), Error);
  a.num_heads = 16;
  a.kv_buffer = static_cast<char*>(dummy.get()) + 2;  // misaligned
  try {
    engine->decode(a);
    FAIL() << "misaligned kv_buffer was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'kv_buffer'"), std::string::npos) << e.what();
  }
  device.synchronize();
  std::vector<unsigned char> host(out.size());
  device.copy_to_host(host.data(), out.get(), out.size());
  for (unsigned char b : host) ASSERT_EQ(b, 0x5a) << "a rejected call wrote the output";
}

}  // namespace
}  // namespace mlajit
