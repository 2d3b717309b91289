// The decode benchmark suite of ../shared/BENCH.md.
#include "tools/bench/bench.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "codegen/error.hpp"
#include "reference/decode_reference.hpp"
#include "runtime/engine.hpp"
#include "runtime/persistent_plan.hpp"
#include "tools/decode_check.hpp"
#include "tools/bench/roofline.hpp"
#include "tools/bench/timing.hpp"
#include "tools/suite.hpp"
#include "tuning/choose.hpp"

namespace mlajit::bench {

using tools::DecodeTimer;
using tools::DeviceProblem;
using tools::Shape;
using tools::select_shapes;
using tools::today;
using tools::upload;

CLI::App* add_bench_command(CLI::App& app, BenchOptions& o) {
  CLI::App* cmd = app.add_subcommand("bench", "run the BENCH.md decode suite (S1-S8) on the GPU with roofline probes");
  cmd->add_option("--shape", o.shapes, "suite ids to run, e.g. --shape S1 --shape S5 (default: all)");
  cmd->add_option("--shapes", o.shapes_file, "JSON array of shapes {id, batch, s_q, heads, context, context_min, q_dtype, kv_dtype, page_size}");
  cmd->add_option("--device", o.device, "CUDA device ordinal")->capture_default_str();
  cmd->add_option("--runs", o.runs, "timed runs per shape (median reported)")->capture_default_str();
  cmd->add_option("--warmup", o.warmup, "untimed runs first")->capture_default_str();
  add_flush_option(*cmd, o.flush);
  cmd->add_flag("!--no-roofline", o.roofline, "skip the roofline probes");
  cmd->add_option("--family", o.family, "force a kernel family: portable | mma | wgmma (default: the model's choice)");
  cmd->add_option("--tokens-per-tile", o.tokens_per_tile, "override the tile's KV tokens per step");
  cmd->add_option("--stages", o.stages, "override the tile's pipeline stages (wgmma: follows from the tile unless given)");
  cmd->add_option("--heads-per-cta", o.heads_per_cta, "override the tile's query rows per CTA (mma: 16, 32, 64; wgmma: 8, 16, 24, 32, or 64: the wide tile)");
  cmd->add_option("--splits", o.splits, "force the KV split count");
  cmd->add_option("--tag", o.tag, "suffix for the results file name");
  cmd->add_option("--persistent", o.persistent_shapes,
                  "ids also timed on the persistent path, as extra rows <id>p (default: S3 S5; 'none' for none, "
                  "'all' for every shape)")
      ->capture_default_str();
  cmd->add_option("--persistent-metadata", o.persistent_metadata,
                  "persistent rows: 'each' = the metadata fill inside every timed call (row <id>p), 'step' = one fill "
                  "a decode step, shared by its layers (row <id>ps: the decode timed on a fill made before, plus the "
                  "fill's own median / --step-layers), 'both'")
      ->check(CLI::IsMember({"each", "step", "both"}))
      ->capture_default_str();
  cmd->add_option("--step-layers", o.step_layers,
                  "attention layers a decode step runs on one metadata fill, for the <id>ps rows (DeepSeek-V3/R1: 61)")
      ->check(CLI::Range(1, 1000))
      ->capture_default_str();
  cmd->add_option("--out-dir", o.out_dir, "where the JSON results go (<card>-<date>.json)")->capture_default_str();
  cmd->add_flag("--json", o.json, "print the JSON results instead of the table");
  return cmd;
}

int run_bench(const BenchOptions& o) {
  if (o.runs < 1) throw_invalid("--runs", "must be >= 1", std::to_string(o.runs));
  const std::vector<Shape> shapes = select_shapes(o.shapes, o.shapes_file);
  Engine engine(o.device, Backend::cuda);
  runtime::Device& device = engine.device();
  const runtime::DeviceInfo& info = device.info();
  std::fprintf(stderr, "bench: %s (%s, %d SMs)\n", info.name.c_str(), info.target.arch.c_str(), info.multiprocessors);

  Roofline roof;
  if (o.roofline) {
    std::fprintf(stderr, "bench: roofline probes...\n");
    roof = measure_roofline(device);
    std::fprintf(stderr, "bench: read %.0f GB/s, bf16 %.0f TFLOP/s (%s)\n", roof.read_gb_s, roof.bf16_tflop_s,
                 roof.bf16_note.c_str());
  }
  DecodeTimer timer(device, o.flush);

  nlohmann::json results = nlohmann::json::array();
  for (const Shape& shape : shapes) {
    std::fprintf(stderr, "bench: %s: building the problem...\n", shape.id.c_str());
    const Spec spec = shape.spec();
    const reference::DecodeProblem problem = make_problem(shape);
    std::optional<TileConfig> tile;
    if (!o.family.empty() || o.tokens_per_tile > 0 || o.stages > 0 || o.heads_per_cta > 0 || o.splits > 0) {
      tile = o.family.empty() ? tuning::choose_tile(spec, info.target)
                              : tuning::choose_tile(spec, info.target, parse_family(o.family, "--family"));
      if (o.tokens_per_tile > 0) tile->tokens_per_tile = o.tokens_per_tile;
      if (o.stages > 0) tile->stages = o.stages;
      if (o.heads_per_cta > 0) tile->heads_per_cta = o.heads_per_cta;
      // Without --stages, an overridden mma shape keeps the model's stages where they fit, else the most that do.
      while (o.stages == 0 && tile->family == KernelFamily::mma && tile->stages > 2 &&
             decode_shared_bytes(spec, *tile) > info.target.max_shared_bytes()) {
        --tile->stages;
      }
      if (o.stages == 0 && tile->family == KernelFamily::wgmma) tile->stages = wgmma_stages(*tile);
      tile->num_splits = o.splits;
      validate(*tile, spec, info.target);
    }
    DeviceProblem d = upload(engine, problem);
    const auto wants = [&](const std::string& id) {
      return std::find(o.persistent_shapes.begin(), o.persistent_shapes.end(), id) != o.persistent_shapes.end();
    };
    const bool persistent_too = wants(shape.id) || wants("all");

    // One row per path: "grid" (stage 1 on request x row group x split, + combine) and, where
    // asked, "persistent": metadata fill + persistent stage 1 + reduce, all timed (row <id>p), and /
    // or stage 1 + reduce on a fill made once before timing (row <id>ps: a decode step fills once
    // for all its layers; the fill's own median is reported beside it).
    enum class Path { grid, persistent_each, persistent_step };
    std::vector<Path> paths = {Path::grid};
    if (persistent_too && o.persistent_metadata != "step") paths.push_back(Path::persistent_each);
    if (persistent_too && o.persistent_metadata != "each") paths.push_back(Path::persistent_step);
    for (const Path path : paths) {
      const bool persistent = path != Path::grid;
      const bool fill_each_call = path == Path::persistent_each;
      std::function<void()> call;
      DecodeArgs args = d.args;
      tools::PersistentBuffers buffers;
      TileConfig chosen;
      Spec kernel_spec;
      int num_splits = 0, workers = 0;
      double fill_ms = -1;  // the metadata fill alone (persistent_step)
      if (persistent) {
        const PersistentPlan plan = engine.plan_persistent(args, tile);
        buffers = tools::allocate_persistent(engine, plan);
        args.workspace = buffers.workspace.get();
        args.workspace_bytes = buffers.workspace.size();
        chosen = plan.tile;
        kernel_spec = plan.spec;
        workers = plan.shape.workers;
        if (fill_each_call) {
          call = [&] {
            engine.persistent_metadata_fill(args, buffers.metadata, tile);
            engine.persistent_decode(args, buffers.metadata, tile);
          };
        } else {
          const auto fill = [&] { engine.persistent_metadata_fill(args, buffers.metadata, tile); };
          fill();  // compiles the metadata kernel; the fill's time is measured below on its own
          device.synchronize();
          fill_ms = timer.median_ms(fill, 1, o.runs);
          call = [&] { engine.persistent_decode(args, buffers.metadata, tile); };
        }
      } else {
        ensure_workspace(engine, d, tile);
        args = d.args;
        const DecodePlan plan = engine.plan_decode(args, tile);
        chosen = plan.tile;
        kernel_spec = plan.spec;
        num_splits = plan.tile.num_splits;
        call = [&] { engine.decode(args, tile); };
      }
      device.fill_bytes(d.out.get(), 0xff, d.out.size());  // each path writes its own output

      // JIT costs: compile (or disk load) happens on the first call; time it on the host.
      const auto t0 = std::chrono::steady_clock::now();
      call();
      device.synchronize();
      const double first_call_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      for (int i = 0; i < o.warmup; ++i) call();
      device.synchronize();
      // Hot dispatch: host time of one call with everything loaded (GPU work not waited for).
      const int dispatches = 200;
      const auto h0 = std::chrono::steady_clock::now();
      for (int i = 0; i < dispatches; ++i) call();
      const double dispatch_us =
          std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - h0).count() / dispatches;
      device.synchronize();

      // A step's fill is shared by its layers: the ps row's time is one layer's decode plus its
      // share of the fill (BENCH.md: the metadata the call needs each step).
      const double decode_ms = timer.median_ms(call, 0, o.runs);
      const double ms = fill_ms >= 0 ? decode_ms + fill_ms / o.step_layers : decode_ms;

      // Error: device output of the first requests against the float32 reference.
      const int checked_requests = std::min(problem.batch, 2);
      const reference::DecodeResult want = reference::decode(problem, checked_requests);
      const long long checked_rows = (long long)problem.qo_indptr[checked_requests] * spec.heads;
      const std::vector<float> got = download_output(engine, d, spec, checked_rows);
      const reference::Comparison cmp = reference::compare(want, got, nullptr, 1e9, 0, checked_rows);

      double tokens = 0;
      for (int l : problem.kv_lens) tokens += l;
      const double bytes = tokens * spec.qk_dim() * dtype_size(spec.kv_dtype) +
                           double(problem.q.size()) + double(d.out.size());
      const double flops = 2.0 * spec.s_q * spec.heads * tokens * (spec.qk_dim() + spec.v_dim());
      const double gb_s = bytes / (ms * 1e-3) / 1e9;
      const double tflop_s = flops / (ms * 1e-3) / 1e12;
      const double roof_us = o.roofline ? std::max(bytes / (roof.read_gb_s * 1e9), flops / (roof.bf16_tflop_s * 1e12)) * 1e6 : 0;
      const runtime::JitResult& jit = engine.load_decode(kernel_spec, chosen).jit;
      const std::string id = shape.id + (path == Path::grid ? "" : fill_each_call ? "p" : "ps");
      nlohmann::json r{{"id", id}, {"shape", shape.id}, {"path", persistent ? "persistent" : "grid"},
                       {"metadata", !persistent ? "none" : fill_each_call ? "each call" : "once a step"},
                       {"card", info.name}, {"arch", info.target.arch}, {"date", today()},
                       {"batch", shape.batch}, {"s_q", shape.s_q}, {"heads", shape.heads}, {"page_size", shape.page_size},
                       {"kv_dtype", dtype_name(shape.kv_dtype)}, {"mean_context", tokens / shape.batch},
                       {"time_us", ms * 1e3}, {"gb_s", gb_s}, {"tflop_s", tflop_s},
                       {"pct_bw", o.roofline ? 100.0 * gb_s / roof.read_gb_s : 0.0},
                       {"pct_flops", o.roofline && roof.bf16_tflop_s > 0 ? 100.0 * tflop_s / roof.bf16_tflop_s : 0.0},
                       {"roofline_us", roof_us}, {"pct_roofline", roof_us > 0 ? 100.0 * roof_us / (ms * 1e3) : 0.0},
                       {"max_abs_err", cmp.max_abs_error}, {"non_finite", cmp.non_finite_outputs},
                       {"checked_requests", checked_requests}, {"family", family_name(chosen.family)},
                       {"num_splits", num_splits}, {"workers", workers}, {"kernel", jit.key.entry_name()},
                       {"first_call_ms", first_call_ms}, {"compile_ms", jit.code.compile_ms},
                       {"hot_dispatch_us", dispatch_us}, {"l2_flush", flush_name(o.flush)}, {"runs", o.runs}};
      if (fill_ms >= 0) {
        r["decode_us"] = decode_ms * 1e3;
        r["metadata_fill_us"] = fill_ms * 1e3;
        r["step_layers"] = o.step_layers;
      }
      results.push_back(r);
      std::fprintf(stderr, "bench: %s %.1f us (%.0f%% of roofline), err %.3g%s\n", id.c_str(), ms * 1e3,
                   r["pct_roofline"].get<double>(), cmp.max_abs_error,
                   fill_ms >= 0 ? fmt::format(" (decode {:.1f} us + the metadata fill's {:.1f} us / {} layers)", decode_ms * 1e3,
                                                   fill_ms * 1e3, o.step_layers).c_str()
                                : "");
    }
  }

  nlohmann::json doc{{"card", info.name}, {"arch", info.target.arch}, {"date", today()},
                     {"roofline", {{"read_gb_s", roof.read_gb_s}, {"bf16_tflop_s", roof.bf16_tflop_s}, {"bf16_probe", roof.bf16_note}}},
                     {"results", results}};
  if (!o.out_dir.empty()) {
    std::filesystem::create_directories(o.out_dir);
    std::string card = info.name;
    std::replace(card.begin(), card.end(), ' ', '_');
    const std::string path = fmt::format("{}/{}-{}{}.json", o.out_dir, card, today(), o.tag.empty() ? "" : "-" + o.tag);
    std::ofstream(path) << doc.dump(2) << "\n";
    std::fprintf(stderr, "bench: wrote %s\n", path.c_str());
  }
  if (o.json) {
    std::cout << doc.dump(2) << "\n";
    return 0;
  }
  std::cout << fmt::format("{} ({}), {}; roofline: read {:.0f} GB/s, bf16 {:.0f} TFLOP/s; L2 flush: {}\n", info.name,
                           info.target.arch, today(), roof.read_gb_s, roof.bf16_tflop_s, flush_name(o.flush));
  std::cout << fmt::format("{:<4} {:>5} {:>3} {:>4} {:>6} {:<5} {:>4} {:>9} {:>8} {:>7} {:>9} {:>6} {:>9} {:<8} {:>6} {:>8}\n", "id",
                           "batch", "sq", "H", "ctx", "kv", "page", "time us", "GB/s", "TFLOP/s", "roof us", "%roof",
                           "max err", "family", "splits", "disp us");
  // splits: the grid path's KV splits; persistent rows show "w<workers>" instead.
  for (const auto& r : results) {
    const std::string splits = r["path"] == "persistent" ? fmt::format("w{}", r["workers"].get<int>())
                                                         : std::to_string(r["num_splits"].get<int>());
    std::cout << fmt::format("{:<4} {:>5} {:>3} {:>4} {:>6.0f} {:<5} {:>4} {:>9.1f} {:>8.0f} {:>7.1f} {:>9.1f} {:>5.0f}% {:>9.2g} {:<8} {:>6} {:>8.1f}\n",
                             r["id"].get<std::string>(), r["batch"].get<int>(), r["s_q"].get<int>(), r["heads"].get<int>(),
                             r["mean_context"].get<double>(), r["kv_dtype"].get<std::string>().substr(0, 5),
                             r["page_size"].get<int>(), r["time_us"].get<double>(), r["gb_s"].get<double>(),
                             r["tflop_s"].get<double>(), r["roofline_us"].get<double>(), r["pct_roofline"].get<double>(),
                             r["max_abs_err"].get<double>(), r["family"].get<std::string>(), splits,
                             r["hot_dispatch_us"].get<double>());
  }
  return 0;
}

}  // namespace mlajit::bench
