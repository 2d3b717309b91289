// Persistent decode: plan, checks and parameter blocks.
#include "runtime/persistent_plan.hpp"

#include <charconv>
#include <cstdint>
#include <string>

#include <fmt/format.h>

#include "cache/environment.hpp"
#include "codegen/error.hpp"
#include "runtime/decode_params.hpp"
#include "tuning/choose.hpp"

namespace mlajit {

namespace {

constexpr const char* k_buffer_names[6] = {"work_meta_data", "work_indptr", "work_info_set",
                                           "reduce_indptr",  "reduce_final_map", "reduce_partial_map"};

void check_metadata(const PersistentMetadata& m, const PersistentLayout& layout) {
  const int* buffers[6] = {m.work_meta_data, m.work_indptr,      m.work_info_set,
                           m.reduce_indptr,  m.reduce_final_map, m.reduce_partial_map};
  const auto elements = layout.elements();
  for (int i = 0; i < 6; ++i) {
    if (buffers[i] == nullptr && elements[i] > 0) {
      throw_invalid(k_buffer_names[i], fmt::format("must be a device pointer to {} int32 elements", elements[i]), "null");
    }
    if (reinterpret_cast<std::uintptr_t>(buffers[i]) % sizeof(int) != 0) {
      throw_invalid(k_buffer_names[i], "must be 4-byte aligned (int32)", fmt::format("{}", static_cast<const void*>(buffers[i])));
    }
  }
}

void require_pointer(const void* p, const char* name) {
  if (p == nullptr) throw_invalid(name, "must be a device pointer", "null");
}

// The partial rows of the workspace: fp32 outputs, then their LSEs.
std::size_t partial_out_bytes(const PersistentPlan& plan) {
  return plan.layout.partial_rows(plan.shape.rows_per_item) * std::size_t(plan.spec.v_dim()) * sizeof(float);
}

// MLAJIT_PERSISTENT_OVERHEAD, or the default.
int item_overhead_blocks(int fallback) {
  const std::optional<std::string> text = read_environment("MLAJIT_PERSISTENT_OVERHEAD");
  if (!text) return fallback;
  int value = -1;
  const auto [end, ec] = std::from_chars(text->data(), text->data() + text->size(), value);
  if (ec != std::errc() || end != text->data() + text->size() || value < 0 || value > 1024) {
    throw_invalid("MLAJIT_PERSISTENT_OVERHEAD", "must be an integer in [0, 1024] (KV blocks of 64 tokens)", *text);
  }
  return value;
}

}  // namespace

PersistentPlan plan_persistent(const DecodeArgs& args, const Target& target, int multiprocessors,
                               const std::optional<TileConfig>& forced) {
  if (multiprocessors < 1) throw_invalid("multiprocessors", "must be >= 1", std::to_string(multiprocessors));
  PersistentPlan plan;
  plan.spec = shape_spec(args);
  plan.spec.op = Op::persistent_decode;
  plan.tile = forced ? *forced : tuning::choose_tile(plan.spec, target);
  plan.tile.num_splits = 1;
  validate(plan.tile, plan.spec, target);
  plan.shape.batch = args.batch;
  plan.shape.heads = plan.spec.heads;
  plan.shape.s_q = plan.spec.s_q;
  plan.shape.page_size = plan.spec.page_size;
  plan.shape.rows_per_item = plan.tile.heads_per_cta;
  plan.shape.workers = multiprocessors * decode_ctas_per_sm(plan.spec, plan.tile, target);
  plan.shape.overhead = item_overhead_blocks(plan.shape.overhead);
  plan.layout = persistent_layout(plan.shape);
  plan.workspace_bytes =
      plan.layout.partial_rows(plan.shape.rows_per_item) * std::size_t(plan.spec.v_dim() + 1) * sizeof(float);
  return plan;
}

void check_persistent_fill(const DecodeArgs& args, const PersistentPlan& plan, const PersistentMetadata& metadata) {
  require_pointer(args.qo_indptr, "qo_indptr");
  require_pointer(args.kv_indptr, "kv_indptr");
  require_pointer(args.kv_last_page_lens, "kv_last_page_lens");
  check_metadata(metadata, plan.layout);
}

void check_persistent_decode(const DecodeArgs& args, const PersistentPlan& plan, const PersistentMetadata& metadata) {
  decode_spec(args);
  if (plan.tile.family != KernelFamily::portable && reinterpret_cast<std::uintptr_t>(args.q) % 16 != 0) {
    throw_invalid("q", "must be 16-byte aligned", fmt::format("{}", args.q));
  }
  check_metadata(metadata, plan.layout);
  if (plan.workspace_bytes == 0) return;
  require_pointer(args.workspace, "workspace");
  if (reinterpret_cast<std::uintptr_t>(args.workspace) % 16 != 0) {
    throw_invalid("workspace", "must be 16-byte aligned", fmt::format("{}", args.workspace));
  }
  if (args.workspace_bytes < plan.workspace_bytes) {
    throw_invalid("workspace_bytes",
                  fmt::format("must be >= {} for persistent decode (ask the persistent sizes query)",
                              plan.workspace_bytes),
                  std::to_string(args.workspace_bytes));
  }
}

MljScheduleParams persistent_schedule_params(const DecodeArgs& args, const PersistentPlan& plan,
                                             const PersistentMetadata& metadata) {
  return schedule_params(plan.shape, args.qo_indptr, args.kv_indptr, args.kv_last_page_lens, metadata);
}

MljDecodeParams persistent_decode_params(const DecodeArgs& args, const PersistentPlan& plan) {
  DecodePlan grid;  // the decode's parameters without split-K; partials set below
  grid.spec = plan.spec;
  grid.tile = plan.tile;
  grid.needs_combine = false;
  MljDecodeParams p = decode_params(args, grid);
  if (plan.workspace_bytes > 0) {
    p.partial_out = static_cast<float*>(args.workspace);
    p.partial_lse = reinterpret_cast<float*>(static_cast<char*>(args.workspace) + partial_out_bytes(plan));
  }
  return p;
}

}  // namespace mlajit
