// Runs one decode on a device for a host problem and compares it with the float32 reference.
// Shared by `mlajit verify`, the gpu test tier and (later) the benchmark.
#pragma once

#include <cstdint>
#include <vector>

#include "reference/decode_reference.hpp"
#include "runtime/engine.hpp"
#include "runtime/persistent_plan.hpp"

namespace mlajit::tools {

// Where a problem's tensors live: device memory for a GPU run, host memory for a CPU one.
struct ProblemBuffers {
  const void* q = nullptr;
  const void* kv = nullptr;
  void* out = nullptr;
  float* lse = nullptr;
  const int* qo_indptr = nullptr;
  const int* kv_indptr = nullptr;
  const int* kv_indices = nullptr;
  const int* kv_last_page_lens = nullptr;
  const void* cos_sin_cache = nullptr;
  const std::int64_t* positions = nullptr;
  void* k_pe_out = nullptr;
};

// A host problem uploaded to a device: every tensor, outputs poisoned with NaN bytes (so an
// element the kernel never writes shows up as non-finite), and the call that decodes it (no
// workspace yet: see ensure_workspace in tools/bench/timing.hpp or run_on_device).
struct DeviceProblem {
  runtime::DeviceBuffer q, kv, qo, kvp, kvi, last, cos_sin, positions, k_pe, out, lse, workspace;
  DecodeArgs args;  // pointing at the buffers above
};
DeviceProblem upload(Engine& engine, const reference::DecodeProblem& problem, int num_kv_splits = 0);

// The call that decodes `problem` with its tensors at `buffers` (num_kv_splits: 0 = auto).
DecodeArgs decode_args(const reference::DecodeProblem& problem, const ProblemBuffers& buffers, int num_kv_splits);
// The first `count` elements of a buffer of type t, as floats.
std::vector<float> load_elements(const void* data, DType t, std::size_t count);

struct DeviceRun {
  std::vector<float> out;   // [total_q, heads, v_dim], converted from out_dtype
  std::vector<float> lse;   // when the spec asks for LSE
  std::vector<float> k_pe_out;  // fused RoPE: [total_q, rope_dim], converted from the kv dtype
  DecodePlan plan;
};

// Uploads, runs (num_kv_splits: 0 = auto), downloads. Output and LSE are poisoned (NaN bytes)
// before the run, so an element the kernel never writes shows up as non-finite.
DeviceRun run_on_device(Engine& engine, const reference::DecodeProblem& problem, int num_kv_splits,
                        const std::optional<TileConfig>& tile = std::nullopt);

// Persistent decode's device buffers for a plan: the six metadata buffers (sections of one
// allocation, metadata_in) and the partials workspace. Unwritten metadata is poisoned (0x7f bytes).
struct PersistentBuffers {
  runtime::DeviceBuffer metadata_buffer;
  runtime::DeviceBuffer workspace;
  PersistentMetadata metadata;
};
PersistentBuffers allocate_persistent(Engine& engine, const PersistentPlan& plan);

// The same for the persistent path: metadata fill + persistent decode on the default stream.
// run.plan carries the persistent plan's spec and tile (num_splits 1). decodes > 1: that many
// decodes on the one fill (as a step's layers share it), the partial workspace and the outputs
// filled with 0x7f bytes (NaN) before each after the first; the outputs are the last decode's.
DeviceRun run_persistent_on_device(Engine& engine, const reference::DecodeProblem& problem,
                                   const std::optional<TileConfig>& tile = std::nullopt, int decodes = 1);
// The outputs of a run on `d` as floats (out, LSE when the spec asks, k_pe_out with fused RoPE).
DeviceRun read_outputs(Engine& engine, const DeviceProblem& d, const reference::DecodeProblem& problem);

// Tolerances for comparing a device result with the reference.
struct Tolerance {
  double atol;
  double rtol;
};
// By output dtype, plus, for the mma family, the rounding of P to the operand type (mma_dtype)
// before P V: |sum (p~ - p) v| / l <= u * max|v| (u = 2^-9 for bf16, 2^-12 for fp16).
Tolerance tolerance_for(const Spec& spec, KernelFamily family = KernelFamily::portable, double max_abs_v = 0);
// Fused RoPE's k_pe_out against the reference's, within one step of the cache dtype.
reference::Comparison compare_k_pe(const reference::DecodeResult& want, const DeviceRun& run, const Spec& spec);
// Largest finite |value| among the V columns of the KV rows a problem uses.
double max_abs_value(const reference::DecodeProblem& problem);

}  // namespace mlajit::tools
