// CPU tier: the portable decode kernel and the combine kernel, run on the CPU through the fiber
// prelude (host_platform.hpp) with the engine's own parameter blocks, against the float32
// reference: fused RoPE (both styles), FP8 (both forms), s_q up to 8 with ragged and keyless
// query tokens, pages 1..256, soft-cap, split-K. The template code is what the GPU compiles;
// only the platform prelude differs.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include "tests/templates/host_platform.hpp"
// The kernel templates, as the generated stub includes them (after a platform prelude).
#include "decode/combine.cuh"
#include "decode/portable.cuh"
#include "runtime/decode_params.hpp"
#include "tools/decode_check.hpp"
#include "tests/templates/host_decode.hpp"

namespace mlajit {
namespace {

using namespace host_decode;


template <class Cfg>
tools::DeviceRun run_on_host(const reference::DecodeProblem& p, int splits) {
  const Spec& s = p.spec;
  const std::size_t rows = std::size_t(p.total_q) * s.heads;
  HostOutputs outputs(p);
  DecodeArgs args = tools::decode_args(p, outputs.buffers(p), splits);

  tools::DeviceRun run;
  DecodePlan& plan = run.plan;  // what Engine::plan_decode gives when this tile is forced
  plan.spec = decode_spec(args);
  EXPECT_EQ(plan.spec, canonical(s)) << "decode_args / decode_spec lose part of the spec";
  plan.tile = Cfg::tile(splits);
  validate(plan.tile, plan.spec, parse_target("sm_90a"));
  plan.workspace_bytes = decode_workspace_bytes(plan.spec, p.total_q, splits);
  plan.needs_combine = splits > 1;
  plan.stage1_grid = decode_stage1_grid(plan.spec, plan.tile, p.batch);
  std::vector<std::uint64_t> workspace(plan.workspace_bytes / 8 + 1, ~0ull);  // NaN partials
  args.workspace = workspace.data();
  args.workspace_bytes = plan.workspace_bytes;

  const MljDecodeParams params = decode_params(args, plan);
  const runtime::Dim3 grid = plan.stage1_grid;
  mlj_host::launch({grid.x, grid.y, grid.z}, Cfg::kWarps * MLJ_WARP_SIZE, decode_shared_bytes(plan.spec, plan.tile),
                   [&] { mlj::decode_stage1_portable<Cfg>(params); });
  if (plan.needs_combine) {
    const MljCombineParams combine = combine_params(args, plan, mlj::merge_ways<Cfg>(splits));
    const int rows_per_cta = mlj::kCombineWarps<Cfg> / combine.ways;
    mlj_host::launch({unsigned(mlj::ceil_div(int(rows), rows_per_cta)), 1, 1}, Cfg::kCombineThreads, 0,
                     [&] { mlj::decode_combine<Cfg>(combine); });
  }

  outputs.read_into(run, s);
  return run;
}

struct Shape {
  int s_q;
  std::vector<int> kv_lens;
  std::vector<int> q_lens;  // empty = s_q each
  std::vector<int> splits = {1, 3};
  DType cos_sin_dtype = DType::bf16;
  int max_positions = 4096;
  int position_offset = 0;
};

template <class Cfg>
void expect_matches_reference(const Shape& shape) {
  const Spec spec = Cfg::spec(shape.s_q);
  reference::ProblemOptions options;
  options.kv_lens = shape.kv_lens;
  options.q_lens = shape.q_lens;
  options.seed = std::hash<std::string>{}(kernel_base_name(spec, Cfg::tile(1)));
  options.cos_sin_dtype = shape.cos_sin_dtype;
  options.max_positions = shape.max_positions;
  options.position_offset = shape.position_offset;
  const reference::DecodeProblem problem = reference::make_problem(spec, options);
  const reference::DecodeResult want = reference::decode(problem);
  for (int splits : shape.splits) {
    SCOPED_TRACE(kernel_base_name(spec, Cfg::tile(splits)) + " splits " + std::to_string(splits));
    expect_matches(want, run_on_host<Cfg>(problem, splits), spec);
  }
}

TEST(PortableOnHost, Bf16BaselineWithRaggedQueriesAndEmptyRequests) {
  // 5 heads in CTAs of 4 rows: row groups straddle query tokens. Request 3 has more query
  // tokens than keys (its first two rows see nothing: zeros, LSE -inf).
  expect_matches_reference<HostCfg<mlj::bf16, mlj::bf16, mlj::bf16, 5, 16, true, kNoRope, 0.0f>>(
      {5, {0, 9, 40, 3}, {5, 0, 3, 5}});
}

TEST(PortableOnHost, NeoxRopeBf16MtpWithKeylessTokens) {
  expect_matches_reference<HostCfg<mlj::bf16, mlj::bf16, mlj::bf16, 5, 16, true, neox, 0.0f>>(
      {5, {0, 9, 40, 3}, {5, 0, 3, 5}});
}

TEST(PortableOnHost, GptjRopeFp16NonCausalSq7PageOneFp32Table) {
  Shape shape{7, {30, 7, 1}, {7, 2, 7}};
  shape.cos_sin_dtype = DType::fp32;
  expect_matches_reference<HostCfg<mlj::fp16, mlj::fp16, mlj::fp16, 3, 1, false, gptj, 0.0f>>(shape);
}

TEST(PortableOnHost, Fp8QueryAndCacheWithGptjRopeSoftCapPage128) {
  Shape shape{3, {150, 2, 0}, {}};
  shape.cos_sin_dtype = DType::fp16;
  shape.max_positions = 100;  // request 0's positions run past the table: clamped to its last row
  shape.position_offset = 40;
  expect_matches_reference<HostCfg<mlj::fp8_e4m3, mlj::fp8_e4m3, mlj::bf16, 3, 128, true, gptj, 20.0f>>(shape);
}

TEST(PortableOnHost, Bf16QueryFp8CacheSq8Page256WithEmptySplits) {
  Shape shape{8, {20, 300, 8}, {8, 8, 6}};
  shape.splits = {1, 4, 40};  // 40 splits of a 20-token request: most are empty
  expect_matches_reference<HostCfg<mlj::bf16, mlj::fp8_e4m3, mlj::bf16, 1, 256, true, kNoRope, 0.0f>>(shape);
}

TEST(PortableOnHost, NeoxRopeWithFp8CacheFp32OutputSq6) {
  expect_matches_reference<HostCfg<mlj::bf16, mlj::fp8_e4m3, mlj::fp32, 2, 16, true, neox, 0.0f>>(
      {6, {70, 5, 0}, {6, 6, 6}});
}

TEST(PortableOnHost, HundredHeadsSq3Fp8CacheNeoxInTheModelsTile) {
  // 300 rows in 19 CTAs of 16 (the tile the model picks): CTAs straddle tokens; request 0 is empty.
  expect_matches_reference<HostCfg<mlj::bf16, mlj::fp8_e4m3, mlj::bf16, 100, 16, true, neox, 0.0f, 16, 32, 8>>(
      {3, {0, 17, 40}, {3, 1, 3}, {1, 2}});
}

TEST(PortableOnHost, TwentyHeadsSq5GptjFp16Page128NonCausal) {
  expect_matches_reference<HostCfg<mlj::fp16, mlj::fp16, mlj::fp16, 20, 128, false, gptj, 0.0f, 10, 16, 4>>(
      {5, {130, 4}, {5, 5}, {1, 5}});
}

TEST(PortableOnHost, DefaultTileShapeWithSoftCap) {
  // The tile the model picks on NVIDIA (16 rows, 32-token tiles, 8 warps), 20 heads as 2 x 10.
  expect_matches_reference<HostCfg<mlj::bf16, mlj::bf16, mlj::bf16, 20, 64, true, neox, 30.0f, 10, 32, 8>>(
      {1, {100, 0, 33}, {}});
}

}  // namespace
}  // namespace mlajit
