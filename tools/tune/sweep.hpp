// Running a sweep: compile every candidate (skip spills), then per shape check each candidate
// against the float32 reference and time it, on a GPU or on the `--simulate` stand-in.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "tools/bench/l2_flush.hpp"
#include "tools/tune/plan.hpp"
#include "tuning/database.hpp"

namespace mlajit::tune {

// What the database's metadata says about where it was measured.
struct Facts {
  Target target;
  std::string card, driver, compiler;
  int multiprocessors = 0;
  bool measured = false;  // a GPU, not the simulation
};

struct CandidateResult {
  Candidate candidate;
  // ok | pruned (timed roughly: over twice the best so far) | spills | compile failed |
  // wrong (mismatch against the reference) | error | skipped (budget)
  std::string status;
  double time_us = 0;
  double max_abs_error = 0;
  std::string detail;
};

struct ShapeResult {
  TuneShape shape;
  std::vector<CandidateResult> results;
};

// The database entry of a shape: best = the fastest ok candidate, model = the model's candidate
// (time 0 when it was not ok), measurements = every ok or pruned time. nullopt when nothing ok.
std::optional<tuning::Entry> entry_from(const ShapeResult& result, const Facts& facts, const std::string& date);

double seconds_since(std::chrono::steady_clock::time_point t);

// Compile outcome of a kernel (spec + kernel shape), keyed by kernel_base_name.
struct CompileStatus {
  std::string status;  // ok | spills | compile failed
  std::string detail;
};
using CompileStatuses = std::map<std::string, CompileStatus>;

// Compiles every distinct kernel of the candidates into the disk cache on `jobs` threads and
// reports spills (ptxas / driver resources) and failures. Progress on stderr.
CompileStatuses precompile(const std::vector<TuneShape>& shapes, const std::vector<std::vector<Candidate>>& candidates,
                           const Target& target, int jobs, const std::string& label);

class Measurer {
 public:
  virtual ~Measurer() = default;
  virtual const Facts& facts() const = 0;
  // Prepares shapes[index] (problem, reference, upload); may start on shapes[index + 1].
  virtual void begin_shape(const std::vector<TuneShape>& shapes, std::size_t index) = 0;
  // Checks and times one candidate of the current shape; `prune_above_us` > 0 stops after a
  // rough timing when the candidate is slower than that.
  virtual CandidateResult measure(const Candidate& candidate, double prune_above_us) = 0;
};

struct SweepSettings {
  int device = 0;
  int runs = 20;
  int warmup = 3;
  tools::L2Flush flush = tools::L2Flush::read;
  double budget_s = 0;  // 0 = no limit
  std::string label;    // progress prefix ("gpu 1")
  std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();
};

// Opens settings.device (CUDA).
std::unique_ptr<Measurer> gpu_measurer(const SweepSettings& settings);
std::unique_ptr<Measurer> simulated_measurer(const Target& target, int multiprocessors);

// Measures every shape's candidates in order, within the budget (candidates compile statuses
// rule out are recorded, not run). Progress with ETA on stderr.
std::vector<ShapeResult> run_sweep(Measurer& measurer, const std::vector<TuneShape>& shapes,
                                   const std::vector<std::vector<Candidate>>& candidates,
                                   const CompileStatuses& compiled, const SweepSettings& settings);

}  // namespace mlajit::tune
