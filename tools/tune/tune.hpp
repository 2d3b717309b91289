// `mlajit tune`: sweep tile and split candidates on the GPU(s), keep the measured best per shape
// bucket in the tuning database (tuning/db/<arch>.json), refit the split model; `--explain` says
// what the engine would choose for a call and why (no GPU needed).
#pragma once

#include <string>
#include <vector>

#include "tools/bench/l2_flush.hpp"
#include "tools/spec_flags.hpp"

namespace CLI {
class App;
}

namespace mlajit::tune {

struct TuneOptions {
  // --explain: a spec (the shared spec flags) and a call shape.
  bool explain = false;
  tools::SpecFlags spec;
  int batch = 1;
  double context = 4096;
  double max_context = 0;
  std::string db_file;  // explain against this file instead of the shipped + user databases

  // The sweep.
  std::vector<std::string> shape_ids;  // suite ids (default: the suite + the default catalogue)
  std::string shapes_file;
  bool quick = false;  // the suite only, fewer candidates and runs
  int device = 0;
  std::string devices;  // "0,1": one child process per GPU, shapes sharded
  std::string shard;    // "i/n" (children)
  std::string result;   // children: write the shard's sweep here instead of the database
  int runs = 0;         // timed runs per candidate (0: 20, --quick 10)
  int warmup = 0;       // untimed runs first (0: 3, --quick 2)
  tools::L2Flush flush = tools::L2Flush::read;
  double budget_s = 0;  // stop starting candidates after this many seconds (0 = no limit)
  int jobs = 0;         // parallel compiles (0 = all cores)
  std::string out;      // database to merge into (default tuning/db/<database_name(arch)>.json)
  bool simulate = false;         // the model-based stand-in instead of a GPU (writes measured: false)
  bool precompile_only = false;  // compile the candidates, report spills, time nothing

  // Shared.
  std::string arch;         // default: the current device (explain: else sm_90a)
  int multiprocessors = 0;  // SMs / CUs when there is no device (default by arch)
  bool json = false;
};

CLI::App* add_tune_command(CLI::App& app, TuneOptions& options);
int run_tune(const TuneOptions& options);

// The command line of shard `shard` of `shards` on `device`, writing its sweep to `result`
// (argv after the program name).
std::vector<std::string> child_arguments(const TuneOptions& options, int device, int shard, int shards,
                                         const std::string& result, double budget_left_s);

}  // namespace mlajit::tune
