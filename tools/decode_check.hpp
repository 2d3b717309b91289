// Runs one decode on a device for a host problem and compares it with the float32 reference.
// Shared by `mlajit verify`, the gpu test tier and (later) the benchmark.
#pragma once

#include <vector>

#include "reference/decode_reference.hpp"
#include "runtime/engine.hpp"

namespace mlajit::tools {

struct DeviceRun {
  std::vector<float> out;   // [total_q, heads, v_dim], converted from out_dtype
  std::vector<float> lse;   // when the spec asks for LSE
  DecodePlan plan;
};

// Uploads, runs (num_kv_splits: 0 = auto), downloads. Output and LSE are poisoned (NaN bytes)
// before the run, so an element the kernel never writes shows up as non-finite.
DeviceRun run_on_device(Engine& engine, const reference::DecodeProblem& problem, int num_kv_splits,
                        const std::optional<TileConfig>& tile = std::nullopt);

// Tolerances for comparing a device result with the reference.
struct Tolerance {
  double atol;
  double rtol;
};
// By output dtype, plus, for the mma family, the rounding of P to the operand type before P V:
// |sum (p~ - p) v| / l <= u * max|v| (u = 2^-9 for bf16, 2^-12 for fp16).
Tolerance tolerance_for(const Spec& spec, KernelFamily family = KernelFamily::portable, double max_abs_v = 0);
// Largest finite |value| among the V columns of the KV rows a problem uses.
double max_abs_value(const reference::DecodeProblem& problem);

}  // namespace mlajit::tools
