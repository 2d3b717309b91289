// CPU tier: persistent decode on the host side. Sizes depend only on the shape fields and the
// target (never on lengths or pointers); every check names its argument; the C ABI's persistent
// entry points name bad arguments even without a context (nothing can be launched).
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>

#include "codegen/error.hpp"
#include "mlajit/mlajit.h"
#include "runtime/persistent_plan.hpp"
#include "tests/runtime/scoped_env.hpp"
#include "tuning/choose.hpp"

namespace mlajit {
namespace {

// Non-null, suitably aligned stand-ins: nothing here dereferences device pointers.
alignas(16) unsigned char g_device[4096];
const Target k_sm90 = parse_target("sm_90a");
constexpr int k_sms = 132;

DecodeArgs valid_args() {
  DecodeArgs a;
  a.q = a.kv_buffer = g_device;
  a.out = g_device;
  a.qo_indptr = a.kv_indptr = a.kv_indices = a.kv_last_page_lens = reinterpret_cast<const int*>(g_device);
  a.batch = 64;
  a.total_q = 64 * 3;
  a.num_heads = 20;
  a.max_seqlen_q = 3;
  a.page_size = 64;
  a.num_kv_indices = 1000;
  return a;
}

// The argument named by the invalid_argument `fn` throws ("" when it accepts).
template <class Fn>
std::string rejected_argument(Fn&& fn) {
  try {
    fn();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::invalid_argument) << e.what();
    const std::string m = e.what();
    const auto open = m.find('\'');
    return open == std::string::npos ? m : m.substr(open + 1, m.find('\'', open + 1) - open - 1);
  }
  return "";
}

// Six separate buffers large enough for `plan` (host memory: the checks only look at pointers).
struct HostMetadata {
  std::vector<int> buffers[6];
  PersistentMetadata metadata;
  explicit HostMetadata(const PersistentPlan& plan) {
    const auto elements = plan.layout.elements();
    for (int i = 0; i < 6; ++i) buffers[i].assign(elements[i] + 1, 0);
    metadata = PersistentMetadata{buffers[0].data(), buffers[1].data(), buffers[2].data(),
                                  buffers[3].data(), buffers[4].data(), buffers[5].data()};
  }
};

TEST(PersistentPlan, SizesDependOnTheShapeAndTargetOnly) {
  const DecodeArgs a = valid_args();
  const PersistentPlan base = plan_persistent(a, k_sm90, k_sms);
  // Lengths, token counts and every pointer may change between graph replays: sizes do not.
  DecodeArgs other = a;
  other.total_q = 5;
  other.num_kv_indices = 123456;
  other.q = other.kv_buffer = other.out = nullptr;
  other.qo_indptr = other.kv_indptr = other.kv_indices = other.kv_last_page_lens = nullptr;
  other.num_kv_splits = 17;
  const PersistentPlan same = plan_persistent(other, k_sm90, k_sms);
  EXPECT_EQ(same.layout.elements(), base.layout.elements());
  EXPECT_EQ(same.workspace_bytes, base.workspace_bytes);
  EXPECT_EQ(same.shape.workers, base.shape.workers);
  EXPECT_EQ(same.tile, base.tile);
  EXPECT_EQ(base.spec.op, Op::persistent_decode);
  // What they do depend on.
  other.batch = 65;
  EXPECT_NE(plan_persistent(other, k_sm90, k_sms).layout.elements(), base.layout.elements());
}

TEST(PersistentPlan, WorkersRowsAndWorkspaceFollowTheTile) {
  DecodeArgs a = valid_args();
  a.num_heads = 16;
  a.max_seqlen_q = 1;
  a.total_q = 64;
  // bf16 on sm_90a: the wgmma family, one 384-thread CTA per SM.
  const PersistentPlan hopper = plan_persistent(a, k_sm90, k_sms);
  ASSERT_EQ(hopper.tile.family, KernelFamily::wgmma);
  EXPECT_EQ(hopper.shape.rows_per_item, 16);
  EXPECT_EQ(hopper.shape.workers, k_sms);
  EXPECT_EQ(hopper.workspace_bytes, std::size_t(hopper.layout.max_partials) * 16 * (512 + 1) * sizeof(float));

  const PersistentPlan mma = plan_persistent(a, k_sm90, k_sms, tuning::choose_tile(hopper.spec, k_sm90, KernelFamily::mma));
  ASSERT_EQ(mma.tile.family, KernelFamily::mma);
  EXPECT_EQ(mma.shape.rows_per_item, 16);
  EXPECT_EQ(mma.shape.workers, k_sms * decode_ctas_per_sm(mma.spec, mma.tile, k_sm90));
  // The header, 2 counts a tile, then a head a worker (16-byte aligned).
  EXPECT_EQ(mma.layout.worker_heads, (std::size_t(4 + 2 * mma.layout.tiles) + 3) / 4 * 4);
  EXPECT_EQ(mma.layout.elements()[0], mma.layout.worker_heads + std::size_t(16) * mma.shape.workers);
  EXPECT_EQ(mma.layout.elements()[1], std::size_t(mma.shape.workers) + 1);
  EXPECT_EQ(mma.layout.elements()[2], std::size_t(mma.layout.tiles + mma.shape.workers - 1) * 8);
  EXPECT_EQ(mma.layout.elements()[3], std::size_t(64 + 1));  // one row group per request
  EXPECT_EQ(mma.workspace_bytes,
            std::size_t(mma.layout.max_partials) * 16 * (512 + 1) * sizeof(float));

  const TileConfig portable = tuning::choose_tile(mma.spec, k_sm90, KernelFamily::portable);
  const PersistentPlan simt = plan_persistent(a, k_sm90, k_sms, portable);
  EXPECT_EQ(simt.tile.family, KernelFamily::portable);
  EXPECT_EQ(simt.shape.rows_per_item, portable.heads_per_cta);
  EXPECT_EQ(simt.shape.workers, k_sms);  // one portable CTA per SM

  a.kv_dtype = DType::fp8_e4m3;  // an fp8 cache runs on the matrix-core families too (widened per tile)
  const PersistentPlan fp8 = plan_persistent(a, k_sm90, k_sms);
  EXPECT_EQ(fp8.tile.family, KernelFamily::wgmma);
  EXPECT_EQ(fp8.shape.rows_per_item, fp8.tile.heads_per_cta);
  EXPECT_EQ(fp8.shape.workers, k_sms * decode_ctas_per_sm(fp8.spec, fp8.tile, k_sm90));
}

TEST(PersistentPlan, ShapeErrorsNameTheArgument) {
  DecodeArgs a = valid_args();
  a.num_heads = 0;
  EXPECT_EQ(rejected_argument([&] { plan_persistent(a, k_sm90, k_sms); }), "heads");
  a = valid_args();
  a.batch = 0;
  EXPECT_EQ(rejected_argument([&] { plan_persistent(a, k_sm90, k_sms); }), "batch");
  a = valid_args();
  a.max_seqlen_q = 9;
  EXPECT_EQ(rejected_argument([&] { plan_persistent(a, k_sm90, k_sms); }), "max_seqlen_q");
  EXPECT_EQ(rejected_argument([&] { plan_persistent(valid_args(), k_sm90, 0); }), "multiprocessors");
}

TEST(PersistentPlan, MetadataBuffersAreChecked) {
  const DecodeArgs a = valid_args();
  const PersistentPlan plan = plan_persistent(a, k_sm90, k_sms);
  HostMetadata host(plan);
  EXPECT_EQ(rejected_argument([&] { check_persistent_fill(a, plan, host.metadata); }), "");
  const char* names[6] = {"work_meta_data", "work_indptr", "work_info_set",
                          "reduce_indptr",  "reduce_final_map", "reduce_partial_map"};
  int* PersistentMetadata::*fields[6] = {&PersistentMetadata::work_meta_data, &PersistentMetadata::work_indptr,
                                         &PersistentMetadata::work_info_set,  &PersistentMetadata::reduce_indptr,
                                         &PersistentMetadata::reduce_final_map, &PersistentMetadata::reduce_partial_map};
  for (int i = 0; i < 6; ++i) {
    PersistentMetadata m = host.metadata;
    m.*fields[i] = nullptr;
    EXPECT_EQ(rejected_argument([&] { check_persistent_fill(a, plan, m); }), names[i]);
    EXPECT_EQ(rejected_argument([&] { check_persistent_decode(a, plan, m); }), names[i]);
    m.*fields[i] = reinterpret_cast<int*>(reinterpret_cast<char*>(host.buffers[i].data()) + 2);
    EXPECT_EQ(rejected_argument([&] { check_persistent_fill(a, plan, m); }), names[i]) << "misaligned";
  }
  DecodeArgs no_lengths = a;
  no_lengths.kv_last_page_lens = nullptr;
  EXPECT_EQ(rejected_argument([&] { check_persistent_fill(no_lengths, plan, host.metadata); }), "kv_last_page_lens");
}

TEST(PersistentPlan, DecodeChecksEveryDecodeArgumentAndTheWorkspace) {
  DecodeArgs a = valid_args();
  const PersistentPlan plan = plan_persistent(a, k_sm90, k_sms);
  HostMetadata host(plan);
  ASSERT_GT(plan.workspace_bytes, 0u);
  EXPECT_EQ(rejected_argument([&] { check_persistent_decode(a, plan, host.metadata); }), "workspace");
  a.workspace = g_device + 4;
  a.workspace_bytes = plan.workspace_bytes;
  EXPECT_EQ(rejected_argument([&] { check_persistent_decode(a, plan, host.metadata); }), "workspace") << "misaligned";
  a.workspace = g_device;
  a.workspace_bytes = plan.workspace_bytes - 1;
  EXPECT_EQ(rejected_argument([&] { check_persistent_decode(a, plan, host.metadata); }), "workspace_bytes");
  a.workspace_bytes = plan.workspace_bytes;
  EXPECT_EQ(rejected_argument([&] { check_persistent_decode(a, plan, host.metadata); }), "");
  a.out = nullptr;
  EXPECT_EQ(rejected_argument([&] { check_persistent_decode(a, plan, host.metadata); }), "out");
}

TEST(PersistentPlan, ParametersPointAtTheCallersBuffers) {
  DecodeArgs a = valid_args();
  const PersistentPlan plan = plan_persistent(a, k_sm90, k_sms);
  HostMetadata host(plan);
  a.workspace = g_device;
  a.workspace_bytes = plan.workspace_bytes;
  const MljScheduleParams s = persistent_schedule_params(a, plan, host.metadata);
  EXPECT_EQ(s.header, host.metadata.work_meta_data);
  EXPECT_EQ(s.work_items, host.metadata.work_info_set);
  EXPECT_EQ(s.reduce_tiles, host.metadata.reduce_final_map);
  EXPECT_EQ(s.workers, plan.shape.workers);
  EXPECT_EQ(s.rows_per_item, plan.shape.rows_per_item);
  const MljPersistentLayout l = persistent_kernel_layout(plan.shape, host.metadata);
  EXPECT_EQ(l.work_items, host.metadata.work_info_set);
  EXPECT_EQ(l.reduce_partial_map, host.metadata.reduce_partial_map);
  EXPECT_EQ(l.groups, plan.layout.groups);
  EXPECT_EQ(l.pieces_done, host.metadata.work_meta_data + 4);  // after the header's 4 counts
  EXPECT_EQ(l.pieces_taken, host.metadata.work_meta_data + 4 + plan.layout.tiles);
  const MljDecodeParams p = persistent_decode_params(a, plan);
  EXPECT_EQ(static_cast<void*>(p.partial_out), a.workspace);
  const std::size_t lse_offset =
      reinterpret_cast<const char*>(p.partial_lse) - reinterpret_cast<const char*>(p.partial_out);
  EXPECT_EQ(lse_offset, plan.layout.partial_rows(plan.shape.rows_per_item) * 512 * sizeof(float));
  EXPECT_EQ(lse_offset % 16, 0u);
}

// ---- C ABI ----------------------------------------------------------------------------------

std::string last_error() { return mlajit_last_error(); }

mlajit_decode_args valid_c_args() {
  mlajit_decode_args a;
  mlajit_decode_args_init(&a);
  a.q = a.kv_buffer = g_device;
  a.out = g_device;
  a.qo_indptr = a.kv_indptr = a.kv_indices = a.kv_last_page_lens = reinterpret_cast<const int32_t*>(g_device);
  a.batch = 4;
  a.total_q = 4;
  a.num_heads = 16;
  a.num_kv_indices = 10;
  return a;
}

TEST(PersistentCApi, ArgumentsAreNamedBeforeTheContext) {
  mlajit_persistent_sizes sizes{};
  mlajit_decode_args a = valid_c_args();
  a.num_heads = 0;
  EXPECT_EQ(mlajit_persistent_sizes_query(nullptr, &a, &sizes), MLAJIT_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(last_error().find("'heads'"), std::string::npos) << last_error();
  a = valid_c_args();
  EXPECT_EQ(mlajit_persistent_sizes_query(nullptr, &a, nullptr), MLAJIT_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(last_error().find("'sizes'"), std::string::npos) << last_error();
  EXPECT_EQ(mlajit_persistent_metadata_fill(nullptr, &a, nullptr), MLAJIT_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(last_error().find("'metadata'"), std::string::npos) << last_error();
  EXPECT_EQ(mlajit_persistent_decode(nullptr, &a, nullptr), MLAJIT_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(last_error().find("'metadata'"), std::string::npos) << last_error();
  mlajit_persistent_metadata m{};
  a.out = nullptr;
  EXPECT_EQ(mlajit_persistent_decode(nullptr, &a, &m), MLAJIT_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(last_error().find("'out'"), std::string::npos) << last_error();
  a = valid_c_args();
  a.struct_size = 8;
  EXPECT_EQ(mlajit_persistent_metadata_fill(nullptr, &a, &m), MLAJIT_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(last_error().find("'args.struct_size'"), std::string::npos) << last_error();
  // Valid arguments: the missing context is what is named.
  a = valid_c_args();
  EXPECT_EQ(mlajit_persistent_sizes_query(nullptr, &a, &sizes), MLAJIT_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(last_error().find("'context'"), std::string::npos) << last_error();
  EXPECT_EQ(mlajit_persistent_decode(nullptr, &a, &m), MLAJIT_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(last_error().find("'context'"), std::string::npos) << last_error();
}

TEST(PersistentCApi, SizesStructMatchesTheMetadataOrder) {
  // elements[i] is the size of the i-th pointer of mlajit_persistent_metadata.
  EXPECT_EQ(offsetof(mlajit_persistent_metadata, work_meta_data), 0u);
  EXPECT_EQ(offsetof(mlajit_persistent_metadata, reduce_partial_map), 5 * sizeof(int32_t*));
  EXPECT_EQ(sizeof(mlajit_persistent_sizes::elements) / sizeof(int64_t), 6u);
}

}  // namespace
}  // namespace mlajit

namespace mlajit {
namespace {

// MLAJIT_PERSISTENT_OVERHEAD (developers): the item overhead of the schedule, validated.
struct ScopedOverhead : ScopedEnv {
  explicit ScopedOverhead(const char* value) : ScopedEnv("MLAJIT_PERSISTENT_OVERHEAD", value) {}
};

TEST(PersistentPlan, ItemOverheadComesFromTheEnvironmentWhenSet) {
  EXPECT_EQ(plan_persistent(valid_args(), k_sm90, k_sms, std::nullopt).shape.overhead, 5);
  {
    ScopedOverhead env("12");
    EXPECT_EQ(plan_persistent(valid_args(), k_sm90, k_sms, std::nullopt).shape.overhead, 12);
  }
  {
    ScopedOverhead env("0");
    EXPECT_EQ(plan_persistent(valid_args(), k_sm90, k_sms, std::nullopt).shape.overhead, 0);
  }
  for (const char* bad : {"-1", "1025", "5x", "five", " 5"}) {
    ScopedOverhead env(bad);
    EXPECT_EQ(rejected_argument([] { plan_persistent(valid_args(), k_sm90, k_sms, std::nullopt); }),
              "MLAJIT_PERSISTENT_OVERHEAD")
        << bad;
  }
}

}  // namespace
}  // namespace mlajit
