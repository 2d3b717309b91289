// The kernel parameter blocks and launch shape of a planned decode call: what Engine::decode
// launches, built without a device (tests run the same blocks through the kernels on the CPU).
#pragma once

#include <cstddef>

#include "runtime/engine.hpp"
#include "templates/decode/params.cuh"

namespace mlajit {

// Bytes of split-K partials (fp32 outputs, then LSEs) in the workspace; 0 without split-K.
std::size_t decode_workspace_bytes(const Spec& spec, int total_q, int num_splits);
// Stage 1: x = groups of tile.heads_per_cta query rows, y = request, z = KV split.
runtime::Dim3 decode_stage1_grid(const Spec& spec, const TileConfig& tile, int batch);
// Stage 1's parameters; partials go to args.workspace when plan.needs_combine.
MljDecodeParams decode_params(const DecodeArgs& args, const DecodePlan& plan);
// Stage 2's parameters (when plan.needs_combine): `ways` warps merge a row (Source::combine_ways).
MljCombineParams combine_params(const DecodeArgs& args, const DecodePlan& plan, int ways);

}  // namespace mlajit
