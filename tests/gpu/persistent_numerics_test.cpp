// GPU tier: persistent decode (metadata kernel + persistent stage 1 + reduce) against the float32
// reference: ragged batches with zero-length and one-token requests, batch 1 and 1024, heads
// 16 / 20 / 128, s_q 1 and 3, both families (portable and mma, the FP8 cache included),
// fused RoPE and LSE; the C ABI end to end with six separately allocated buffers; bad arguments
// launch nothing; and one CUDA graph of metadata fill + persistent decode replayed with different
// KV lengths written into the same buffers. Same tolerances as the grid path
// (tools::tolerance_for). Skips with a message where no GPU is.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <set>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "mlajit/mlajit.h"
#include "tests/gpu/gpu_engine.hpp"
#include "tools/decode_check.hpp"
#include "tuning/choose.hpp"

namespace mlajit {
namespace {

struct Case {
  int heads;
  int s_q;
  int page_size;
  DType dtype;  // q and out
  DType kv_dtype;
  bool lse;
  std::vector<int> kv_lens;
  std::vector<int> q_lens;  // empty = s_q each
  RopeStyle rope = RopeStyle::none;
};

std::string case_name(const Case& c) {
  int longest = 0;
  for (int len : c.kv_lens) longest = std::max(longest, len);
  std::string name = fmt::format("b{}_h{}_sq{}_ps{}_{}_kv{}{}", c.kv_lens.size(), c.heads, c.s_q, c.page_size,
                                 dtype_name(c.dtype), dtype_name(c.kv_dtype), c.lse ? "_lse" : "");
  if (c.rope != RopeStyle::none) name += "_rope" + std::string(rope_style_name(c.rope));
  if (!c.q_lens.empty()) name += "_raggedq";
  return name + fmt::format("_max{}", longest);
}

void PrintTo(const Case& c, std::ostream* os) { *os << case_name(c); }

// `batch` requests: zero-length, one-token, and a spread of lengths up to ~300 tokens.
std::vector<int> ragged_lens(int batch) {
  std::vector<int> lens;
  for (int i = 0; i < batch; ++i) lens.push_back(i % 7 == 0 ? 0 : i % 7 == 1 ? 1 : (i * 37) % 257 + 2);
  return lens;
}

std::vector<Case> cases() {
  const DType bf16 = DType::bf16, fp16 = DType::fp16, fp8 = DType::fp8_e4m3;
  const std::vector<int> ragged9 = {0, 1, 2, 63, 64, 65, 700, 3000, 17};
  return {
      {16, 1, 64, bf16, bf16, false, ragged9, {}},
      {16, 1, 1, bf16, bf16, true, {5000}, {}},  // batch 1: one request cut across the workers
      {16, 1, 64, bf16, bf16, true, {0}, {}},    // batch 1, no key
      {16, 1, 64, bf16, bf16, false, {1}, {}},   // batch 1, one key
      {16, 1, 16, bf16, bf16, false, ragged_lens(1024), {}},
      {16, 1, 64, bf16, bf16, true, std::vector<int>(128, 300), {}},  // uniform: on 128..135 SMs, unsplit tiles and idle workers
      {16, 3, 64, bf16, bf16, true, ragged_lens(1024), {}},
      {20, 1, 64, bf16, bf16, true, ragged9, {}},
      {20, 3, 16, fp16, fp16, true, {0, 1, 2, 300, 1500, 65, 4}, {3, 1, 0, 3, 2, 3, 3}},
      {128, 1, 64, bf16, bf16, true, {0, 1, 300, 1500}, {}},
      {128, 3, 64, bf16, bf16, true, {0, 1, 150, 900}, {3, 3, 2, 3}},
      {16, 3, 64, bf16, fp8, true, {0, 1, 77, 2000, 5}, {}},
      {20, 1, 16, bf16, fp8, false, ragged9, {}},
      {128, 1, 64, fp16, fp8, true, {0, 1, 300, 1500}, {}},  // fp16 q on an fp8 cache: fp16 mma operands
      {16, 3, 1, bf16, bf16, true, {0, 1, 2, 400}, {3, 3, 3, 2}, RopeStyle::neox},
  };
}

Spec spec_of(const Case& c) {
  Spec spec;
  spec.heads = c.heads;
  spec.s_q = c.s_q;
  spec.page_size = c.page_size;
  spec.q_dtype = c.dtype;
  spec.out_dtype = c.dtype;
  spec.kv_dtype = c.kv_dtype;
  spec.return_lse = c.lse;
  spec.rope = c.rope;
  return spec;
}

reference::DecodeProblem problem_of(const Case& c, std::uint64_t salt = 0) {
  reference::ProblemOptions options;
  options.kv_lens = c.kv_lens;
  options.q_lens = c.q_lens;
  options.seed = std::hash<std::string>{}(case_name(c) + " persistent") + salt;
  return reference::make_problem(spec_of(c), options);
}

// Out (+ LSE, + k_pe_out) of a run against the reference, within the grid path's tolerances.
void expect_matches(const reference::DecodeResult& want, const tools::DeviceRun& run, const Spec& spec,
                    KernelFamily family, double max_v, const std::string& what) {
  const tools::Tolerance tol = tools::tolerance_for(spec, family, max_v);
  const reference::Comparison cmp =
      reference::compare(want, run.out, spec.return_lse ? &run.lse : nullptr, tol.atol, tol.rtol);
  std::printf("[ persistent ] %-52s %-8s max|err| %.3g  max|lse err| %.3g  cos dist %.2g\n", what.c_str(),
              std::string(family_name(family)).c_str(), cmp.max_abs_error, cmp.max_lse_error, cmp.cosine_distance);
  EXPECT_EQ(cmp.non_finite_outputs, 0) << "an output the persistent path never wrote (or NaN)";
  EXPECT_EQ(cmp.mismatches, 0) << "max abs error " << cmp.max_abs_error;
  EXPECT_LT(cmp.cosine_distance, 1e-5);
  if (spec.return_lse) {
    EXPECT_TRUE(cmp.lse_pattern_ok) << "LSE must be -inf exactly for rows that see no key";
    EXPECT_LT(cmp.max_lse_error, 1e-3);
  }
  if (spec.rope != RopeStyle::none) {
    const reference::Comparison k_pe = tools::compare_k_pe(want, run, spec);
    EXPECT_EQ(k_pe.mismatches, 0) << "k_pe_out: max abs error " << k_pe.max_abs_error;
  }
}

class PersistentNumerics : public ::testing::TestWithParam<Case> {};

TEST_P(PersistentNumerics, MatchesFloat32Reference) {
  REQUIRE_GPU();
  const Case& c = GetParam();
  const Spec spec = spec_of(c);
  const reference::DecodeProblem problem = problem_of(c);
  const reference::DecodeResult want = reference::decode(problem);
  const double max_v = tools::max_abs_value(problem);
  const Target target = engine->device_info().target;
  for (KernelFamily family : families_serving(spec, target)) {
    SCOPED_TRACE(std::string(family_name(family)));
    const TileConfig tile = tuning::choose_tile(spec, target, family);
    const tools::DeviceRun run = tools::run_persistent_on_device(*engine, problem, tile);
    EXPECT_EQ(run.plan.tile.family, family);
    EXPECT_EQ(run.plan.spec.op, Op::persistent_decode);
    expect_matches(want, run, spec, family, max_v, case_name(c));
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, PersistentNumerics, ::testing::ValuesIn(cases()),
                         [](const auto& info) { return case_name(info.param); });

// One metadata fill, three decodes (a step's layers share the fill): the reduce's per-tile
// counts must be back at 0 after each decode, or a later decode's reduce would read partials
// before its stage 1 wrote them (the workspace and outputs are NaN-filled between decodes, so a
// stale read shows). Every family, on a ragged batch, the wide tile and an fp8 cache.
TEST(PersistentNumericsReuse, OneFillServesManyDecodes) {
  REQUIRE_GPU();
  const DType bf16 = DType::bf16, fp8 = DType::fp8_e4m3;
  const Target target = engine->device_info().target;
  for (const Case& c : {Case{16, 1, 64, bf16, bf16, true, ragged_lens(300), {}},
                        Case{128, 1, 64, bf16, bf16, true, {0, 1, 300, 1500}, {}},
                        Case{16, 3, 64, bf16, fp8, true, {0, 1, 77, 2000, 5}, {}}}) {
    const Spec spec = spec_of(c);
    const reference::DecodeProblem problem = problem_of(c, 2);
    const reference::DecodeResult want = reference::decode(problem);
    const double max_v = tools::max_abs_value(problem);
    for (KernelFamily family : families_serving(spec, target)) {
      SCOPED_TRACE(case_name(c) + " " + std::string(family_name(family)));
      const TileConfig tile = tuning::choose_tile(spec, target, family);
      const tools::DeviceRun run = tools::run_persistent_on_device(*engine, problem, tile, 3);
      expect_matches(want, run, spec, family, max_v, case_name(c) + "_reuse3");
    }
  }
}

// The host side of every case is sound without a GPU (names unique, problems build, the matrix
// covers the issue), so a GPU session spends its time on kernels.
TEST(PersistentNumericsCases, CoverTheIssue) {
  std::set<std::string> names;
  std::set<int> heads, s_q, batches;
  bool zero = false, one = false, fp8 = false;
  for (const Case& c : cases()) {
    EXPECT_TRUE(names.insert(case_name(c)).second) << "duplicate case name " << case_name(c);
    heads.insert(c.heads);
    s_q.insert(c.s_q);
    batches.insert(int(c.kv_lens.size()));
    for (int len : c.kv_lens) {
      zero |= len == 0;
      one |= len == 1;
    }
    fp8 |= c.kv_dtype == DType::fp8_e4m3;
  }
  EXPECT_TRUE(heads.count(16) && heads.count(20) && heads.count(128));
  EXPECT_TRUE(s_q.count(1) && s_q.count(3));
  EXPECT_TRUE(batches.count(1) && batches.count(1024));
  EXPECT_TRUE(zero && one && fp8);
  const Target sm90 = parse_target("sm_90a");
  int wgmma_cases = 0;
  for (const Case& c : cases()) {
    const Spec spec = spec_of(c);
    // Every case runs on the portable and mma families: fp8 caches too (the mma family widens
    // them per tile), except with fused RoPE, which keeps an fp8 cache on the portable family.
    // Without fused RoPE they also run on the wgmma family (fp8 caches widened per tile too).
    const bool fp8_cache = c.kv_dtype == DType::fp8_e4m3;
    const bool portable_only = fp8_cache && spec.rope != RopeStyle::none;
    const bool wgmma = (fp8_cache || spec.q_dtype == spec.kv_dtype) && spec.rope == RopeStyle::none;
    std::vector<KernelFamily> want = {KernelFamily::portable};
    if (!portable_only) want.push_back(KernelFamily::mma);
    if (wgmma) want.push_back(KernelFamily::wgmma);
    EXPECT_EQ(families_serving(spec, sm90), want) << case_name(c);
    wgmma_cases += wgmma;
  }
  EXPECT_GE(wgmma_cases, 8);
}

// ---- the C ABI end to end -------------------------------------------------------------------

mlajit_dtype c_dtype(DType t) {
  switch (t) {
    case DType::bf16: return MLAJIT_BF16;
    case DType::fp16: return MLAJIT_FP16;
    case DType::fp8_e4m3: return MLAJIT_FP8_E4M3;
    case DType::fp32: return MLAJIT_FP32;
  }
  return MLAJIT_BF16;
}

mlajit_decode_args c_args(const DecodeArgs& a) {
  mlajit_decode_args c;
  mlajit_decode_args_init(&c);
  c.q = a.q;
  c.q_dtype = c_dtype(a.q_dtype);
  c.kv_buffer = a.kv_buffer;
  c.kv_dtype = c_dtype(a.kv_dtype);
  c.kv_page_stride = a.kv_page_stride;
  c.out = a.out;
  c.out_dtype = c_dtype(a.out_dtype);
  c.lse = a.lse;
  c.qo_indptr = a.qo_indptr;
  c.kv_indptr = a.kv_indptr;
  c.kv_indices = a.kv_indices;
  c.kv_last_page_lens = a.kv_last_page_lens;
  c.batch = a.batch;
  c.total_q = a.total_q;
  c.num_heads = a.num_heads;
  c.max_seqlen_q = a.max_seqlen_q;
  c.page_size = a.page_size;
  c.kv_lora_rank = a.kv_lora_rank;
  c.rope_dim = a.rope_dim;
  c.num_kv_indices = a.num_kv_indices;
  c.sm_scale = a.sm_scale;
  c.causal = a.causal ? 1 : 0;
  return c;
}

struct Context {
  mlajit_context* context = nullptr;
  Context() { EXPECT_EQ(mlajit_context_create(MLAJIT_BACKEND_CUDA, 0, &context), MLAJIT_OK) << mlajit_last_error(); }
  ~Context() { mlajit_context_destroy(context); }
};

// Six separate device buffers of the sizes the C ABI asked for.
struct CMetadata {
  runtime::DeviceBuffer buffers[6];
  mlajit_persistent_metadata metadata{};
  CMetadata(runtime::Device& device, const mlajit_persistent_sizes& sizes) {
    int32_t** fields[6] = {&metadata.work_meta_data, &metadata.work_indptr,      &metadata.work_info_set,
                           &metadata.reduce_indptr,  &metadata.reduce_final_map, &metadata.reduce_partial_map};
    for (int i = 0; i < 6; ++i) {
      buffers[i] = runtime::DeviceBuffer(device, std::size_t(std::max<int64_t>(sizes.elements[i], 1)) * sizeof(int32_t));
      device.fill_bytes(buffers[i].get(), 0x7f, buffers[i].size());
      *fields[i] = buffers[i].as<int32_t>();
    }
  }
};

TEST(PersistentCApi, SizesFillAndDecodeMatchTheReference) {
  REQUIRE_GPU();
  const Case c{16, 1, 64, DType::bf16, DType::bf16, true, {0, 1, 2, 63, 64, 65, 700, 3000, 17}, {}};
  const Spec spec = spec_of(c);
  const reference::DecodeProblem problem = problem_of(c, 1);
  runtime::Device& device = engine->device();
  tools::DeviceProblem d = tools::upload(*engine, problem);
  Context ctx;
  mlajit_decode_args a = c_args(d.args);

  mlajit_persistent_sizes sizes{};
  ASSERT_EQ(mlajit_persistent_sizes_query(ctx.context, &a, &sizes), MLAJIT_OK) << mlajit_last_error();
  EXPECT_EQ(sizes.workers, engine->plan_persistent(d.args).shape.workers);
  EXPECT_EQ(sizes.rows_per_item, 16);
  const PersistentLayout layout = engine->plan_persistent(d.args).layout;
  // The header, 2 counts a tile, then a head a worker (16-byte aligned).
  EXPECT_EQ(sizes.elements[0], (4 + 2 * layout.tiles + 3) / 4 * 4 + 16 * sizes.workers);
  EXPECT_EQ(sizes.elements[1], sizes.workers + 1);
  CMetadata m(device, sizes);
  runtime::DeviceBuffer workspace(device, std::max<std::size_t>(sizes.workspace_bytes, 16));
  a.workspace = workspace.get();
  a.workspace_bytes = sizes.workspace_bytes;
  ASSERT_EQ(mlajit_persistent_metadata_fill(ctx.context, &a, &m.metadata), MLAJIT_OK) << mlajit_last_error();
  ASSERT_EQ(mlajit_persistent_decode(ctx.context, &a, &m.metadata), MLAJIT_OK) << mlajit_last_error();
  device.synchronize();
  tools::DeviceRun run = tools::read_outputs(*engine, d, problem);
  expect_matches(reference::decode(problem), run, spec, engine->plan_persistent(d.args).tile.family,
                 tools::max_abs_value(problem), "C ABI " + case_name(c));
}

TEST(PersistentCApi, BadArgumentsLaunchNothing) {
  REQUIRE_GPU();
  const Case c{16, 1, 64, DType::bf16, DType::bf16, false, {300, 5000}, {}};
  const reference::DecodeProblem problem = problem_of(c, 2);
  runtime::Device& device = engine->device();
  tools::DeviceProblem d = tools::upload(*engine, problem);
  device.fill_bytes(d.out.get(), 0x5a, d.out.size());
  Context ctx;
  mlajit_decode_args a = c_args(d.args);
  mlajit_persistent_sizes sizes{};
  ASSERT_EQ(mlajit_persistent_sizes_query(ctx.context, &a, &sizes), MLAJIT_OK) << mlajit_last_error();
  CMetadata m(device, sizes);
  runtime::DeviceBuffer workspace(device, std::max<std::size_t>(sizes.workspace_bytes, 16));
  a.workspace = workspace.get();
  a.workspace_bytes = sizes.workspace_bytes - 4;  // too small
  ASSERT_GT(sizes.workspace_bytes, 4u);
  EXPECT_EQ(mlajit_persistent_decode(ctx.context, &a, &m.metadata), MLAJIT_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(mlajit_last_error()).find("'workspace_bytes'"), std::string::npos) << mlajit_last_error();
  a.workspace_bytes = sizes.workspace_bytes;
  mlajit_persistent_metadata no_items = m.metadata;
  no_items.work_info_set = nullptr;
  EXPECT_EQ(mlajit_persistent_metadata_fill(ctx.context, &a, &no_items), MLAJIT_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(mlajit_last_error()).find("'work_info_set'"), std::string::npos) << mlajit_last_error();
  EXPECT_EQ(mlajit_persistent_decode(ctx.context, &a, &no_items), MLAJIT_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(mlajit_last_error()).find("'work_info_set'"), std::string::npos) << mlajit_last_error();
  a.num_heads = 300;
  EXPECT_EQ(mlajit_persistent_decode(ctx.context, &a, &m.metadata), MLAJIT_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(mlajit_last_error()).find("'heads'"), std::string::npos) << mlajit_last_error();
  device.synchronize();
  std::vector<unsigned char> host(d.out.size());
  device.copy_to_host(host.data(), d.out.get(), host.size());
  for (unsigned char b : host) ASSERT_EQ(b, 0x5a) << "a rejected call wrote the output";
  std::vector<int32_t> header(4);
  device.copy_to_host(header.data(), m.metadata.work_meta_data, sizeof(int32_t) * 4);
  for (int32_t v : header) EXPECT_EQ(v, 0x7f7f7f7f) << "a rejected metadata fill wrote the header";
}

// ---- CUDA graph: capture once, replay with new lengths ------------------------------------

// Device buffers large enough for every problem of one shape (same batch and query lengths);
// each replay copies its problem in (outside the graph) and poisons the outputs.
struct GraphBuffers {
  runtime::DeviceBuffer q, kv, qo, kvp, kvi, last, out, lse, k_pe;
  tools::ProblemBuffers view;

  GraphBuffers(runtime::Device& device, const std::vector<reference::DecodeProblem>& problems) {
    std::size_t q_bytes = 0, kv_bytes = 0, indices = 0;
    for (const auto& p : problems) {
      q_bytes = std::max(q_bytes, p.q.size());
      kv_bytes = std::max(kv_bytes, p.kv.size());
      indices = std::max(indices, p.kv_indices.size());
    }
    const reference::DecodeProblem& p = problems.front();
    const Spec& s = p.spec;
    q = runtime::DeviceBuffer(device, q_bytes);
    kv = runtime::DeviceBuffer(device, kv_bytes);
    qo = runtime::DeviceBuffer(device, p.qo_indptr.size() * sizeof(int));
    kvp = runtime::DeviceBuffer(device, p.kv_indptr.size() * sizeof(int));
    kvi = runtime::DeviceBuffer(device, std::max<std::size_t>(indices, 1) * sizeof(int));
    last = runtime::DeviceBuffer(device, p.kv_last_page_lens.size() * sizeof(int));
    out = runtime::DeviceBuffer(device, std::size_t(p.total_q) * s.heads * s.v_dim() * dtype_size(s.out_dtype));
    lse = runtime::DeviceBuffer(device, std::size_t(p.total_q) * s.heads * sizeof(float));
    view.q = q.get();
    view.kv = kv.get();
    view.out = out.get();
    view.lse = lse.as<float>();
    view.qo_indptr = qo.as<int>();
    view.kv_indptr = kvp.as<int>();
    view.kv_indices = kvi.as<int>();
    view.kv_last_page_lens = last.as<int>();
  }

  void load(runtime::Device& device, const reference::DecodeProblem& p) {
    device.copy_to_device(q.get(), p.q.data(), p.q.size());
    device.copy_to_device(kv.get(), p.kv.data(), p.kv.size());
    device.copy_to_device(qo.get(), p.qo_indptr.data(), p.qo_indptr.size() * sizeof(int));
    device.copy_to_device(kvp.get(), p.kv_indptr.data(), p.kv_indptr.size() * sizeof(int));
    if (!p.kv_indices.empty()) device.copy_to_device(kvi.get(), p.kv_indices.data(), p.kv_indices.size() * sizeof(int));
    device.copy_to_device(last.get(), p.kv_last_page_lens.data(), p.kv_last_page_lens.size() * sizeof(int));
    device.fill_bytes(out.get(), 0xff, out.size());  // NaN: an unwritten output shows
    device.fill_bytes(lse.get(), 0xff, lse.size());
    device.synchronize();  // the copies have landed before the graph runs on its own stream
  }

  tools::DeviceRun read(runtime::Device& device, const reference::DecodeProblem& p) {
    const Spec& s = p.spec;
    tools::DeviceRun run;
    std::vector<std::uint8_t> raw(out.size());
    device.copy_to_host(raw.data(), out.get(), raw.size());
    run.out = tools::load_elements(raw.data(), s.out_dtype, std::size_t(p.total_q) * s.heads * s.v_dim());
    run.lse.resize(std::size_t(p.total_q) * s.heads);
    device.copy_to_host(run.lse.data(), lse.get(), run.lse.size() * sizeof(float));
    return run;
  }
};

struct OwnedStream {
  runtime::Device& device;
  runtime::Stream stream;
  explicit OwnedStream(runtime::Device& d) : device(d), stream(d.create_stream()) {}
  ~OwnedStream() { device.destroy_stream(stream); }
};

struct OwnedGraph {
  runtime::Device& device;
  void* graph = nullptr;
  explicit OwnedGraph(runtime::Device& d) : device(d) {}
  ~OwnedGraph() { device.destroy_graph(graph); }
};

TEST(PersistentGraph, ReplaysWithNewLengthsInTheSameBuffers) {
  REQUIRE_GPU();
  runtime::Device& device = engine->device();
  // Same batch, heads and query lengths; the KV lengths change between replays: long requests
  // that are split (the reduce runs), none split at all, empty and one-token requests.
  const Case base{16, 3, 16, DType::bf16, DType::bf16, true, {}, {3, 3, 1, 3, 2, 3, 3, 3}};
  const std::vector<std::vector<int>> lengths = {{0, 1, 300, 5000, 17, 64, 65, 2},
                                                 {4000, 0, 1, 77, 900, 3, 0, 128},
                                                 {1, 1, 1, 1, 1, 1, 1, 1},
                                                 {2, 3000, 3000, 0, 16, 1, 700, 9}};
  std::vector<reference::DecodeProblem> problems;
  for (std::size_t i = 0; i < lengths.size(); ++i) {
    Case c = base;
    c.kv_lens = lengths[i];
    problems.push_back(problem_of(c, i));
  }
  const Spec spec = spec_of(base);
  const Target target = engine->device_info().target;
  for (KernelFamily family : families_serving(spec, target)) {
    SCOPED_TRACE(std::string(family_name(family)));
    const TileConfig tile = tuning::choose_tile(spec, target, family);
    GraphBuffers buffers(device, problems);
    OwnedStream stream(device);
    DecodeArgs args = tools::decode_args(problems.front(), buffers.view, 0);
    args.stream = stream.stream;
    const PersistentPlan plan = engine->plan_persistent(args, tile);
    tools::PersistentBuffers persistent = tools::allocate_persistent(*engine, plan);
    args.workspace = persistent.workspace.get();
    args.workspace_bytes = persistent.workspace.size();

    // Once outside the capture: the kernels are compiled and loaded before it starts.
    buffers.load(device, problems.front());
    engine->persistent_metadata_fill(args, persistent.metadata, tile);
    engine->persistent_decode(args, persistent.metadata, tile);
    device.synchronize();

    OwnedGraph graph(device);
    device.begin_capture(stream.stream);
    try {
      engine->persistent_metadata_fill(args, persistent.metadata, tile);
      engine->persistent_decode(args, persistent.metadata, tile);
    } catch (...) {
      graph.graph = device.end_capture(stream.stream);
      throw;
    }
    graph.graph = device.end_capture(stream.stream);

    for (std::size_t round = 0; round < 2; ++round) {
      for (std::size_t i = 0; i < problems.size(); ++i) {
        const reference::DecodeProblem& p = problems[i];
        buffers.load(device, p);
        device.launch_graph(graph.graph, stream.stream);
        device.synchronize();
        const tools::DeviceRun run = buffers.read(device, p);
        expect_matches(reference::decode(p), run, spec, family, tools::max_abs_value(p),
                       fmt::format("graph replay {} lengths #{}", round, i));
      }
    }
  }
}

}  // namespace
}  // namespace mlajit
