// Fits the split model's parameters to a database's sweeps: the parameters under which the
// model's split count, for each measured kernel shape, costs least against the measured best.
// Pure; `mlajit tune` runs it after every sweep and stores the result in the database.
#pragma once

#include "tuning/database.hpp"

namespace mlajit::tuning {

struct FitResult {
  ModelParams params;
  // Geometric-mean slowdown of the model's split count against the fastest measured split count
  // of the same kernel shape, over all (entry, shape) samples: 1.0 = always the best.
  double start_slowdown = 1.0;
  double fitted_slowdown = 1.0;
  int samples = 0;  // (entry, kernel shape) pairs with at least two split counts measured
};

// The slowdown `params` gives on `db` (see FitResult). A split count the sweep did not time
// takes the time of the nearest one it did (ties: the smaller).
double model_slowdown(const Database& db, const Target& target, const ModelParams& params, int* samples = nullptr);

// Grid search over split_overhead_tokens, tail_wave_floor and combine_launch_tokens around
// `start` (combine_traffic_factor and max_splits are kept); `start` wins ties.
FitResult fit_model(const Database& db, const Target& target, const ModelParams& start);

}  // namespace mlajit::tuning
