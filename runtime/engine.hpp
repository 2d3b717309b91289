// The Engine: the public C++ API of mlajit. One per device. Turns a decode call into a Spec,
// validates it (clear error, nothing launched), asks tuning for a TileConfig, gets the kernels
// from the in-memory map / disk cache / compiler, and launches stage 1 (+ combine for split-K).
#pragma once

#include <atomic>
#include <cstddef>
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
};

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

  // The kernels for (spec, tile), compiled or loaded once per engine.
  struct LoadedDecode {
    runtime::JitResult jit;
    std::unique_ptr<runtime::Module> module;
    runtime::Kernel* stage1 = nullptr;
    runtime::Kernel* combine = nullptr;
  };
  LoadedDecode& load_decode(const Spec& spec, const TileConfig& tile);

  EngineStats stats() const;

 private:
  std::unique_ptr<runtime::Device> device_;
  const cache::DiskStore* store_;
  mutable std::shared_mutex mutex_;
  std::unordered_map<std::string, std::unique_ptr<LoadedDecode>> loaded_;
  std::atomic<long long> memory_hits_{0}, disk_hits_{0}, compiled_{0};
};

}  // namespace mlajit
