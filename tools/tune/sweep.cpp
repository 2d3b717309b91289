// Sweep execution: precompile, check against the reference, time.
#include "tools/tune/sweep.hpp"

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <future>
#include <mutex>
#include <thread>
#include <unistd.h>

#include <fmt/format.h>

#include "codegen/error.hpp"
#include "reference/decode_reference.hpp"
#include "runtime/engine.hpp"
#include "runtime/jit.hpp"
#include "tools/bench/timing.hpp"
#include "tools/decode_check.hpp"
#include "tuning/select.hpp"

namespace mlajit::tune {

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

namespace {

// One progress line on stderr: rewritten in place on a terminal, one line each otherwise.
void progress(const std::string& label, const std::string& line, bool last) {
  // In place only on a terminal and outside shards (children of --devices share the terminal).
  static const bool tty = isatty(STDERR_FILENO) != 0;
  const bool in_place = tty && label.empty();
  const std::string prefix = label.empty() ? "tune: " : "tune [" + label + "]: ";
  std::fprintf(stderr, "%s%s%s%s", in_place ? "\r\033[K" : "", prefix.c_str(), line.c_str(), in_place && !last ? "" : "\n");
  std::fflush(stderr);
}

std::string kernel_name(const Spec& spec, const TileConfig& tile) { return kernel_base_name(spec, tile); }

// ---- the GPU ------------------------------------------------------------------------------
class GpuMeasurer final : public Measurer {
 public:
  explicit GpuMeasurer(const SweepSettings& settings)
      : settings_(settings), engine_(settings.device, Backend::cuda),
        timer_(engine_.device(), settings.flush) {
    const runtime::DeviceInfo& info = engine_.device_info();
    facts_.target = info.target;
    facts_.card = info.name;
    facts_.driver = info.driver_version;
    const runtime::CompilerInfo compiler = runtime::backend(Backend::cuda).compiler_info();
    facts_.compiler = compiler.name + " " + compiler.version;
    facts_.multiprocessors = info.multiprocessors;
    facts_.measured = true;
  }

  const Facts& facts() const override { return facts_; }

  void begin_shape(const std::vector<TuneShape>& shapes, std::size_t index) override {
    // The host work of the next shapes runs on other cores while this one is timed: random fill
    // (~30 s for an fp8 cache: float_to_fp8_e4m3 scans its table) and the float32 reference
    // (seconds for 512 rows). At most 12 problems (<= 0.6 GB each) are in memory.
    const std::size_t ahead = std::clamp<std::size_t>(std::thread::hardware_concurrency(), 3, 14) - 2;
    for (std::size_t i = index; i < std::min(shapes.size(), index + ahead); ++i) {
      if (!pending_.count(i)) pending_[i] = std::async(std::launch::async, prepare, shapes[i]);
    }
    current_ = pending_[index].get();
    pending_.erase(index);
    device_ = tools::upload(engine_, *current_.problem);
  }

  CandidateResult measure(const Candidate& c, double prune_above_us) override {
    CandidateResult r{c, "ok", 0, 0, ""};
    const std::optional<TileConfig> tile = c.tile;
    const Spec& spec = current_.problem->spec;
    runtime::Device& device = engine_.device();
    try {
      tools::ensure_workspace(engine_, device_, tile);
      device.fill_bytes(device_.out.get(), 0xff, device_.out.size());  // NaN where nothing is written
      engine_.decode(device_.args, tile);
      device.synchronize();
      const long long rows = (long long)current_.problem->qo_indptr[k_checked_requests] * spec.heads;
      const std::vector<float> got = tools::download_output(engine_, device_, spec, rows);
      const tools::Tolerance tol = tools::tolerance_for(spec, c.tile.family, current_.max_abs_v);
      const reference::Comparison cmp = reference::compare(current_.want, got, nullptr, tol.atol, tol.rtol, rows);
      r.max_abs_error = cmp.max_abs_error;
      if (cmp.mismatches > 0) {
        r.status = "wrong";
        r.detail = fmt::format("{} mismatches ({} non-finite), max |err| {:.3g}", cmp.mismatches,
                               cmp.non_finite_outputs, cmp.max_abs_error);
        return r;
      }
      const auto call = [&] { engine_.decode(device_.args, tile); };
      if (prune_above_us > 0) {
        r.time_us = timer_.median_ms(call, 1, 3) * 1e3;
        if (r.time_us > prune_above_us) {
          r.status = "pruned";
          return r;
        }
      }
      r.time_us = timer_.median_ms(call, settings_.warmup, settings_.runs) * 1e3;
    } catch (const Error& e) {
      r.status = "error";
      r.detail = e.what();
      device.synchronize();  // throws on a sticky device fault, which ends the sweep
    }
    return r;
  }

 private:
  static constexpr int k_checked_requests = 1;  // as many rows as one request has; the reference is slow

  struct Prepared {
    std::shared_ptr<const reference::DecodeProblem> problem;
    reference::DecodeResult want;
    double max_abs_v = 0;
  };

  static Prepared prepare(const TuneShape& shape) {
    Prepared p;
    auto problem = std::make_shared<reference::DecodeProblem>(tools::make_problem(shape.shape));
    p.want = reference::decode(*problem, k_checked_requests);
    p.max_abs_v = tools::max_abs_value(*problem);
    p.problem = std::move(problem);
    return p;
  }

  SweepSettings settings_;
  Engine engine_;
  tools::DecodeTimer timer_;
  Facts facts_;
  Prepared current_;
  std::map<std::size_t, std::future<Prepared>> pending_;
  tools::DeviceProblem device_;
};

// ---- the stand-in -------------------------------------------------------------------------
class SimulatedMeasurer final : public Measurer {
 public:
  SimulatedMeasurer(const Target& target, int multiprocessors) {
    facts_.target = target;
    facts_.card = "simulated " + target.arch;
    facts_.compiler = "none";
    facts_.multiprocessors = multiprocessors;
    facts_.measured = false;
  }
  const Facts& facts() const override { return facts_; }
  void begin_shape(const std::vector<TuneShape>& shapes, std::size_t index) override { current_ = shapes[index]; }
  CandidateResult measure(const Candidate& c, double prune_above_us) override {
    const TuneShape& s = current_;
    CandidateResult r{c, "ok", simulated_time_us(s.spec, facts_.target, c.tile, s.decode), 0, ""};
    if (prune_above_us > 0 && r.time_us > prune_above_us) r.status = "pruned";
    return r;
  }

 private:
  Facts facts_;
  TuneShape current_;
};

}  // namespace

std::unique_ptr<Measurer> gpu_measurer(const SweepSettings& settings) { return std::make_unique<GpuMeasurer>(settings); }

std::unique_ptr<Measurer> simulated_measurer(const Target& target, int multiprocessors) {
  return std::make_unique<SimulatedMeasurer>(target, multiprocessors);
}

std::optional<tuning::Entry> entry_from(const ShapeResult& result, const Facts& facts, const std::string& date) {
  const CandidateResult* best = nullptr;
  const CandidateResult* model = nullptr;
  tuning::Entry e;
  for (const CandidateResult& r : result.results) {
    if (r.candidate.model_choice) model = &r;
    if (r.status == "ok" || r.status == "pruned") e.measurements.push_back({r.candidate.tile, r.time_us});
    if (r.status == "ok" && (best == nullptr || r.time_us < best->time_us)) best = &r;
  }
  if (best == nullptr) return std::nullopt;
  e.spec = result.shape.spec;
  e.shape_id = result.shape.shape.id;
  e.shape = result.shape.decode;
  e.shape.ctas_per_sm = 1;
  e.best = {best->candidate.tile, best->time_us, date, facts.card, 0};
  e.max_abs_error = best->max_abs_error;
  if (model != nullptr) {
    e.model = {model->candidate.tile, model->status == "ok" ? model->time_us : 0.0, date, facts.card, 0};
  }
  e.bucket = tuning::bucket_of(e.spec, e.shape);
  return e;
}

CompileStatuses precompile(const std::vector<TuneShape>& shapes, const std::vector<std::vector<Candidate>>& candidates,
                           const Target& target, int jobs, const std::string& label) {
  struct Work {
    Spec spec;
    TileConfig kernel;
    std::string name;
  };
  std::vector<Work> work;
  for (std::size_t i = 0; i < shapes.size(); ++i) {
    for (const Candidate& c : candidates[i]) {
      TileConfig kernel = c.tile;
      kernel.num_splits = 0;
      const std::string name = kernel_name(shapes[i].spec, kernel);
      if (std::none_of(work.begin(), work.end(), [&](const Work& w) { return w.name == name; })) {
        work.push_back({shapes[i].spec, kernel, name});
      }
    }
  }
  CompileStatuses statuses;
  std::mutex mutex;
  std::atomic<std::size_t> next{0};
  std::size_t done = 0;
  const auto start = std::chrono::steady_clock::now();
  auto worker = [&] {
    for (std::size_t i = next++; i < work.size(); i = next++) {
      CompileStatus status{"ok", ""};
      try {
        const runtime::JitResult r = runtime::jit_compile(work[i].spec, work[i].kernel, target, runtime::default_store());
        for (const auto& [entry, res] : r.code.resources) {
          if (res.spill_stores > 0 || res.spill_loads > 0) {
            status = {"spills", fmt::format("{}: {} B stored / {} B loaded", entry, res.spill_stores, res.spill_loads)};
          }
        }
      } catch (const std::exception& e) {
        status = {"compile failed", e.what()};
      }
      std::lock_guard lock(mutex);
      statuses[work[i].name] = status;
      ++done;
      progress(label, progress_line(done, work.size(), seconds_since(start),
                                    fmt::format("compile {} {}", work[i].name, status.status)),
               done == work.size());
    }
  };
  std::vector<std::thread> threads;
  for (int j = 0; j < std::min<int>(std::max(1, jobs), int(work.size())); ++j) threads.emplace_back(worker);
  for (std::thread& t : threads) t.join();
  return statuses;
}

std::vector<ShapeResult> run_sweep(Measurer& measurer, const std::vector<TuneShape>& shapes,
                                   const std::vector<std::vector<Candidate>>& candidates,
                                   const CompileStatuses& compiled, const SweepSettings& settings) {
  std::size_t total = 0, done = 0;
  for (const auto& c : candidates) total += c.size();
  const auto start = std::chrono::steady_clock::now();
  const auto over_budget = [&] { return settings.budget_s > 0 && seconds_since(settings.start) > settings.budget_s; };
  std::string fatal;
  std::vector<ShapeResult> results;
  for (std::size_t i = 0; i < shapes.size(); ++i) {
    ShapeResult shape{shapes[i], {}};
    bool ready = false;
    std::string unprepared;  // why this shape could not be set up (its candidates report it)
    if (fatal.empty() && !over_budget()) {
      try {
        measurer.begin_shape(shapes, i);
        ready = true;
      } catch (const std::exception& e) {
        unprepared = e.what();
        std::fprintf(stderr, "tune: %s: %s\n", shapes[i].shape.id.c_str(), unprepared.c_str());
      }
    }
    double best = 0;
    for (const Candidate& c : candidates[i]) {
      TileConfig kernel = c.tile;
      kernel.num_splits = 0;
      const auto status = compiled.find(kernel_name(shapes[i].spec, kernel));
      CandidateResult r{c, "", 0, 0, ""};
      if (status != compiled.end() && status->second.status != "ok") {
        r.status = status->second.status;
        r.detail = status->second.detail;
      } else if (!unprepared.empty()) {
        r.status = "error";
        r.detail = unprepared;
      } else if (!fatal.empty() || !ready) {
        r.status = fatal.empty() ? "skipped (budget)" : "skipped (device error)";
      } else if (over_budget()) {
        r.status = "skipped (budget)";
      } else {
        try {
          r = measurer.measure(c, best > 0 ? 2 * best : 0);
        } catch (const std::exception& e) {
          fatal = e.what();
          r.status = "error";
          r.detail = fatal;
        }
        if (r.status == "ok") best = best > 0 ? std::min(best, r.time_us) : r.time_us;
      }
      ++done;
      progress(settings.label,
               progress_line(done, total, seconds_since(start),
                             fmt::format("{} {}{}: {} {:.1f} us (best {:.1f})", shapes[i].shape.id,
                                         tuning::tile_summary(c.tile), c.model_choice ? " (model)" : "", r.status,
                                         r.time_us, best)),
               done == total);
      if (r.status == "wrong" || r.status == "error") {
        std::fprintf(stderr, "\n  %s %s: %s\n", shapes[i].shape.id.c_str(), tuning::tile_summary(c.tile).c_str(),
                     r.detail.c_str());
      }
      shape.results.push_back(std::move(r));
    }
    results.push_back(std::move(shape));
  }
  if (!fatal.empty()) std::fprintf(stderr, "tune: stopped after a device error: %s\n", fatal.c_str());
  return results;
}

}  // namespace mlajit::tune
