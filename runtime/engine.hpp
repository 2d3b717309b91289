// The Engine: the public C++ API of mlajit. One per device. Turns a decode call into a Spec,
// validates it (clear error, nothing launched), asks tuning for a TileConfig, gets the kernels
// from the in-memory map / disk cache / compiler, and launches stage 1 (+ combine for split-K).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <shared_mutex>
#include <string>
#include <unordered_map>

#include "codegen/spec.hpp"
#include "runtime/backend.hpp"
#include "runtime/jit.hpp"
#include "tuning/choose.hpp"

namespace mlajit {

// Device pointers and shapes with AITER's layout and meaning (mla-semantics §1.1).
//
// FP8 (e4m3): q and / or the cache may be fp8 with per-tensor dequant scales (§1.2): logits are
// sm_scale * q_scale * kv_scale * <q, k> (q_scale only for fp8 q, kv_scale only for an fp8
// cache) and the output is multiplied by kv_scale.
//
// Fused RoPE (§2, AITER's decode_attention_fwd_grouped_rope generalised to s_q > 1), when `rope`
// is neox or gptj: q's rope part (columns kv_lora_rank..) is not yet rotated, and neither is the
// k_pe of each query token's own key. Query token t of a request with q_len tokens and L keys
// owns key L - q_len + t (the bottom-right alignment of the causal mask). The kernel rotates q_pe
// of every query token and the k_pe of its own key at positions[token] (clamped to
// [0, max_positions)), using row `position` of cos_sin_cache = [cos(p t_0..t_{R/2-1}) |
// sin(p t_0..t_{R/2-1})] (R = rope_dim: rotary_dim is the whole rope part). Rotated values are
// rounded to q's dtype and to the cache's dtype (for fp8, in the cache's stored units: rotation
// commutes with kv_scale), exactly as a separate RoPE pass writing q and the cache would. The
// key's rotated k_pe is used in QK and stored to k_pe_out (AITER's k_pe_tokens) so the caller can
// write it back into the cache; kv_buffer itself is never written. A token with no key of its
// own (q_len > L) gets zeros in k_pe_out.
struct DecodeArgs {
  const void* q = nullptr;             // [total_q, num_heads, kv_lora_rank + rope_dim], contiguous
  DType q_dtype = DType::bf16;
  const void* kv_buffer = nullptr;     // [pages, page_size, 1, kv_lora_rank + rope_dim], 16 B aligned
  DType kv_dtype = DType::bf16;
  long long kv_page_stride = 0;        // elements between pages; 0 = page_size * (kv_lora_rank + rope_dim)
  void* out = nullptr;                 // [total_q, num_heads, kv_lora_rank]
  DType out_dtype = DType::bf16;
  float* lse = nullptr;                // [total_q, num_heads] fp32, optional
  const int* qo_indptr = nullptr;      // [batch + 1]
  const int* kv_indptr = nullptr;      // [batch + 1], in entries of kv_indices (pages)
  const int* kv_indices = nullptr;     // [num_kv_indices]
  const int* kv_last_page_lens = nullptr;  // [batch], each in [1, page_size]
  int batch = 0;
  int total_q = 0;
  int num_heads = 0;
  int max_seqlen_q = 1;
  int page_size = 1;
  int kv_lora_rank = 512;
  int rope_dim = 64;
  long long num_kv_indices = 0;        // length of kv_indices (host-known, like a tensor shape)
  float sm_scale = 0.0f;               // <= 0: 1 / sqrt(kv_lora_rank + rope_dim)
  float logit_cap = 0.0f;
  float q_scale = 1.0f;                // used when q is fp8
  float kv_scale = 1.0f;               // used when kv is fp8
  bool causal = true;
  int num_kv_splits = 0;               // 0 = auto
  void* workspace = nullptr;           // decode_workspace_size() bytes, 16 B aligned
  std::size_t workspace_bytes = 0;
  runtime::Stream stream = nullptr;
  // Fused RoPE (see above); the pointers are read only when rope is not none.
  RopeStyle rope = RopeStyle::none;
  const void* cos_sin_cache = nullptr;  // [max_positions, rope_dim]
  DType cos_sin_dtype = DType::bf16;    // bf16, fp16 or fp32
  int max_positions = 0;                // rows of cos_sin_cache
  const std::int64_t* positions = nullptr;  // [total_q] int64, one position per query token
  void* k_pe_out = nullptr;             // [total_q, rope_dim] in kv_dtype: each query token's roped k_pe
};

// The Spec of a decode call, after checking every argument that can be checked on the host
// (invalid_argument naming it). Needs no device; Engine::plan_decode starts with it.
Spec decode_spec(const DecodeArgs& args);
// The Spec from the shape fields alone (batch, max_seqlen_q, num_heads, dims, dtypes, page_size,
// causal, logit_cap, rope, whether lse is set), checked; no pointer is read. decode_spec starts
// with it; the persistent sizes query uses only it.
Spec shape_spec(const DecodeArgs& args);

struct PersistentPlan;      // runtime/persistent_plan.hpp
struct PersistentMetadata;  // runtime/persistent_layout.hpp

// What one decode call will run.
struct DecodePlan {
  Spec spec;
  TileConfig tile;                // num_splits resolved
  std::size_t workspace_bytes = 0;
  runtime::Dim3 stage1_grid;
  bool needs_combine = false;
};

struct EngineStats {
  long long memory_hits = 0;
  long long disk_hits = 0;
  long long compiled = 0;
};

class Engine {
 public:
  explicit Engine(int device_ordinal = 0, Backend backend = Backend::cuda);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  const runtime::DeviceInfo& device_info() const { return device_->info(); }
  runtime::Device& device() { return *device_; }

  // Host-side validation and choices; throws invalid_argument naming the argument. `tile`
  // forces a kernel shape (tuning sweeps, tests); its num_splits 0 defers to args / the model.
  DecodePlan plan_decode(const DecodeArgs& args, const std::optional<TileConfig>& tile = std::nullopt) const;
  std::size_t decode_workspace_size(const DecodeArgs& args, const std::optional<TileConfig>& tile = std::nullopt) const {
    return plan_decode(args, tile).workspace_bytes;
  }
  // Enqueues the decode on args.stream. Nothing is launched when validation fails.
  void decode(const DecodeArgs& args, const std::optional<TileConfig>& tile = std::nullopt);

  // Persistent decode (runtime/persistent_plan.hpp, C ABI mlajit_persistent_*). The plan and
  // the sizes of the caller's buffers, from the shape fields of args and the device alone (no
  // device data is read). `tile` forces a kernel shape; give the same one to all three calls.
  PersistentPlan plan_persistent(const DecodeArgs& args, const std::optional<TileConfig>& tile = std::nullopt) const;
  // Enqueues the metadata kernel on args.stream: reads qo_indptr, kv_indptr, kv_last_page_lens
  // on the device and fills `metadata`. No host synchronisation, no allocation (graph-capturable).
  void persistent_metadata_fill(const DecodeArgs& args, const PersistentMetadata& metadata,
                                const std::optional<TileConfig>& tile = std::nullopt);
  // Enqueues the persistent stage 1 and its reduce on args.stream (metadata filled for the same
  // shape; args.workspace of plan.workspace_bytes; num_kv_splits is not used). Graph-capturable.
  void persistent_decode(const DecodeArgs& args, const PersistentMetadata& metadata,
                         const std::optional<TileConfig>& tile = std::nullopt);

  // The kernels for (spec, tile), compiled or loaded once per engine. spec.op persistent_decode:
  // stage1 is the persistent kernel, combine its reduce, schedule the metadata kernel.
  struct LoadedDecode {
    runtime::JitResult jit;
    std::unique_ptr<runtime::Module> module;
    runtime::Kernel* stage1 = nullptr;
    runtime::Kernel* combine = nullptr;
    runtime::Kernel* schedule = nullptr;
  };
  LoadedDecode& load_decode(const Spec& spec, const TileConfig& tile);

  EngineStats stats() const;

 private:
  std::unique_ptr<runtime::Device> device_;
  const cache::DiskStore* store_;
  mutable std::shared_mutex mutex_;
  // Loaded kernels by (spec, tile with num_splits 0): a plain value key, so the per-call lookup
  // of a hot decode formats and allocates nothing.
  struct LoadedKey {
    Spec spec;
    TileConfig tile;
    bool operator==(const LoadedKey&) const = default;
  };
  struct LoadedKeyHash {
    std::size_t operator()(const LoadedKey& k) const;
  };
  std::unordered_map<LoadedKey, std::unique_ptr<LoadedDecode>, LoadedKeyHash> loaded_;
  std::atomic<long long> memory_hits_{0}, disk_hits_{0}, compiled_{0};
};

}  // namespace mlajit
