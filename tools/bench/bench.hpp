// `mlajit bench`: the BENCH.md decode suite (S1-S8) with roofline probes, L2 flushing,
// GPU-event timing, error against the float32 reference, and the JIT costs of BENCH.md.
#pragma once

#include <string>
#include <vector>

#include "tools/bench/l2_flush.hpp"

namespace CLI {
class App;
}

namespace mlajit::bench {

struct BenchOptions {
  std::vector<std::string> shapes;  // ids to run (default: all)
  std::string shapes_file;          // JSON array of shape objects instead of the suite
  int device = 0;
  int runs = 30;
  int warmup = 5;
  tools::L2Flush flush = tools::L2Flush::read;
  bool json = false;
  std::string out_dir = "bench/results";
  bool roofline = true;
  std::string family;  // force a kernel family ("portable" | "mma"); empty = the model's choice
  int tokens_per_tile = 0;  // tile overrides (0 = the model's choice)
  int stages = 0;
  int heads_per_cta = 0;
  int splits = 0;           // force the split count (0 = the model's choice)
  std::string tag;          // appended to the results file name
  // Shapes also timed on the persistent path (metadata kernel + persistent stage 1 + reduce, one
  // extra row "<id>p" each): the load-balance and split-K shapes of the issue by default.
  std::vector<std::string> persistent_shapes = {"S3", "S5"};
  // How the persistent rows time the metadata fill: "each" (every timed call fills, row <id>p),
  // "step" (one fill a decode step, shared by its step_layers layers, as FlashMLA's anchors reuse
  // their scheduler metadata: row <id>ps = the decode on a fill made before + the fill's own
  // median / step_layers), or "both".
  std::string persistent_metadata = "both";
  int step_layers = 61;  // DeepSeek-V3/R1's attention layers
};

// Registers the `bench` subcommand; returns it so main can test whether it ran.
CLI::App* add_bench_command(CLI::App& app, BenchOptions& options);
int run_bench(const BenchOptions& options);

}  // namespace mlajit::bench
