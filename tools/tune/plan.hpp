// What `mlajit tune` sweeps: shapes, kernel-shape and split-count candidates, shards. Pure (no
// GPU), so the plan is tested on any machine and `--simulate` can run it end to end.
#pragma once

#include <cstddef>
#include <string>
#include <utility>
#include <vector>

#include "codegen/spec.hpp"
#include "tools/suite.hpp"
#include "tuning/choose.hpp"

namespace mlajit::tune {

struct TuneShape {
  tools::Shape shape;
  Spec spec;
  tuning::DecodeShape decode;  // batch, mean and max context, multiprocessors
};
TuneShape make_tune_shape(const tools::Shape& shape, int multiprocessors);

// BENCH.md's suite, then (unless quick) every default-catalogue spec at batch 64 x 4096 tokens.
std::vector<tools::Shape> default_shapes(bool quick);
// Keeps the first shape of each database bucket (one entry per bucket); the ids of the others go
// to `dropped`.
std::vector<TuneShape> distinct_buckets(const std::vector<TuneShape>& shapes, std::vector<std::string>* dropped);

// Kernel shapes worth timing, each valid on the target: the mma family (where it serves the
// spec) with 32/64-token tiles x 2..4 stages that fit shared memory, and the portable kernel's
// balanced tile with 32/64-token tiles (quick: the portable one only where mma cannot serve).
std::vector<TileConfig> tile_candidates(const Spec& spec, const Target& target, bool quick);

// Split counts worth timing for one kernel shape: 1, the model's best and its neighbours, its
// next best scores, and what it picks over a spread of its parameters (data for the fit).
std::vector<int> split_candidates(const Spec& spec, const Target& target, const TileConfig& tile,
                                  const tuning::DecodeShape& shape, bool quick);

struct Candidate {
  TileConfig tile;  // num_splits set
  bool model_choice = false;
};
// The model's own choice (no database) first, so that a budget cut still times it, then every
// kernel shape x split count.
std::vector<Candidate> candidates_for(const TuneShape& shape, const Target& target, bool quick);

// Shapes of shard `shard` of `shards` (round robin).
std::vector<std::size_t> shard_indices(std::size_t count, int shard, int shards);
// "i/n" with 0 <= i < n; invalid_argument naming --shard otherwise.
std::pair<int, int> parse_shard(const std::string& text);
// "0,1,3": distinct ordinals >= 0; invalid_argument naming --devices otherwise.
std::vector<int> parse_devices(const std::string& text);

// "[12/240] 35 s, ETA 61 s  <what>" (ETA from the mean time per item so far).
std::string progress_line(std::size_t done, std::size_t total, double elapsed_s, const std::string& what);

// The stand-in device of `--simulate`: the cost model under fixed "true" parameters that differ
// from the defaults, priced at 3 TB/s, with a fixed speed factor per kernel shape. Its numbers
// mean nothing about any GPU; they exist so sweep, shards, merge and fit run anywhere.
double simulated_time_us(const Spec& spec, const Target& target, const TileConfig& tile,
                         const tuning::DecodeShape& shape);

}  // namespace mlajit::tune
