// GPU tier: the generated decode against the float32 reference on many shapes, including odd
// head counts (1, 20, 100), ragged and zero-length requests, pages of 1 / 16 / 64 tokens, s_q up
// to 4, bf16 and fp16, forced and automatic split-K. Skips with a message where no GPU is.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>

#include <fmt/format.h>

#include "codegen/error.hpp"
#include "tools/decode_check.hpp"
#include "tuning/choose.hpp"

namespace mlajit {
namespace {

Engine* shared_engine() {
  static std::unique_ptr<Engine> engine = []() -> std::unique_ptr<Engine> {
    if (runtime::backend(Backend::cuda).device_count() == 0) return nullptr;
    return std::make_unique<Engine>(0, Backend::cuda);
  }();
  return engine.get();
}

#define REQUIRE_GPU()                                                                                   \
  Engine* engine = shared_engine();                                                                     \
  if (engine == nullptr) {                                                                              \
    GTEST_SKIP() << "no CUDA GPU on this machine (" << runtime::backend(Backend::cuda).unavailable_reason() \
                 << "): gpu tier skipped, run it on a GPU machine";                                     \
  }

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
};

std::string case_name(const Case& c) {
  std::string name = fmt::format("h{}_ps{}_sq{}_{}_s{}{}{}", c.heads, c.page_size, c.s_q, dtype_name(c.dtype),
                                 c.splits, c.lse ? "_lse" : "", c.causal ? "" : "_nc");
  if (c.logit_cap > 0) name += "_cap";
  if (c.kv_dtype_override != DType::fp32) name += "_kv" + std::string(dtype_name(c.kv_dtype_override));
  if (!c.q_lens.empty()) name += "_raggedq";
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
  for (int s_q : {1, 2, 3, 4}) {
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
  return cases;
}

class DecodeNumerics : public ::testing::TestWithParam<Case> {};

TEST_P(DecodeNumerics, MatchesFloat32Reference) {
  REQUIRE_GPU();
  const Case& c = GetParam();
  Spec spec;
  spec.heads = c.heads;
  spec.page_size = c.page_size;
  spec.s_q = c.s_q;
  spec.q_dtype = spec.out_dtype = c.dtype;
  spec.kv_dtype = c.kv_dtype_override == DType::fp32 ? c.dtype : c.kv_dtype_override;
  spec.return_lse = c.lse;
  spec.causal = c.causal;
  spec.logit_cap = c.logit_cap;
  reference::ProblemOptions options;
  options.kv_lens = c.kv_lens;
  options.q_lens = c.q_lens;
  options.seed = std::hash<std::string>{}(case_name(c));
  const reference::DecodeProblem problem = reference::make_problem(spec, options);
  const reference::DecodeResult want = reference::decode(problem);
  const double max_v = tools::max_abs_value(problem);
  // Every kernel family that can serve the spec on this device, on the same problem.
  const Target target = engine->device_info().target;
  std::vector<KernelFamily> families = {KernelFamily::portable};
  if (mma_family_supports(spec, target)) families.push_back(KernelFamily::mma);
  for (KernelFamily family : families) {
    SCOPED_TRACE(std::string(family_name(family)));
    const TileConfig tile = tuning::choose_tile(spec, target, family);
    const tools::DeviceRun run = tools::run_on_device(*engine, problem, c.splits, tile);
    const tools::Tolerance tol = tools::tolerance_for(spec, family, max_v);
    const reference::Comparison cmp = reference::compare(want, run.out, c.lse ? &run.lse : nullptr, tol.atol, tol.rtol);
    std::printf("[ numerics ] %-44s %-8s splits %-3d max|err| %.3g  max|lse err| %.3g\n", case_name(c).c_str(),
                std::string(family_name(family)).c_str(), run.plan.tile.num_splits, cmp.max_abs_error,
                cmp.max_lse_error);
    EXPECT_EQ(run.plan.tile.family, family);
    EXPECT_EQ(cmp.non_finite_outputs, 0);
    EXPECT_EQ(cmp.mismatches, 0) << "max abs error " << cmp.max_abs_error;
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

TEST(DecodeNumericsCount, CoversAtLeastThirtyCombinations) { EXPECT_GE(all_cases().size(), 30u); }

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
