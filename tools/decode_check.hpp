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

// Tolerances for comparing a device result with the reference, by output dtype.
struct Tolerance {
  double atol;
  double rtol;
};
Tolerance tolerance_for(const Spec& spec);

}  // namespace mlajit::tools
