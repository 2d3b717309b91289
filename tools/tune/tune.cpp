// `mlajit tune`: command line, shards, database merge and fit, --explain.
#include "tools/tune/tune.hpp"

#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <thread>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cache/file_io.hpp"
#include "codegen/error.hpp"
#include "codegen/generator.hpp"
#include "runtime/backend.hpp"
#include "tools/bench/timing.hpp"
#include "tools/tune/sweep.hpp"
#include "tuning/fit.hpp"
#include "tuning/registry.hpp"
#include "tuning/select.hpp"

extern char** environ;

namespace mlajit::tune {

namespace fs = std::filesystem;

namespace {

int runs_of(const TuneOptions& o) { return o.runs > 0 ? o.runs : (o.quick ? 10 : 20); }
int warmup_of(const TuneOptions& o) { return o.warmup > 0 ? o.warmup : (o.quick ? 2 : 3); }
int jobs_of(const TuneOptions& o) { return o.jobs > 0 ? o.jobs : int(std::max(1u, std::thread::hardware_concurrency())); }

// The target and SM count without opening a GPU when --arch names one; else the current device.
std::pair<Target, int> target_and_sms(const TuneOptions& o, bool fall_back_to_sm90a) {
  if (o.arch.empty()) {
    runtime::Backend& cuda = runtime::backend(Backend::cuda);
    if (cuda.device_count() > 0) {
      const runtime::DeviceInfo info = cuda.open_device(o.device)->info();
      return {info.target, o.multiprocessors > 0 ? o.multiprocessors : info.multiprocessors};
    }
    if (!fall_back_to_sm90a) (void)tools::resolve_target("");  // throws: says how to name one
  }
  const Target target = parse_target(o.arch.empty() ? "sm_90a" : o.arch, "--arch");
  return {target, o.multiprocessors > 0 ? o.multiprocessors : tuning::default_multiprocessors(target)};
}

// ---- --explain ----------------------------------------------------------------------------
int run_explain(const TuneOptions& o) {
  const Spec spec = o.spec.spec();
  const auto [target, sms] = target_and_sms(o, true);
  if (o.batch < 1) throw_invalid("--batch", "must be >= 1", std::to_string(o.batch));
  if (!(o.context >= 0)) throw_invalid("--context", "must be >= 0", fmt::format("{}", o.context));
  tuning::DecodeShape shape;
  shape.batch = o.batch;
  shape.mean_kv_tokens = o.context;
  shape.max_kv_tokens = o.max_context;
  shape.multiprocessors = sms;
  const tuning::LoadedDatabase loaded =
      o.db_file.empty() ? tuning::loaded_database(target.arch) : tuning::load_database_file(o.db_file, target.arch);
  const tuning::Database* db = loaded.db ? &*loaded.db : nullptr;
  const tuning::Explanation e = tuning::explain(spec, target, shape, db, loaded.description);
  // Tile overrides (--heads-per-cta, --tokens-per-tile, --warps) force the kernel shape, as a
  // caller's TileConfig does; tuning then only picks the splits.
  std::optional<TileConfig> forced;
  if (o.spec.heads_per_cta > 0 || o.spec.tokens_per_tile > 0 || o.spec.warps > 0) {
    forced = o.spec.tile(spec, target);
    forced->num_splits = tuning::select_splits(spec, target, *forced, shape, db);
  }
  if (o.json) {
    nlohmann::json j = tuning::to_json(e);
    if (forced) j["forced_tile"] = to_json(*forced);
    std::cout << j.dump(2) << "\n";
  } else {
    std::cout << tuning::format_explanation(e);
    if (forced) std::cout << fmt::format("forced tile: {} (splits from the model)\n", tuning::tile_summary(*forced));
  }
  return 0;
}

// ---- the sweep of one process (a shard, or everything) ------------------------------------
std::vector<TuneShape> shapes_to_sweep(const TuneOptions& o, int multiprocessors) {
  const std::vector<tools::Shape> listed = o.shape_ids.empty() && o.shapes_file.empty()
                                               ? default_shapes(o.quick)
                                               : tools::select_shapes(o.shape_ids, o.shapes_file);
  std::vector<TuneShape> shapes;
  for (const tools::Shape& s : listed) shapes.push_back(make_tune_shape(s, multiprocessors));
  std::vector<std::string> dropped;
  shapes = distinct_buckets(shapes, &dropped);
  if (!dropped.empty()) {
    std::string ids;
    for (const std::string& id : dropped) ids += (ids.empty() ? "" : ", ") + id;
    std::fprintf(stderr, "tune: skipping %s: same database bucket as an earlier shape\n", ids.c_str());
  }
  return shapes;
}

tuning::Database database_of(const std::vector<ShapeResult>& results, const Facts& facts, const TuneOptions& o) {
  tuning::Database db;
  const std::string date = tools::today();
  tuning::Metadata& m = db.meta;
  m.arch = facts.target.arch;
  m.card = facts.card;
  m.driver = facts.driver;
  m.compiler = facts.compiler;
  m.mlajit_version = MLAJIT_VERSION;
  m.generator_version = kGeneratorVersion;
  m.date = date;
  m.measured = facts.measured;
  m.model = tuning::default_params(facts.target);
  m.note = fmt::format("{}mlajit tune{}: median of {} runs after {} warm-up, L2 {}",
                       facts.measured ? "" : "SIMULATED, not a measurement: ", o.quick ? " --quick" : "", runs_of(o),
                       warmup_of(o), fmt::format("flush: {}", flush_name(o.flush)));
  for (const ShapeResult& r : results) {
    if (std::optional<tuning::Entry> e = entry_from(r, facts, date)) db.entries.push_back(std::move(*e));
  }
  tuning::sort_entries(db);
  return db;
}

void write_atomically(const fs::path& path, const std::string& text) {
  if (path.has_parent_path()) fs::create_directories(path.parent_path());
  const fs::path tmp = path.string() + "." + cache::random_hex() + ".tmp";
  cache::write_file_synced(tmp, text);
  fs::rename(tmp, path);
}

int run_precompile_only(const TuneOptions& o) {
  const auto [target, sms] = target_and_sms(o, false);
  const std::vector<TuneShape> shapes = shapes_to_sweep(o, sms);
  std::vector<std::vector<Candidate>> candidates;
  for (const TuneShape& s : shapes) candidates.push_back(candidates_for(s, target, o.quick));
  const CompileStatuses statuses = precompile(shapes, candidates, target, jobs_of(o), "");
  int bad = 0;
  nlohmann::json j = nlohmann::json::object();
  for (const auto& [name, status] : statuses) {
    j[name] = {{"status", status.status}, {"detail", status.detail}};
    if (status.status == "ok") continue;
    ++bad;
    if (!o.json) std::cout << fmt::format("{:<72} {} {}\n", name, status.status, status.detail);
  }
  if (o.json) std::cout << j.dump(2) << "\n";
  else std::cout << fmt::format("{} kernels for {} shapes on {}: {} ok, {} excluded\n", statuses.size(), shapes.size(),
                                target.arch, statuses.size() - bad, bad);
  return 0;
}

// Sweeps this process's shard. Returns the run's database (not merged, not fitted).
tuning::Database sweep_here(const TuneOptions& o, std::chrono::steady_clock::time_point start) {
  const auto [shard, shards] = o.shard.empty() ? std::pair{0, 1} : parse_shard(o.shard);
  SweepSettings settings;
  settings.device = o.device;
  settings.runs = runs_of(o);
  settings.warmup = warmup_of(o);
  settings.flush = o.flush;
  settings.budget_s = o.budget_s;
  settings.label = o.shard.empty() ? "" : fmt::format("gpu {}", o.device);
  settings.start = start;
  std::unique_ptr<Measurer> measurer;
  if (o.simulate) {
    const auto [target, sms] = target_and_sms(o, false);
    measurer = simulated_measurer(target, sms);
  } else {
    measurer = gpu_measurer(settings);
  }
  const Facts& facts = measurer->facts();
  std::fprintf(stderr, "tune: %s (%s, %d SMs)%s\n", facts.card.c_str(), facts.target.arch.c_str(),
               facts.multiprocessors, facts.measured ? "" : ": simulated timings, nothing is measured");
  const std::vector<TuneShape> all = shapes_to_sweep(o, facts.multiprocessors);
  std::vector<TuneShape> shapes;
  for (std::size_t i : shard_indices(all.size(), shard, shards)) shapes.push_back(all[i]);
  std::vector<std::vector<Candidate>> candidates;
  std::size_t count = 0;
  for (const TuneShape& s : shapes) {
    candidates.push_back(candidates_for(s, facts.target, o.quick));
    count += candidates.back().size();
  }
  std::fprintf(stderr, "tune: %zu shapes, %zu candidates%s\n", shapes.size(), count,
               o.budget_s > 0 ? fmt::format(", budget {:.0f} s", o.budget_s).c_str() : "");
  const CompileStatuses compiled =
      o.simulate ? CompileStatuses{} : precompile(shapes, candidates, facts.target, jobs_of(o), settings.label);
  const std::vector<ShapeResult> results = run_sweep(*measurer, shapes, candidates, compiled, settings);
  return database_of(results, facts, o);
}

// ---- shards: one child process per GPU ----------------------------------------------------
std::vector<tuning::Database> sweep_on_devices(const TuneOptions& o, std::chrono::steady_clock::time_point start) {
  const std::vector<int> devices = parse_devices(o.devices);
  const fs::path dir = cache::make_unique_directory(fs::temp_directory_path(), "mlajit-tune");
  struct Child {
    pid_t pid = -1;
    int device = 0;
    fs::path result;
  };
  std::vector<Child> children;
  for (std::size_t k = 0; k < devices.size(); ++k) {
    Child c{-1, devices[k], dir / fmt::format("shard-{}.json", k)};
    std::vector<std::string> args = child_arguments(o, devices[k], int(k), int(devices.size()), c.result.string(),
                                                    o.budget_s > 0 ? std::max(1.0, o.budget_s - seconds_since(start)) : 0);
    args.insert(args.begin(), "mlajit");
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    const int error = ::posix_spawn(&c.pid, "/proc/self/exe", nullptr, nullptr, argv.data(), environ);
    if (error != 0) {
      throw Error(ErrorCode::internal, fmt::format("cannot start the tune shard for device {}: {}", c.device,
                                                   std::strerror(error)));
    }
    children.push_back(c);
  }
  std::vector<tuning::Database> shards;
  for (const Child& c : children) {
    int status = 0;
    ::waitpid(c.pid, &status, 0);
    const bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    if (!ok) std::fprintf(stderr, "tune: the shard on device %d failed (status %d)\n", c.device, status);
    std::error_code ec;
    if (fs::exists(c.result, ec)) {
      shards.push_back(tuning::database_from_json(cache::read_json(c.result), c.result.string()));
    }
  }
  fs::remove_all(dir);
  return shards;
}

// ---- merge, fit, write, report ------------------------------------------------------------
int finish(const TuneOptions& o, std::vector<tuning::Database> runs) {
  if (runs.empty()) throw Error(ErrorCode::internal, "no shard produced results");
  tuning::Database run = std::move(runs.front());
  for (std::size_t i = 1; i < runs.size(); ++i) {
    for (const tuning::Entry& e : runs[i].entries) run.entries.push_back(e);
  }
  tuning::sort_entries(run);
  run.meta.note += fmt::format("; {} shapes on {} GPU{}", run.entries.size(), runs.size(), runs.size() == 1 ? "" : "s");
  const Target target = parse_target(run.meta.arch);
  const fs::path out = o.out.empty() ? fs::path("tuning/db") / (tuning::database_name(target.arch) + ".json") : fs::path(o.out);

  tuning::Database db;
  std::error_code ec;
  if (fs::exists(out, ec)) {
    db = tuning::database_from_json(cache::read_json(out), out.string());
    if (db.meta.arch != target.arch) {
      throw_invalid("--out", fmt::format("holds a database for {}, this run is for {}", db.meta.arch, target.arch),
                    out.string());
    }
    if (db.meta.measured && !run.meta.measured) {
      throw_invalid("--out", "holds a measured database; a simulated run must not be merged into it (name another file)",
                    out.string());
    }
  }
  tuning::merge_into(db, run);
  const tuning::FitResult fit = tuning::fit_model(db, target, tuning::default_params(target));
  if (fit.samples > 0) {
    db.meta.model = fit.params;
    db.meta.model_fitted = true;
  }
  write_atomically(out, tuning::dump_database(db));

  nlohmann::json summary = nlohmann::json::array();
  std::string table = fmt::format("{:<14} {:<42} {:>10} {:<26} {:>10} {:<26} {:>6}\n", "shape", "bucket", "best us",
                                  "best", "model us", "model", "gain");
  std::vector<tuning::Entry> swept = run.entries;  // in suite order, then the catalogue
  std::stable_sort(swept.begin(), swept.end(), [](const tuning::Entry& a, const tuning::Entry& b) {
    return std::pair(a.shape_id.rfind("S", 0) != 0, a.shape_id) < std::pair(b.shape_id.rfind("S", 0) != 0, b.shape_id);
  });
  for (const tuning::Entry& e : swept) {
    const double gain = e.model.time_us > 0 ? e.model.time_us / e.best.time_us : 0;
    summary.push_back({{"id", e.shape_id}, {"bucket", tuning::bucket_key(e.bucket)}, {"best_us", e.best.time_us},
                       {"best", to_json(e.best.tile)}, {"model_us", e.model.time_us}, {"model", to_json(e.model.tile)},
                       {"model_over_best", gain}, {"max_abs_error", e.max_abs_error}});
    table += fmt::format("{:<14} {:<42} {:>10.1f} {:<26} {:>10} {:<26} {:>5.2f}x\n", e.shape_id,
                         tuning::bucket_key(e.bucket), e.best.time_us, tuning::tile_summary(e.best.tile),
                         e.model.time_us > 0 ? fmt::format("{:.1f}", e.model.time_us) : "invalid",
                         tuning::tile_summary(e.model.tile), gain);
  }
  const std::string fit_line = fmt::format(
      "model fit over {} samples: split choice {:.1f}% slower than the best measured with the default parameters, "
      "{:.1f}% with overhead {:.1f}, tail floor {:.2f}, combine launch {:.1f}",
      fit.samples, 100 * (fit.start_slowdown - 1), 100 * (fit.fitted_slowdown - 1), fit.params.split_overhead_tokens,
      fit.params.tail_wave_floor, fit.params.combine_launch_tokens);
  if (o.json) {
    std::cout << nlohmann::json{{"database", out.string()}, {"card", run.meta.card}, {"arch", target.arch},
                                {"measured", run.meta.measured}, {"entries", summary},
                                {"fit", {{"samples", fit.samples}, {"default_slowdown", fit.start_slowdown},
                                         {"fitted_slowdown", fit.fitted_slowdown}, {"params", to_json(fit.params)}}}}
                     .dump(2)
              << "\n";
  } else {
    std::cout << fmt::format("{} ({}), {}{}\n", run.meta.card, target.arch, run.meta.date,
                             run.meta.measured ? "" : " -- SIMULATED, not measured")
              << table << fit_line << "\n"
              << fmt::format("wrote {} ({} entries, {} from this run)\n", out.string(), db.entries.size(),
                             run.entries.size());
  }
  return run.entries.empty() ? 1 : 0;
}

}  // namespace

std::vector<std::string> child_arguments(const TuneOptions& o, int device, int shard, int shards,
                                         const std::string& result, double budget_left_s) {
  std::vector<std::string> a = {"tune", "--device", std::to_string(device), "--shard",
                                fmt::format("{}/{}", shard, shards), "--result", result,
                                "--runs", std::to_string(runs_of(o)), "--warmup", std::to_string(warmup_of(o)),
                                "--jobs", std::to_string(std::max(1, jobs_of(o) / std::max(1, shards)))};
  if (budget_left_s > 0) a.insert(a.end(), {"--budget", fmt::format("{:.0f}", std::ceil(budget_left_s))});
  if (o.quick) a.push_back("--quick");
  a.insert(a.end(), {"--flush", flush_name(o.flush)});
  if (o.simulate) a.push_back("--simulate");
  if (!o.arch.empty()) a.insert(a.end(), {"--arch", o.arch});
  if (o.multiprocessors > 0) a.insert(a.end(), {"--sms", std::to_string(o.multiprocessors)});
  for (const std::string& id : o.shape_ids) a.insert(a.end(), {"--shape", id});
  if (!o.shapes_file.empty()) a.insert(a.end(), {"--shapes", o.shapes_file});
  return a;
}

CLI::App* add_tune_command(CLI::App& app, TuneOptions& o) {
  CLI::App* cmd = app.add_subcommand(
      "tune", "sweep tile and split candidates on the GPU into the tuning database; --explain: what a call would get");
  cmd->add_flag("--explain", o.explain,
                "print what the engine would choose for the spec flags + --batch/--context and why (no GPU needed)");
  o.spec.add_to(*cmd);
  cmd->add_option("--batch", o.batch, "--explain: requests")->capture_default_str();
  cmd->add_option("--context", o.context, "--explain: mean KV tokens per request")->capture_default_str();
  cmd->add_option("--max-context", o.max_context, "--explain: longest request (0 = the mean)");
  cmd->add_option("--db", o.db_file, "--explain: this database file instead of the shipped + user ones");
  cmd->add_option("--shape", o.shape_ids, "suite ids to sweep, e.g. --shape S1 --shape S5 (default: suite + catalogue)");
  cmd->add_option("--shapes", o.shapes_file, "JSON array of shapes {id, batch, s_q, heads, context, context_min, q_dtype, kv_dtype, page_size}");
  cmd->add_flag("--quick", o.quick, "the BENCH.md suite only, fewer candidates, 10 runs each");
  cmd->add_option("--device", o.device, "CUDA device ordinal")->capture_default_str();
  cmd->add_option("--devices", o.devices, "shard the shapes over these GPUs, one process each, e.g. 0,1");
  cmd->add_option("--shard", o.shard, "sweep shard i of n (what --devices gives each process)")->group("");
  cmd->add_option("--result", o.result, "write this shard's sweep here (what --devices gives each process)")->group("");
  cmd->add_option("--runs", o.runs, "timed runs per candidate, median kept (default 20, --quick 10)");
  cmd->add_option("--warmup", o.warmup, "untimed runs first (default 3, --quick 2)");
  add_flush_option(*cmd, o.flush);
  cmd->add_option("--budget", o.budget_s, "seconds; candidates not started by then are skipped (the model's are timed first)");
  cmd->add_option("--jobs,-j", o.jobs, "parallel compiles (default: all cores)");
  cmd->add_option("--out", o.out, "database to merge the results into (default tuning/db/<generation>.json, e.g. sm_90.json for sm_90a)");
  cmd->add_flag("--simulate", o.simulate,
                "no GPU: time candidates with a stand-in model (exercises the sweep; writes measured: false)");
  cmd->add_flag("--precompile-only", o.precompile_only, "compile every candidate into the cache, report spills, time nothing");
  cmd->add_option("--arch", o.arch, "target (default: the current device; --explain falls back to sm_90a)");
  cmd->add_option("--sms", o.multiprocessors, "SMs / CUs when there is no device (default: the arch's usual card)");
  cmd->add_flag("--json", o.json, "machine-readable output");
  return cmd;
}

int run_tune(const TuneOptions& o) {
  if (o.explain) return run_explain(o);
  if (o.precompile_only) return run_precompile_only(o);
  const auto start = std::chrono::steady_clock::now();
  if (!o.devices.empty() && o.shard.empty()) return finish(o, sweep_on_devices(o, start));
  tuning::Database run = sweep_here(o, start);
  if (!o.result.empty()) {
    write_atomically(o.result, tuning::dump_database(run));
    return 0;
  }
  return finish(o, {std::move(run)});
}

}  // namespace mlajit::tune
