// Persistent decode on the host: its plan (tile, workers, buffer sizes) from the shape of a call
// and the target alone, the checks of its buffers, and its kernel parameter blocks. Needs no
// device (the CPU tests run it with a named target); Engine::persistent_* launch from it.
#pragma once

#include <cstddef>
#include <optional>

#include "runtime/engine.hpp"
#include "runtime/persistent_layout.hpp"
#include "templates/decode/params.cuh"

namespace mlajit {

// What a persistent decode runs and the sizes of what the caller allocates. Depends only on the
// shape fields of the call (shape_spec) and the target, never on lengths or device data, so the
// sizes are stable across CUDA-graph replays with new lengths.
struct PersistentPlan {
  Spec spec;                // op = persistent_decode
  TileConfig tile;          // the model's tile for (spec, target) unless forced; num_splits unused (1)
  ScheduleShape shape;      // rows_per_item = tile.heads_per_cta; workers = SMs x stage-1 CTAs per SM
  PersistentLayout layout;  // element counts of the six metadata buffers
  std::size_t workspace_bytes = 0;  // fp32 partials: max_partials * rows_per_item * (v_dim + 1) floats
};

// Throws invalid_argument naming the argument. `tile` forces a kernel shape (tests, benchmarks):
// the same one must be given to every call of one metadata fill / decode pair.
PersistentPlan plan_persistent(const DecodeArgs& args, const Target& target, int multiprocessors,
                               const std::optional<TileConfig>& tile = std::nullopt);

// The metadata fill's checks: the three indptr arrays it reads, and the six buffers (each non-null
// unless it has 0 elements, 4-byte aligned).
void check_persistent_fill(const DecodeArgs& args, const PersistentPlan& plan, const PersistentMetadata& metadata);
// The persistent decode's checks: every decode argument (decode_spec), the six buffers, and the
// workspace (plan.workspace_bytes, 16-byte aligned).
void check_persistent_decode(const DecodeArgs& args, const PersistentPlan& plan, const PersistentMetadata& metadata);

// Parameter blocks of the three kernels.
MljScheduleParams persistent_schedule_params(const DecodeArgs& args, const PersistentPlan& plan,
                                             const PersistentMetadata& metadata);
// Stage 1 and the reduce: the decode's parameters with the partials in args.workspace.
MljDecodeParams persistent_decode_params(const DecodeArgs& args, const PersistentPlan& plan);

}  // namespace mlajit
