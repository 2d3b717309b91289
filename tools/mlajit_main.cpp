// The `mlajit` command: gen, compile, warm, verify, info, cache, bench, tune.
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <mutex>
#include <thread>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cache/environment.hpp"
#include "codegen/error.hpp"
#include "codegen/generator.hpp"
#include "runtime/engine.hpp"
#include "runtime/jit.hpp"
#include "tools/bench/bench.hpp"
#include "tools/cache_cli.hpp"
#include "tools/catalog.hpp"
#include "tools/decode_check.hpp"
#include "tools/spec_flags.hpp"
#include "tools/tune/tune.hpp"
#include "tuning/choose.hpp"

namespace mlajit::tools {
namespace {

std::string_view outcome_name(cache::Outcome o) {
  switch (o) {
    case cache::Outcome::memory_hit: return "memory";
    case cache::Outcome::disk_hit: return "cached";
    case cache::Outcome::compiled: return "compiled";
  }
  return "?";
}

nlohmann::json resources_json(const runtime::CodeObject& code) {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& [name, r] : code.resources) {
    j[name] = {{"registers", r.registers}, {"shared_bytes", r.shared_bytes}, {"local_bytes", r.local_bytes},
               {"spill_stores", r.spill_stores}, {"spill_loads", r.spill_loads}, {"origin", r.origin}};
  }
  return j;
}

nlohmann::json result_json(const runtime::JitResult& r, const Target& target, double wall_ms) {
  return {{"name", r.key.readable_name}, {"key", r.key.hash}, {"arch", target.arch},
          {"outcome", outcome_name(r.outcome)}, {"code_bytes", r.code.binary.size()}, {"format", r.code.format},
          {"compile_ms", r.code.compile_ms}, {"wall_ms", wall_ms}, {"resources", resources_json(r.code)}};
}

std::string resources_line(const runtime::CodeObject& code) {
  std::string line;
  for (const auto& [name, r] : code.resources) {
    line += fmt::format("  {}: {} registers, {} B static shared, {} B local, spills {}/{} B ({})\n", name,
                        r.registers, r.shared_bytes, r.local_bytes, r.spill_stores, r.spill_loads,
                        r.origin.empty() ? "unknown" : r.origin);
  }
  if (line.empty()) line = "  resources: not reported by this compiler\n";
  return line;
}

double ms_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
}

// ---- verbs -------------------------------------------------------------------------------
int cmd_gen(const SpecFlags& flags, const std::string& arch, bool stub_only, bool json) {
  const Spec spec = flags.spec();
  const Target target = parse_target(arch.empty() ? "sm_90a" : arch, "--arch");
  const TileConfig tile = flags.tile(spec, target);
  const Source source = generate(spec, tile, target);
  if (json) {
    nlohmann::json headers = nlohmann::json::array();
    for (const auto& h : source.headers) headers.push_back({{"include", h.include_name}, {"sha256", h.sha256}});
    std::cout << nlohmann::json{{"name", source.kernel_name}, {"arch", target.arch}, {"spec", to_json(spec)},
                                {"tile", kernel_json(tile)}, {"stub", source.text}, {"headers", headers},
                                {"source", flatten(source)}}.dump(2)
              << "\n";
  } else {
    std::cout << (stub_only ? source.text : flatten(source));
  }
  return 0;
}

int cmd_compile(const SpecFlags& flags, const std::string& arch, bool no_cache, bool json) {
  const Spec spec = flags.spec();
  const Target target = resolve_target(arch);
  const TileConfig tile = flags.tile(spec, target);
  const auto start = std::chrono::steady_clock::now();
  const runtime::JitResult r = runtime::jit_compile(spec, tile, target, no_cache ? nullptr : runtime::default_store());
  const double wall = ms_since(start);
  if (json) {
    std::cout << result_json(r, target, wall).dump(2) << "\n";
    return 0;
  }
  std::cout << fmt::format("{} for {}: {}\n  key {}\n  {} B {}, compile {:.1f} ms (wall {:.1f} ms)\n",
                           r.key.readable_name, target.arch, outcome_name(r.outcome), r.key.hash,
                           r.code.binary.size(), r.code.format, r.code.compile_ms, wall)
            << resources_line(r.code);
  return 0;
}

int cmd_warm(const std::string& catalog_file, std::vector<std::string> archs, const std::vector<std::string>& ops,
             int jobs, bool json) {
  std::vector<Spec> catalogue;
  if (catalog_file.empty()) {
    catalogue = default_catalog();
  } else {
    catalogue = catalog_from_json(read_json_file(catalog_file, "--catalog"), catalog_file);
  }
  // --op: every entry for each op named (else each entry's own op).
  std::vector<Spec> specs;
  if (ops.empty()) specs = catalogue;
  for (const std::string& name : ops) {
    const Op op = parse_op(name, "--op");
    for (Spec s : catalogue) {
      s.op = op;
      specs.push_back(s);
    }
  }
  if (archs.empty()) archs.push_back(resolve_target("").arch);
  std::vector<Target> targets;
  for (const std::string& a : archs) targets.push_back(parse_target(a, "--arch"));
  if (jobs < 1) throw_invalid("--jobs", "must be >= 1", std::to_string(jobs));

  struct Work {
    Spec spec;
    Target target;
  };
  std::vector<Work> work;
  for (const Target& t : targets)
    for (const Spec& s : specs) work.push_back({s, t});

  std::vector<nlohmann::json> records(work.size());
  std::atomic<std::size_t> next{0};
  std::atomic<int> compiled{0}, cached{0}, failed{0}, done{0}, recompiled{0};
  std::mutex print_mutex;
  const bool tty = isatty(STDERR_FILENO) != 0;
  const auto start = std::chrono::steady_clock::now();
  auto worker = [&] {
    for (std::size_t i = next++; i < work.size(); i = next++) {
      const auto t0 = std::chrono::steady_clock::now();
      nlohmann::json rec;
      try {
        const TileConfig tile = tuning::choose_tile(work[i].spec, work[i].target);
        const runtime::JitResult r = runtime::jit_compile(work[i].spec, tile, work[i].target, runtime::default_store());
        rec = result_json(r, work[i].target, ms_since(t0));
        if (!r.quarantined.empty()) {
          rec["note"] = "recompiled (damaged entry quarantined: " + r.quarantined + ")";
          recompiled++;
        }
        (r.outcome == cache::Outcome::compiled ? compiled : cached)++;
      } catch (const std::exception& e) {
        rec = {{"name", kernel_base_name(work[i].spec, tuning::choose_tile(work[i].spec, work[i].target))},
               {"arch", work[i].target.arch}, {"outcome", "failed"}, {"error", e.what()}};
        failed++;
      }
      records[i] = rec;
      const int n = ++done;
      std::lock_guard lock(print_mutex);
      const double elapsed = ms_since(start) / 1000.0;
      const double eta = elapsed / n * double(work.size() - n);
      std::fprintf(stderr, "%s[%d/%zu] %-8s %s %s  (%.1f s, ETA %.0f s)%s", tty ? "\r\033[K" : "", n, work.size(),
                   rec["outcome"].get<std::string>().c_str(), work[i].target.arch.c_str(),
                   rec["name"].get<std::string>().c_str(), elapsed, eta, tty ? "" : "\n");
      if (rec["outcome"] == "failed") std::fprintf(stderr, "%s  error: %s\n", tty ? "\n" : "", rec["error"].get<std::string>().c_str());
      if (rec.contains("note")) std::fprintf(stderr, "%s  %s\n", tty ? "\n" : "", rec["note"].get<std::string>().c_str());
    }
  };
  std::vector<std::thread> threads;
  for (int j = 0; j < std::min<int>(jobs, int(work.size())); ++j) threads.emplace_back(worker);
  for (auto& t : threads) t.join();
  if (tty) std::fprintf(stderr, "\n");
  const double wall = ms_since(start) / 1000.0;

  if (json) {
    std::cout << nlohmann::json{{"compiled", compiled.load()}, {"cached", cached.load()}, {"failed", failed.load()},
                                {"recompiled", recompiled.load()},
                                {"wall_s", wall}, {"entries", records}}.dump(2)
              << "\n";
  } else {
    std::cout << fmt::format("{:<66} {:<7} {:<8} {:>9} {:>5} {:>6} {:>10}\n", "kernel", "arch", "outcome", "bytes",
                             "regs", "spill", "compile ms");
    for (const auto& r : records) {
      int regs = -1, spill = -1;
      if (r.contains("resources")) {
        for (const auto& [name, res] : r["resources"].items()) {
          regs = std::max(regs, res["registers"].get<int>());
          spill = std::max(spill, res["spill_stores"].get<int>());
        }
      }
      std::cout << fmt::format("{:<66} {:<7} {:<8} {:>9} {:>5} {:>6} {:>10.1f}\n", r["name"].get<std::string>(),
                               r["arch"].get<std::string>(), r["outcome"].get<std::string>(),
                               r.value("code_bytes", 0), regs, spill, r.value("compile_ms", 0.0));
    }
    std::cout << fmt::format("compiled {} ({} recompiled after quarantine), cached {}, failed {} in {:.1f} s ({} jobs)\n",
                             compiled.load(), recompiled.load(), cached.load(), failed.load(), wall, jobs);
  }
  return failed.load() == 0 ? 0 : 1;
}

int cmd_verify(const SpecFlags& flags, int device, int batch, int kv_len, int splits, bool json) {
  const Spec spec = flags.spec();
  Engine engine(device, Backend::cuda);
  reference::ProblemOptions options;
  for (int b = 0; b < batch; ++b) options.kv_lens.push_back(std::max(0, kv_len - 37 * b));  // ragged
  options.seed = 1;
  const reference::DecodeProblem problem = reference::make_problem(spec, options);
  const bool persistent = spec.op == Op::persistent_decode;
  const DeviceRun run = persistent ? run_persistent_on_device(engine, problem) : run_on_device(engine, problem, splits);
  const reference::DecodeResult want = reference::decode(problem);
  const Tolerance tol = tolerance_for(spec, run.plan.tile.family, max_abs_value(problem));
  const reference::Comparison c =
      reference::compare(want, run.out, spec.return_lse ? &run.lse : nullptr, tol.atol, tol.rtol);
  const long long k_pe_mismatches = spec.rope == RopeStyle::none ? 0 : compare_k_pe(want, run, spec).mismatches;
  const bool ok = c.mismatches == 0 && c.lse_pattern_ok && k_pe_mismatches == 0;
  if (json) {
    std::cout << nlohmann::json{{"device", engine.device_info().name}, {"arch", engine.device_info().target.arch},
                                {"spec", to_json(spec)}, {"tile", to_json(run.plan.tile)},
                                {"max_abs_error", c.max_abs_error}, {"max_lse_error", c.max_lse_error},
                                {"mismatches", c.mismatches}, {"non_finite", c.non_finite_outputs},
                                {"cosine_distance", c.cosine_distance}, {"k_pe_mismatches", k_pe_mismatches},
                                {"ok", ok}}.dump(2)
              << "\n";
  } else {
    std::cout << fmt::format("{} ({}): {} x {}, kv lengths {}..{}, {}\n  max |err| {:.3g} (atol {} rtol {}), "
                             "mismatches {}, non-finite {}, k_pe mismatches {}: {}\n",
                             engine.device_info().name, engine.device_info().target.arch, batch, op_name(spec.op),
                             options.kv_lens.back(), options.kv_lens.front(),
                             persistent ? std::string("persistent ") + std::string(family_name(run.plan.tile.family))
                                        : fmt::format("splits {}", run.plan.tile.num_splits),
                             c.max_abs_error, tol.atol, tol.rtol, c.mismatches, c.non_finite_outputs,
                             k_pe_mismatches, ok ? "PASS" : "FAIL");
  }
  return ok ? 0 : 1;
}

int cmd_info(bool json) {
  nlohmann::json j;
  j["version"] = "0.1.0";
  j["generator_version"] = kGeneratorVersion;
  nlohmann::json backends = nlohmann::json::array();
  for (Backend kind : {Backend::cuda, Backend::hip}) {
    runtime::Backend& b = runtime::backend(kind);
    nlohmann::json e{{"backend", backend_name(kind)}};
    try {
      const runtime::CompilerInfo ci = b.compiler_info();
      e["compiler"] = ci.name;
      e["compiler_version"] = ci.version;
    } catch (const Error& err) {
      e["compiler"] = nullptr;
      e["compiler_error"] = err.what();
    }
    nlohmann::json devices = nlohmann::json::array();
    const int count = b.device_count();
    for (int d = 0; d < count; ++d) {
      try {
        const auto dev = b.open_device(d);
        const runtime::DeviceInfo& i = dev->info();
        devices.push_back({{"ordinal", d}, {"name", i.name}, {"arch", i.target.arch},
                           {"multiprocessors", i.multiprocessors}, {"memory_bytes", i.total_memory},
                           {"l2_bytes", i.l2_bytes}, {"max_shared_per_block", i.max_shared_per_block},
                           {"driver", i.driver_version}});
      } catch (const Error& err) {
        devices.push_back({{"ordinal", d}, {"error", err.what()}});
      }
    }
    e["devices"] = devices;
    if (count == 0) e["no_device_reason"] = b.unavailable_reason();
    backends.push_back(e);
  }
  j["backends"] = backends;
  const cache::DiskStore* store = runtime::default_store();
  j["cache_dir"] = store ? store->root().string() : "(disabled by MLAJIT_DISABLE_CACHE)";
  nlohmann::json env = nlohmann::json::array();
  for (const EnvironmentVariable& v : environment_variables()) {
    env.push_back({{"name", v.name}, {"value", read_environment(v.name).value_or("")}, {"meaning", v.meaning}});
  }
  j["environment"] = env;
  if (json) {
    std::cout << j.dump(2) << "\n";
    return 0;
  }
  std::cout << fmt::format("mlajit {} (generator {})\n", j["version"].get<std::string>(), kGeneratorVersion);
  for (const auto& b : backends) {
    std::cout << fmt::format("{}: compiler {}\n", b["backend"].get<std::string>(),
                             b["compiler"].is_null() ? "unavailable (" + b["compiler_error"].get<std::string>() + ")"
                                                     : b["compiler"].get<std::string>() + " " + b["compiler_version"].get<std::string>());
    for (const auto& d : b["devices"]) {
      if (d.contains("error")) {
        std::cout << fmt::format("  device {}: {}\n", d["ordinal"].get<int>(), d["error"].get<std::string>());
        continue;
      }
      std::cout << fmt::format("  device {}: {} ({}), {} SMs/CUs, {:.1f} GiB, L2 {:.0f} MiB, driver {}\n",
                               d["ordinal"].get<int>(), d["name"].get<std::string>(), d["arch"].get<std::string>(),
                               d["multiprocessors"].get<int>(), d["memory_bytes"].get<double>() / (1 << 30),
                               d["l2_bytes"].get<double>() / (1 << 20), d["driver"].get<std::string>());
    }
    if (b.contains("no_device_reason")) std::cout << "  no device: " << b["no_device_reason"].get<std::string>() << "\n";
  }
  std::cout << "cache: " << j["cache_dir"].get<std::string>() << "\nenvironment:\n";
  for (const auto& v : env) {
    std::cout << fmt::format("  {:<22} {:<12} {}\n", v["name"].get<std::string>(),
                             v["value"].get<std::string>().empty() ? "(unset)" : v["value"].get<std::string>(),
                             v["meaning"].get<std::string>());
  }
  return 0;
}

}  // namespace
}  // namespace mlajit::tools

int main(int argc, char** argv) {
  using namespace mlajit::tools;
  CLI::App app{"mlajit: just-in-time compiler for MLA (multi-head latent attention) GPU kernels"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "mlajit 0.1.0");

  SpecFlags gen_flags, compile_flags, verify_flags;
  std::string gen_arch, compile_arch, catalog;
  std::vector<std::string> warm_archs, warm_ops;
  bool json = false, stub_only = false, no_cache = false;
  int jobs = int(std::max(1u, std::thread::hardware_concurrency()));
  int device = 0, batch = 4, kv_len = 1000, splits = 0;

  CLI::App* gen = app.add_subcommand("gen", "print the generated source of one kernel (headers inlined)");
  gen_flags.add_to(*gen);
  gen->add_option("--arch", gen_arch, "target: sm_80.., sm_90a, gfx90a, gfx942, gfx950 (default sm_90a)");
  gen->add_flag("--stub", stub_only, "print only the rendered stub, not the inlined headers");
  gen->add_flag("--json", json, "machine-readable output");

  CLI::App* compile = app.add_subcommand("compile", "compile one kernel (through the disk cache) and report it");
  compile_flags.add_to(*compile);
  compile->add_option("--arch", compile_arch, "target (default: the current device)");
  compile->add_flag("--no-cache", no_cache, "compile in memory, neither read nor write the disk cache");
  compile->add_flag("--json", json, "machine-readable output");

  CLI::App* warm = app.add_subcommand("warm", "compile a catalogue of kernels into the disk cache ahead of time");
  warm->add_option("--catalog", catalog, "JSON array of specs (default: the built-in DeepSeek-V3 decode catalogue)");
  warm->add_option("--arch", warm_archs, "target(s); repeat for several (default: the current device)");
  warm->add_option("--op", warm_ops, "warm every entry for this op: decode | persistent-decode; repeat for both "
                  "(default: each entry's own op)");
  warm->add_option("--jobs,-j", jobs, "parallel compiles")->capture_default_str();
  warm->add_flag("--json", json, "machine-readable output: counts compiled/cached/failed and one record per entry");

  CLI::App* verify = app.add_subcommand("verify", "run one decode on the GPU and check it against the float32 reference");
  verify_flags.add_to(*verify);
  verify->add_option("--device", device, "CUDA device ordinal")->capture_default_str();
  verify->add_option("--batch", batch, "requests (ragged: kv-len, kv-len - 37, ...)")->capture_default_str();
  verify->add_option("--kv-len", kv_len, "KV tokens of the longest request")->capture_default_str();
  verify->add_option("--splits", splits, "KV splits (0 = auto; not used by --op persistent-decode)")->capture_default_str();
  verify->add_flag("--json", json, "machine-readable output");

  mlajit::bench::BenchOptions bench_options;
  CLI::App* bench = mlajit::bench::add_bench_command(app, bench_options);

  mlajit::tune::TuneOptions tune_options;
  CLI::App* tune = mlajit::tune::add_tune_command(app, tune_options);

  CLI::App* info = app.add_subcommand("info", "devices, compilers and versions, cache directory, environment");
  info->add_flag("--json", json, "machine-readable output");

  CacheCommand cache_command(app);

  CLI11_PARSE(app, argc, argv);
  try {
    if (*gen) return cmd_gen(gen_flags, gen_arch, stub_only, json);
    if (*compile) return cmd_compile(compile_flags, compile_arch, no_cache, json);
    if (*warm) return cmd_warm(catalog, warm_archs, warm_ops, jobs, json);
    if (*verify) return cmd_verify(verify_flags, device, batch, kv_len, splits, json);
    if (*info) return cmd_info(json);
    if (cache_command.selected()) return cache_command.run();
    if (*bench) return mlajit::bench::run_bench(bench_options);
    if (*tune) return mlajit::tune::run_tune(tune_options);
  } catch (const mlajit::Error& e) {
    std::fprintf(stderr, "mlajit: error: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mlajit: internal error: %s\n", e.what());
    return 3;
  }
  return 0;
}
