// Kernel parameter blocks of a planned decode call.
#include "runtime/decode_params.hpp"

#include <cmath>

namespace mlajit {

namespace {

constexpr std::size_t k_workspace_alignment = 256;

std::size_t align_up(std::size_t v) { return (v + k_workspace_alignment - 1) / k_workspace_alignment * k_workspace_alignment; }

struct WorkspaceLayout {
  std::size_t partial_out_bytes = 0;
  std::size_t partial_lse_bytes = 0;
};

WorkspaceLayout workspace_layout(const Spec& spec, int total_q, int num_splits) {
  WorkspaceLayout w;
  if (num_splits <= 1) return w;
  const std::size_t rows = std::size_t(num_splits) * std::size_t(total_q) * std::size_t(spec.heads);
  w.partial_out_bytes = align_up(rows * std::size_t(spec.v_dim()) * sizeof(float));
  w.partial_lse_bytes = align_up(rows * sizeof(float));
  return w;
}

}  // namespace

std::size_t decode_workspace_bytes(const Spec& spec, int total_q, int num_splits) {
  const WorkspaceLayout w = workspace_layout(spec, total_q, num_splits);
  return w.partial_out_bytes + w.partial_lse_bytes;
}

runtime::Dim3 decode_stage1_grid(const Spec& spec, const TileConfig& tile, int batch) {
  const int rows = spec.s_q * spec.heads;
  return runtime::Dim3{unsigned((rows + tile.heads_per_cta - 1) / tile.heads_per_cta), unsigned(batch),
                       unsigned(tile.num_splits)};
}

MljDecodeParams decode_params(const DecodeArgs& a, const DecodePlan& plan) {
  const Spec& spec = plan.spec;
  const WorkspaceLayout layout = workspace_layout(spec, a.total_q, plan.tile.num_splits);
  MljDecodeParams p{};
  p.q = a.q;
  p.kv = a.kv_buffer;
  p.out = a.out;
  p.lse = a.lse;
  p.partial_out = plan.needs_combine ? static_cast<float*>(a.workspace) : nullptr;
  p.partial_lse = plan.needs_combine
                      ? reinterpret_cast<float*>(static_cast<char*>(a.workspace) + layout.partial_out_bytes)
                      : nullptr;
  p.qo_indptr = a.qo_indptr;
  p.kv_indptr = a.kv_indptr;
  p.kv_indices = a.kv_indices;
  p.kv_last_page_lens = a.kv_last_page_lens;
  p.q_token_stride = (long long)spec.heads * spec.qk_dim();
  p.kv_page_stride = a.kv_page_stride == 0 ? (long long)spec.page_size * spec.qk_dim() : a.kv_page_stride;
  p.batch = a.batch;
  p.total_q = a.total_q;
  p.num_splits = plan.tile.num_splits;
  p.sm_scale = a.sm_scale > 0.0f ? a.sm_scale : 1.0f / std::sqrt(float(spec.qk_dim()));
  p.q_scale = spec.q_dtype == DType::fp8_e4m3 ? a.q_scale : 1.0f;
  p.kv_scale = spec.kv_dtype == DType::fp8_e4m3 ? a.kv_scale : 1.0f;
  static_assert(int(DType::bf16) == 0 && int(DType::fp16) == 1 && int(DType::fp32) == 3,
                "MljDecodeParams::cos_sin_dtype codes (templates/decode/params.cuh)");
  if (spec.rope != RopeStyle::none) {
    p.cos_sin_cache = a.cos_sin_cache;
    p.positions = reinterpret_cast<const long long*>(a.positions);
    p.k_pe_out = a.k_pe_out;
    p.cos_sin_dtype = int(a.cos_sin_dtype);
    p.max_positions = a.max_positions;
  }
  return p;
}

MljCombineParams combine_params(const DecodeArgs& a, const DecodePlan& plan, int ways) {
  const MljDecodeParams stage1 = decode_params(a, plan);
  MljCombineParams c{};
  c.partial_out = stage1.partial_out;
  c.partial_lse = stage1.partial_lse;
  c.out = a.out;
  c.lse = a.lse;
  c.total_q = a.total_q;
  c.num_splits = plan.tile.num_splits;
  c.ways = ways;
  return c;
}

}  // namespace mlajit
