// CPU tier: persistent decode, portable family. The metadata kernel (decode/schedule.cuh), the
// persistent stage-1 kernel (decode_persistent_portable) and its reduce (decode_persistent_reduce)
// run on the CPU through the fiber prelude, chained through six metadata buffers as a CUDA graph
// would chain them, against the float32 reference: ragged batches with zero-length and one-token
// requests, keyless and absent query tokens, batch 1 to 200, heads 16 / 20 / 128, s_q 1 and 3,
// 7 and 132 workers, pages 1 and 64, fused RoPE and FP8 caches. Same tolerances as the grid
// path's host tests (portable_host_test.cpp).
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include "tests/templates/host_platform.hpp"
// The kernel templates, as the generated stub includes them (after a platform prelude).
#include "decode/combine.cuh"
#include "decode/portable.cuh"
#include "decode/schedule.cuh"
#include "runtime/decode_params.hpp"
#include "runtime/persistent_layout.hpp"
#include "tools/decode_check.hpp"
#include "tests/templates/host_decode.hpp"

namespace mlajit {
namespace {

using namespace host_decode;


struct PersistentRun {
  tools::DeviceRun run;
  int split_tiles = 0;
  int items = 0;
};

// Metadata kernel, then the persistent kernel on `workers` CTAs, then the reduce on its fixed grid.
template <class Cfg>
PersistentRun run_persistent(const reference::DecodeProblem& p, int workers, int kv_block) {
  const Spec& s = p.spec;
  HostOutputs outputs(p);
  DecodeArgs args = tools::decode_args(p, outputs.buffers(p), 1);
  DecodePlan plan;
  plan.spec = decode_spec(args);
  plan.tile = Cfg::tile();
  validate(plan.tile, plan.spec, parse_target("sm_90a"));
  plan.needs_combine = false;
  plan.stage1_grid = decode_stage1_grid(plan.spec, plan.tile, p.batch);
  MljDecodeParams params = decode_params(args, plan);

  // Metadata.
  ScheduleShape shape;
  shape.batch = p.batch;
  shape.heads = s.heads;
  shape.s_q = s.s_q;
  shape.page_size = s.page_size;
  shape.rows_per_item = Cfg::kHeadsPerCta;
  shape.workers = workers;
  shape.kv_block = kv_block;
  const PersistentLayout layout = persistent_layout(shape);
  // Six separate buffers, as a caller of the C ABI allocates them; unwritten entries show.
  std::array<std::vector<int>, 6> buffers;
  for (std::size_t i = 0; i < buffers.size(); ++i) buffers[i].assign(layout.elements()[i] + 1, 0x7f7f7f7f);
  const PersistentMetadata metadata{buffers[0].data(), buffers[1].data(), buffers[2].data(),
                                    buffers[3].data(), buffers[4].data(), buffers[5].data()};
  const MljScheduleParams schedule = schedule_params(shape, p.qo_indptr.data(), p.kv_indptr.data(),
                                                     p.kv_last_page_lens.data(), metadata);
  constexpr int kScheduleThreads = 128;
  mlj_host::launch({1, 1, 1}, kScheduleThreads, schedule_shared_bytes(kScheduleThreads),
                   [&] { mlj::persistent_schedule<kScheduleThreads>(schedule); });

  // Partial workspace: max_partials * rows_per_item rows, NaN so that unwritten reads show.
  const std::size_t partial_rows = layout.partial_rows(Cfg::kHeadsPerCta);
  std::vector<float> partial_out(partial_rows * s.v_dim() + 1, NAN);
  std::vector<float> partial_lse(partial_rows + 1, NAN);
  params.partial_out = partial_out.data();
  params.partial_lse = partial_lse.data();
  params.num_splits = 0x7f7f7f7f;  // not read by the persistent path

  const MljPersistentLayout kernel_layout = persistent_kernel_layout(shape, metadata);
  // Two decodes on one fill (a step's layers share its metadata): each leaves the reduce's
  // per-tile counts at 0 for the next; the second decode's partials start as NaN again.
  for (int decode = 0; decode < 2; ++decode) {
    std::fill(partial_out.begin(), partial_out.end(), NAN);
    std::fill(partial_lse.begin(), partial_lse.end(), NAN);
    mlj_host::launch({unsigned(workers), 1, 1}, Cfg::kWarps * MLJ_WARP_SIZE, decode_shared_bytes(plan.spec, plan.tile),
                     [&] { mlj::decode_persistent_portable<Cfg>(params, kernel_layout); });
    if (layout.max_split_tiles > 0) {
      mlj_host::launch({unsigned(Cfg::kHeadsPerCta), unsigned(layout.max_split_tiles), 1}, Cfg::kCombineThreads, 0,
                       [&] { mlj::decode_persistent_reduce<Cfg>(params, kernel_layout); });
    }
    for (int t = 0; t < 2 * layout.tiles; ++t) {
      EXPECT_EQ(metadata.work_meta_data[4 + t], 0) << "decode " << decode << ": reduce count " << t << " left set";
    }
  }

  PersistentRun result;
  result.items = metadata.work_meta_data[0];
  result.split_tiles = metadata.work_meta_data[1];
  outputs.read_into(result.run, s);
  return result;
}

struct Case {
  int s_q;
  std::vector<int> kv_lens;
  std::vector<int> q_lens;  // empty = s_q each
  std::vector<int> workers = {7, 132};
  int kv_block = 16;         // small blocks: short requests still get cut between workers
  bool expect_splits = true;  // some tile must be split (the reduce runs) for some worker count
};

template <class Cfg>
void expect_matches_reference(const Case& c) {
  const Spec spec = Cfg::spec(c.s_q);
  reference::ProblemOptions options;
  options.kv_lens = c.kv_lens;
  options.q_lens = c.q_lens;
  options.seed = std::hash<std::string>{}(kernel_base_name(spec, Cfg::tile()) + " persistent");
  const reference::DecodeProblem problem = reference::make_problem(spec, options);
  const reference::DecodeResult want = reference::decode(problem);
  int split_tiles = 0;
  for (int workers : c.workers) {
    SCOPED_TRACE(kernel_base_name(spec, Cfg::tile()) + " persistent, workers " + std::to_string(workers));
    const PersistentRun r = run_persistent<Cfg>(problem, workers, c.kv_block);
    split_tiles += r.split_tiles;
    expect_matches(want, r.run, spec);
  }
  if (c.expect_splits) {
    EXPECT_GT(split_tiles, 0) << "no tile was split: the reduce was not exercised";
  }
}


// kv lengths of `batch` requests: zero-length, one-token and a spread of short ones, a few long.
std::vector<int> ragged_kv_lens(int batch) {
  std::vector<int> lens;
  for (int i = 0; i < batch; ++i) {
    const int k = i % 9;
    lens.push_back(k == 0 ? 0 : k == 1 ? 1 : k == 5 ? 40 + i % 50 : (i * 7) % 13 + 2);
  }
  return lens;
}

TEST(PersistentPortableOnHost, Batch200Heads16Sq1Page64) {
  // 200 requests, 16 heads in CTAs of 16 rows: one tile per request; ~250 tiles over 7 / 132 workers.
  expect_matches_reference<HostCfg<mlj::bf16, mlj::bf16, mlj::bf16, 16, 64, true, kNoRope, 0.0f, 16, 16>>(
      {1, ragged_kv_lens(200), {}});
}

TEST(PersistentPortableOnHost, Batch1Heads16Sq1Page1LongRequest) {
  // One request cut into pieces on most workers (132 workers, 13 blocks + overhead: some empty).
  expect_matches_reference<HostCfg<mlj::bf16, mlj::bf16, mlj::bf16, 16, 1, true, kNoRope, 0.0f, 16, 16>>({1, {200}, {}});
}

TEST(PersistentPortableOnHost, Batch1ZeroLengthRequest) {
  expect_matches_reference<HostCfg<mlj::bf16, mlj::bf16, mlj::bf16, 16, 64, true, kNoRope, 0.0f, 16, 16>>(
      {1, {0}, {}, {7, 132}, 16, false});
}

TEST(PersistentPortableOnHost, Heads20Sq3NeoxPage1RaggedQueries) {
  // 60 rows in groups of 8: groups straddle query tokens; requests with no query token, keyless
  // tokens (q_len > kv_len) and one-token caches; RoPE keys owned by whichever piece holds them.
  expect_matches_reference<HostCfg<mlj::bf16, mlj::bf16, mlj::bf16, 20, 1, true, neox, 0.0f, 8, 16>>(
      {3, {0, 1, 2, 70, 33, 5, 0, 1, 90, 17, 48, 3}, {3, 3, 3, 3, 0, 2, 1, 1, 3, 3, 2, 3}});
}

TEST(PersistentPortableOnHost, Heads128Sq3Fp8CacheGptjPage64) {
  expect_matches_reference<HostCfg<mlj::bf16, mlj::fp8_e4m3, mlj::bf16, 128, 64, true, gptj, 0.0f, 16, 16>>(
      {3, {150, 1, 0, 66}, {3, 3, 2, 3}});
}

TEST(PersistentPortableOnHost, Heads20Sq3NonCausalFp16Page64) {
  expect_matches_reference<HostCfg<mlj::fp16, mlj::fp16, mlj::fp16, 20, 64, false, kNoRope, 0.0f, 16, 16>>(
      {3, {130, 0, 1, 64, 65}, {3, 1, 3, 0, 3}});
}

TEST(PersistentPortableOnHost, Heads16Sq3Page1FlashMlaBlock) {
  // FlashMLA's 64-token cost blocks, s_q 3 (3 row groups of 16 per request), one long request
  // whose row groups are cut between workers.
  std::vector<int> kv_lens = ragged_kv_lens(40);
  kv_lens[17] = 700;
  Case c{3, kv_lens, {}};
  c.kv_block = 64;
  expect_matches_reference<HostCfg<mlj::bf16, mlj::bf16, mlj::bf16, 16, 1, true, kNoRope, 0.0f, 16, 16>>(c);
}

}  // namespace
}  // namespace mlajit
