// Engine: validation, planning and launch of decode calls.
#include "runtime/engine.hpp"

#include <cmath>
#include <cstdint>
#include <mutex>

#include <fmt/format.h>

#include "codegen/error.hpp"
#include "runtime/decode_params.hpp"
#include "runtime/persistent_plan.hpp"
#include "tuning/registry.hpp"
#include "tuning/select.hpp"

namespace mlajit {

namespace {

void require_pointer(const void* p, const char* name) {
  if (p == nullptr) throw_invalid(name, "must be a device pointer", "null");
}

void require_aligned(const void* p, std::size_t alignment, const char* name) {
  if (reinterpret_cast<std::uintptr_t>(p) % alignment != 0) {
    throw_invalid(name, fmt::format("must be {}-byte aligned", alignment), fmt::format("{}", p));
  }
}

// The fused-RoPE arguments, each named (mla-semantics §2).
void validate_rope_args(const DecodeArgs& a) {
  const std::string when = fmt::format("must be a device pointer when rope is {}", rope_style_name(a.rope));
  if (a.cos_sin_cache == nullptr) throw_invalid("cos_sin_cache", when, "null");
  if (a.positions == nullptr) throw_invalid("positions", when, "null");
  if (a.k_pe_out == nullptr) throw_invalid("k_pe_out", when, "null");
  if (a.cos_sin_dtype == DType::fp8_e4m3) throw_invalid("cos_sin_dtype", "must be bf16, fp16 or fp32", "fp8_e4m3");
  require_aligned(a.cos_sin_cache, dtype_size(a.cos_sin_dtype), "cos_sin_cache");
  require_aligned(a.positions, sizeof(std::int64_t), "positions");
  require_aligned(a.k_pe_out, dtype_size(a.kv_dtype), "k_pe_out");
  if (a.max_positions < 1) {
    throw_invalid("max_positions", "must be >= 1 (rows of cos_sin_cache)", std::to_string(a.max_positions));
  }
}

}  // namespace

Spec shape_spec(const DecodeArgs& a) {
  if (a.batch < 1 || a.batch > 65535) throw_invalid("batch", "must be in [1, 65535]", std::to_string(a.batch));
  if (a.max_seqlen_q < 1 || a.max_seqlen_q > 8) {
    throw_invalid("max_seqlen_q", "must be in [1, 8]", std::to_string(a.max_seqlen_q));
  }
  Spec spec;
  spec.q_dtype = a.q_dtype;
  spec.kv_dtype = a.kv_dtype;
  spec.out_dtype = a.out_dtype;
  spec.heads = a.num_heads;
  spec.kv_lora_rank = a.kv_lora_rank;
  spec.rope_dim = a.rope_dim;
  spec.page_size = a.page_size;
  spec.s_q = a.max_seqlen_q;
  spec.causal = a.causal;
  spec.logit_cap = a.logit_cap;
  spec.return_lse = a.lse != nullptr;
  spec.rope = a.rope;
  validate(spec);
  return canonical(spec);
}

Spec decode_spec(const DecodeArgs& a) {
  const Spec spec = shape_spec(a);
  if (a.total_q < 0 || (long long)a.total_q > (long long)a.batch * a.max_seqlen_q) {
    throw_invalid("total_q", fmt::format("must be in [0, batch * max_seqlen_q = {}]", (long long)a.batch * a.max_seqlen_q),
                  std::to_string(a.total_q));
  }
  require_pointer(a.q, "q");
  require_pointer(a.kv_buffer, "kv_buffer");
  require_pointer(a.out, "out");
  require_pointer(a.qo_indptr, "qo_indptr");
  require_pointer(a.kv_indptr, "kv_indptr");
  require_pointer(a.kv_last_page_lens, "kv_last_page_lens");
  if (a.num_kv_indices < 0) throw_invalid("num_kv_indices", "must be >= 0", std::to_string(a.num_kv_indices));
  if (a.num_kv_indices > 0) require_pointer(a.kv_indices, "kv_indices");
  require_aligned(a.kv_buffer, 16, "kv_buffer");
  const long long row = spec.qk_dim();
  const long long page_stride = a.kv_page_stride == 0 ? (long long)spec.page_size * row : a.kv_page_stride;
  if (page_stride < (long long)spec.page_size * row) {
    throw_invalid("kv_page_stride", fmt::format("must be >= page_size * (kv_lora_rank + rope_dim) = {}", spec.page_size * row),
                  std::to_string(page_stride));
  }
  if (page_stride * (long long)dtype_size(spec.kv_dtype) % 16 != 0) {
    throw_invalid("kv_page_stride", "must be a multiple of 16 bytes", std::to_string(page_stride));
  }
  if (!(a.sm_scale <= 0.0f) && !std::isfinite(a.sm_scale)) throw_invalid("sm_scale", "must be finite", fmt::format("{}", a.sm_scale));
  if (!(std::isfinite(a.q_scale) && a.q_scale > 0)) throw_invalid("q_scale", "must be finite and > 0", fmt::format("{}", a.q_scale));
  if (!(std::isfinite(a.kv_scale) && a.kv_scale > 0)) throw_invalid("kv_scale", "must be finite and > 0", fmt::format("{}", a.kv_scale));
  if (a.num_kv_splits < 0 || a.num_kv_splits > 4096) {
    throw_invalid("num_kv_splits", "must be in [0, 4096] (0 = auto)", std::to_string(a.num_kv_splits));
  }
  if (spec.rope != RopeStyle::none) validate_rope_args(a);
  return spec;
}

Engine::Engine(int device_ordinal, Backend backend)
    : device_(runtime::backend(backend).open_device(device_ordinal)), store_(runtime::default_store()) {}

Engine::~Engine() = default;

DecodePlan Engine::plan_decode(const DecodeArgs& a, const std::optional<TileConfig>& forced) const {
  const Spec spec = decode_spec(a);

  DecodePlan plan;
  plan.spec = spec;
  // Tile and splits: what the caller forced, else the tuning database of this arch (loaded once
  // per process), else the model.
  const Target& target = device_->info().target;
  tuning::DecodeShape shape;
  shape.batch = a.batch;
  shape.mean_kv_tokens = double(a.num_kv_indices) * spec.page_size / a.batch;
  shape.multiprocessors = device_->info().multiprocessors;
  const tuning::Database* db = tuning::database_for(target.arch);
  if (forced) {
    plan.tile = *forced;
    if (plan.tile.num_splits == 0) {
      plan.tile.num_splits = a.num_kv_splits > 0 ? a.num_kv_splits : tuning::select_splits(spec, target, plan.tile, shape, db);
    }
  } else {
    plan.tile = tuning::select(spec, target, shape, db).tile;
    if (a.num_kv_splits > 0) plan.tile.num_splits = a.num_kv_splits;
  }
  validate(plan.tile, spec, target);
  if (plan.tile.family != KernelFamily::portable) require_aligned(a.q, 16, "q");
  plan.workspace_bytes = decode_workspace_bytes(spec, a.total_q, plan.tile.num_splits);
  plan.needs_combine = plan.tile.num_splits > 1;
  plan.stage1_grid = decode_stage1_grid(spec, plan.tile, a.batch);
  return plan;
}

Engine::LoadedDecode& Engine::load_decode(const Spec& spec, const TileConfig& tile) {
  LoadedKey key{spec, tile};
  key.tile.num_splits = 0;  // a launch parameter: one code object serves every split count
  {
    std::shared_lock lock(mutex_);
    if (auto it = loaded_.find(key); it != loaded_.end()) {
      memory_hits_.fetch_add(1, std::memory_order_relaxed);
      return *it->second;
    }
  }
  std::unique_lock lock(mutex_);
  if (auto it = loaded_.find(key); it != loaded_.end()) return *it->second;
  auto loaded = std::make_unique<LoadedDecode>();
  loaded->jit = runtime::jit_compile(spec, tile, device_->info().target, store_);
  (loaded->jit.outcome == cache::Outcome::compiled ? compiled_ : disk_hits_).fetch_add(1);
  loaded->module = device_->load(loaded->jit.code);
  loaded->stage1 = &loaded->module->kernel(loaded->jit.source.stage1_entry);
  loaded->combine = &loaded->module->kernel(loaded->jit.source.combine_entry);
  if (!loaded->jit.source.schedule_entry.empty()) {
    loaded->schedule = &loaded->module->kernel(loaded->jit.source.schedule_entry);
  }
  loaded->stage1->reserve_shared(loaded->jit.source.stage1_shared_bytes);
  LoadedDecode& ref = *loaded;
  loaded_.emplace(key, std::move(loaded));
  return ref;
}

void Engine::decode(const DecodeArgs& a, const std::optional<TileConfig>& tile) {
  const DecodePlan plan = plan_decode(a, tile);
  if (plan.workspace_bytes > 0) {
    require_pointer(a.workspace, "workspace");
    require_aligned(a.workspace, 16, "workspace");
    if (a.workspace_bytes < plan.workspace_bytes) {
      throw_invalid("workspace_bytes",
                    fmt::format("must be >= {} for num_splits = {} (ask decode_workspace_size)",
                                plan.workspace_bytes, plan.tile.num_splits),
                    std::to_string(a.workspace_bytes));
    }
  }
  if (a.total_q == 0) return;  // nothing to compute
  LoadedDecode& kernels = load_decode(plan.spec, plan.tile);
  device_->make_current();

  MljDecodeParams p = decode_params(a, plan);
  void* stage1_args[] = {&p};
  kernels.stage1->launch(plan.stage1_grid, runtime::Dim3{unsigned(kernels.jit.source.stage1_threads)},
                         kernels.jit.source.stage1_shared_bytes, a.stream, stage1_args,
                         runtime::LaunchOrder::after_previous);
  if (plan.needs_combine) {
    const Source& source = kernels.jit.source;
    MljCombineParams c = combine_params(a, plan, source.combine_ways(plan.tile.num_splits));
    void* combine_args[] = {&c};
    kernels.combine->launch(runtime::Dim3{source.combine_ctas(a.total_q * plan.spec.heads, c.ways)},
                            runtime::Dim3{unsigned(source.combine_threads)}, 0, a.stream, combine_args,
                            runtime::LaunchOrder::overlap_previous);
  }
}

PersistentPlan Engine::plan_persistent(const DecodeArgs& a, const std::optional<TileConfig>& tile) const {
  return mlajit::plan_persistent(a, device_->info().target, device_->info().multiprocessors, tile);
}

void Engine::persistent_metadata_fill(const DecodeArgs& a, const PersistentMetadata& metadata,
                                      const std::optional<TileConfig>& tile) {
  const PersistentPlan plan = plan_persistent(a, tile);
  check_persistent_fill(a, plan, metadata);
  LoadedDecode& kernels = load_decode(plan.spec, plan.tile);
  device_->make_current();
  MljScheduleParams p = persistent_schedule_params(a, plan, metadata);
  void* args[] = {&p};
  const Source& source = kernels.jit.source;
  kernels.schedule->launch(runtime::Dim3{1}, runtime::Dim3{unsigned(source.schedule_threads)},
                           source.schedule_shared_bytes, a.stream, args, runtime::LaunchOrder::after_previous);
}

void Engine::persistent_decode(const DecodeArgs& a, const PersistentMetadata& metadata,
                               const std::optional<TileConfig>& tile) {
  const PersistentPlan plan = plan_persistent(a, tile);
  check_persistent_decode(a, plan, metadata);
  if (a.total_q == 0) return;  // nothing to compute
  LoadedDecode& kernels = load_decode(plan.spec, plan.tile);
  device_->make_current();
  MljDecodeParams p = persistent_decode_params(a, plan);
  MljPersistentLayout layout = persistent_kernel_layout(plan.shape, metadata);
  void* args[] = {&p, &layout};
  const Source& source = kernels.jit.source;
  // The persistent stage 1 and the reduce run as programmatic dependents of the kernel before them
  // (the metadata fill, then stage 1): each waits for it before reading anything.
  kernels.stage1->launch(runtime::Dim3{unsigned(plan.shape.workers)}, runtime::Dim3{unsigned(source.stage1_threads)},
                         source.stage1_shared_bytes, a.stream, args, runtime::LaunchOrder::overlap_previous);
  if (plan.layout.max_split_tiles > 0) {
    // Fixed grid (graph-safe): CTAs past this run's split tiles exit at once.
    kernels.combine->launch(runtime::Dim3{unsigned(plan.shape.rows_per_item), unsigned(plan.layout.max_split_tiles)},
                            runtime::Dim3{unsigned(source.combine_threads)}, 0, a.stream, args,
                            runtime::LaunchOrder::overlap_previous);
  }
}

std::size_t Engine::LoadedKeyHash::operator()(const LoadedKey& k) const {
  const Spec& s = k.spec;
  const TileConfig& t = k.tile;
  std::size_t h = 0;
  auto mix = [&h](long long v) { h ^= std::hash<long long>{}(v) + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2); };
  for (long long v : {(long long)s.op, (long long)s.q_dtype, (long long)s.kv_dtype, (long long)s.out_dtype,
                      (long long)s.heads, (long long)s.kv_lora_rank, (long long)s.rope_dim, (long long)s.page_size,
                      (long long)s.s_q, (long long)s.causal, (long long)std::hash<float>{}(s.logit_cap),
                      (long long)s.return_lse, (long long)s.rope, (long long)t.family, (long long)t.heads_per_cta,
                      (long long)t.tokens_per_tile, (long long)t.warps, (long long)t.stages}) {
    mix(v);
  }
  return h;
}

EngineStats Engine::stats() const {
  return EngineStats{memory_hits_.load(), disk_hits_.load(), compiled_.load()};
}

}  // namespace mlajit
