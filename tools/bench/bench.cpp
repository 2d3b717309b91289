// The decode benchmark suite of ../shared/BENCH.md.
#include "tools/bench/bench.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <random>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "codegen/error.hpp"
#include "reference/decode_reference.hpp"
#include "runtime/engine.hpp"
#include "tools/bench/roofline.hpp"
#include "tools/decode_check.hpp"
#include "tuning/choose.hpp"

namespace mlajit::bench {

namespace {

struct Shape {
  std::string id;
  int batch = 1;
  int s_q = 1;
  int heads = 16;
  int context = 4096;   // tokens per request (uniform)
  int context_min = 0;  // > 0: uniform random in [context_min, context] (seed 0)
  DType kv_dtype = DType::bf16;
  int page_size = 64;
  std::string stresses;
};

std::vector<Shape> suite() {
  return {
      {"S1", 128, 1, 16, 4096, 0, DType::bf16, 64, "memory-bound, TP8 serving"},
      {"S2", 64, 1, 128, 4096, 0, DType::bf16, 64, "compute-bound, TP1 / DP attention"},
      {"S3", 64, 1, 16, 16384, 256, DType::bf16, 64, "load balance across SMs"},
      {"S4", 128, 2, 16, 4096, 0, DType::bf16, 64, "MTP / speculative verify"},
      {"S5", 4, 1, 16, 32768, 0, DType::bf16, 64, "small batch, long context: split-K"},
      {"S6", 32, 1, 64, 8192, 0, DType::bf16, 64, "mid head count"},
      {"S7", 128, 1, 16, 4096, 0, DType::fp8_e4m3, 64, "FP8 KV cache"},
      {"S8", 128, 1, 16, 4096, 0, DType::bf16, 1, "token-level pages"},
  };
}

Shape shape_from_json(const nlohmann::json& j) {
  Shape s;
  s.id = j.value("id", std::string("custom"));
  s.batch = j.value("batch", 1);
  s.s_q = j.value("s_q", 1);
  s.heads = j.value("heads", 16);
  s.context = j.value("context", 4096);
  s.context_min = j.value("context_min", 0);
  s.kv_dtype = parse_dtype(j.value("kv_dtype", std::string("bf16")), "kv_dtype");
  s.page_size = j.value("page_size", 64);
  return s;
}

std::vector<int> context_lengths(const Shape& s) {
  std::vector<int> lens(s.batch, s.context);
  if (s.context_min > 0) {
    std::mt19937 rng(0);
    std::uniform_int_distribution<int> dist(s.context_min, s.context);
    for (int& l : lens) l = dist(rng);
  }
  return lens;
}

std::string today() {
  std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%d", std::gmtime(&t));
  return buf;
}

double median(std::vector<float> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

struct DeviceProblem {
  runtime::DeviceBuffer q, kv, qo, kvp, kvi, last, out, lse, workspace;
  DecodeArgs args;
};

DeviceProblem upload(Engine& engine, const reference::DecodeProblem& p, const std::optional<TileConfig>& tile) {
  runtime::Device& device = engine.device();
  DeviceProblem d;
  auto put = [&](runtime::DeviceBuffer& buffer, const void* data, std::size_t bytes) {
    buffer = runtime::DeviceBuffer(device, std::max<std::size_t>(bytes, 16));
    if (bytes) device.copy_to_device(buffer.get(), data, bytes);
  };
  const Spec& s = p.spec;
  put(d.q, p.q.data(), p.q.size());
  put(d.kv, p.kv.data(), p.kv.size());
  put(d.qo, p.qo_indptr.data(), p.qo_indptr.size() * 4);
  put(d.kvp, p.kv_indptr.data(), p.kv_indptr.size() * 4);
  put(d.kvi, p.kv_indices.data(), p.kv_indices.size() * 4);
  put(d.last, p.kv_last_page_lens.data(), p.kv_last_page_lens.size() * 4);
  d.out = runtime::DeviceBuffer(device, std::size_t(p.total_q) * s.heads * s.v_dim() * dtype_size(s.out_dtype));
  d.lse = runtime::DeviceBuffer(device, std::size_t(p.total_q) * s.heads * 4);
  DecodeArgs& a = d.args;
  a.q = d.q.get();
  a.q_dtype = s.q_dtype;
  a.kv_buffer = d.kv.get();
  a.kv_dtype = s.kv_dtype;
  a.kv_page_stride = p.kv_page_stride;
  a.out = d.out.get();
  a.out_dtype = s.out_dtype;
  a.qo_indptr = d.qo.as<int>();
  a.kv_indptr = d.kvp.as<int>();
  a.kv_indices = d.kvi.as<int>();
  a.kv_last_page_lens = d.last.as<int>();
  a.batch = p.batch;
  a.total_q = p.total_q;
  a.num_heads = s.heads;
  a.max_seqlen_q = s.s_q;
  a.page_size = s.page_size;
  a.num_kv_indices = (long long)p.kv_indices.size();
  a.sm_scale = p.sm_scale;
  a.q_scale = p.q_scale;
  a.kv_scale = p.kv_scale;
  const std::size_t ws = engine.decode_workspace_size(a, tile);
  if (ws > 0) d.workspace = runtime::DeviceBuffer(device, ws);
  a.workspace = d.workspace.get();
  a.workspace_bytes = d.workspace.size();
  return d;
}

}  // namespace

CLI::App* add_bench_command(CLI::App& app, BenchOptions& o) {
  CLI::App* cmd = app.add_subcommand("bench", "run the BENCH.md decode suite (S1-S8) on the GPU with roofline probes");
  cmd->add_option("--shape", o.shapes, "suite ids to run, e.g. --shape S1 --shape S5 (default: all)");
  cmd->add_option("--shapes", o.shapes_file, "JSON array of shapes {id, batch, s_q, heads, context, context_min, kv_dtype, page_size}");
  cmd->add_option("--device", o.device, "CUDA device ordinal")->capture_default_str();
  cmd->add_option("--runs", o.runs, "timed runs per shape (median reported)")->capture_default_str();
  cmd->add_option("--warmup", o.warmup, "untimed runs first")->capture_default_str();
  cmd->add_flag("!--no-flush", o.flush_l2, "do not flush L2 between timed runs");
  cmd->add_flag("!--no-roofline", o.roofline, "skip the roofline probes");
  cmd->add_option("--family", o.family, "force a kernel family: portable | mma (default: the model's choice)");
  cmd->add_option("--tokens-per-tile", o.tokens_per_tile, "override the tile's KV tokens per step");
  cmd->add_option("--stages", o.stages, "override the tile's pipeline stages");
  cmd->add_option("--splits", o.splits, "force the KV split count");
  cmd->add_option("--tag", o.tag, "suffix for the results file name");
  cmd->add_option("--out-dir", o.out_dir, "where the JSON results go (<card>-<date>.json)")->capture_default_str();
  cmd->add_flag("--json", o.json, "print the JSON results instead of the table");
  return cmd;
}

int run_bench(const BenchOptions& o) {
  if (o.runs < 1) throw_invalid("--runs", "must be >= 1", std::to_string(o.runs));
  std::vector<Shape> shapes;
  if (!o.shapes_file.empty()) {
    std::ifstream in(o.shapes_file);
    if (!in) throw_invalid("--shapes", "must name a readable JSON file", o.shapes_file);
    for (const auto& j : nlohmann::json::parse(in)) shapes.push_back(shape_from_json(j));
  } else {
    for (const Shape& s : suite()) {
      if (o.shapes.empty() || std::find(o.shapes.begin(), o.shapes.end(), s.id) != o.shapes.end()) shapes.push_back(s);
    }
    for (const std::string& id : o.shapes) {
      if (std::none_of(shapes.begin(), shapes.end(), [&](const Shape& s) { return s.id == id; })) {
        throw_invalid("--shape", "must be one of S1..S8", id);
      }
    }
  }
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
  runtime::DeviceBuffer flush(device, std::size_t(512) << 20);  // > L2 (50 / 60 MB)
  void* start = device.create_event();
  void* end = device.create_event();

  nlohmann::json results = nlohmann::json::array();
  for (const Shape& shape : shapes) {
    std::fprintf(stderr, "bench: %s: building the problem...\n", shape.id.c_str());
    Spec spec;
    spec.heads = shape.heads;
    spec.s_q = shape.s_q;
    spec.page_size = shape.page_size;
    spec.kv_dtype = shape.kv_dtype;
    reference::ProblemOptions po;
    po.kv_lens = context_lengths(shape);
    po.seed = 0;
    po.fast_fill = true;
    po.spare_pages = 0;
    po.extra_indices = 0;
    const reference::DecodeProblem problem = reference::make_problem(spec, po);
    std::optional<TileConfig> tile;
    if (!o.family.empty() || o.tokens_per_tile > 0 || o.stages > 0 || o.splits > 0) {
      if (!o.family.empty() && o.family != "mma" && o.family != "portable") {
        throw_invalid("--family", "must be portable or mma", o.family);
      }
      tile = o.family.empty() ? tuning::choose_tile(spec, info.target)
                              : tuning::choose_tile(spec, info.target,
                                                    o.family == "mma" ? KernelFamily::mma : KernelFamily::portable);
      if (o.tokens_per_tile > 0) tile->tokens_per_tile = o.tokens_per_tile;
      if (o.stages > 0) tile->stages = o.stages;
      tile->num_splits = o.splits;
      validate(*tile, spec, info.target);
    }
    DeviceProblem d = upload(engine, problem, tile);
    const DecodePlan plan = engine.plan_decode(d.args, tile);

    // JIT costs: compile (or disk load) happens on the first call; time it on the host.
    const auto t0 = std::chrono::steady_clock::now();
    engine.decode(d.args, tile);
    device.synchronize();
    const double first_call_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    for (int i = 0; i < o.warmup; ++i) engine.decode(d.args, tile);
    device.synchronize();
    // Hot dispatch: host time of one call with everything loaded (GPU work not waited for).
    const int dispatches = 200;
    const auto h0 = std::chrono::steady_clock::now();
    for (int i = 0; i < dispatches; ++i) engine.decode(d.args, tile);
    const double dispatch_us =
        std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - h0).count() / dispatches;
    device.synchronize();

    std::vector<float> times;
    for (int i = 0; i < o.runs; ++i) {
      if (o.flush_l2) device.fill_bytes(flush.get(), std::uint8_t(i), flush.size());
      device.record_event(start, nullptr);
      engine.decode(d.args, tile);
      device.record_event(end, nullptr);
      times.push_back(device.elapsed_ms(start, end));
    }
    const double ms = median(times);

    // Error: device output of the first requests against the float32 reference.
    const int checked_requests = std::min(problem.batch, 2);
    const reference::DecodeResult want = reference::decode(problem, checked_requests);
    std::vector<std::uint8_t> raw(d.out.size());
    device.copy_to_host(raw.data(), d.out.get(), raw.size());
    std::vector<float> got(raw.size() / dtype_size(spec.out_dtype));
    for (std::size_t i = 0; i < got.size(); ++i) got[i] = load_element(raw.data(), spec.out_dtype, i);
    const long long checked_rows = (long long)problem.qo_indptr[checked_requests] * spec.heads;
    const reference::Comparison cmp = reference::compare(want, got, nullptr, 1e9, 0, checked_rows);

    double tokens = 0;
    for (int l : problem.kv_lens) tokens += l;
    const double bytes = tokens * spec.qk_dim() * dtype_size(spec.kv_dtype) +
                         double(problem.q.size()) + double(d.out.size());
    const double flops = 2.0 * spec.s_q * spec.heads * tokens * (spec.qk_dim() + spec.v_dim());
    const double gb_s = bytes / (ms * 1e-3) / 1e9;
    const double tflop_s = flops / (ms * 1e-3) / 1e12;
    const double roof_us = o.roofline ? std::max(bytes / (roof.read_gb_s * 1e9), flops / (roof.bf16_tflop_s * 1e12)) * 1e6 : 0;
    const runtime::JitResult& jit = engine.load_decode(plan.spec, plan.tile).jit;
    nlohmann::json r{{"id", shape.id}, {"card", info.name}, {"arch", info.target.arch}, {"date", today()},
                     {"batch", shape.batch}, {"s_q", shape.s_q}, {"heads", shape.heads}, {"page_size", shape.page_size},
                     {"kv_dtype", dtype_name(shape.kv_dtype)}, {"mean_context", tokens / shape.batch},
                     {"time_us", ms * 1e3}, {"gb_s", gb_s}, {"tflop_s", tflop_s},
                     {"pct_bw", o.roofline ? 100.0 * gb_s / roof.read_gb_s : 0.0},
                     {"pct_flops", o.roofline && roof.bf16_tflop_s > 0 ? 100.0 * tflop_s / roof.bf16_tflop_s : 0.0},
                     {"roofline_us", roof_us}, {"pct_roofline", roof_us > 0 ? 100.0 * roof_us / (ms * 1e3) : 0.0},
                     {"max_abs_err", cmp.max_abs_error}, {"non_finite", cmp.non_finite_outputs},
                     {"checked_requests", checked_requests}, {"family", family_name(plan.tile.family)},
                     {"num_splits", plan.tile.num_splits}, {"kernel", jit.key.entry_name()},
                     {"first_call_ms", first_call_ms}, {"compile_ms", jit.code.compile_ms},
                     {"hot_dispatch_us", dispatch_us}, {"l2_flushed", o.flush_l2}, {"runs", o.runs}};
    results.push_back(r);
    std::fprintf(stderr, "bench: %s %.1f us (%.0f%% of roofline), err %.3g\n", shape.id.c_str(), ms * 1e3,
                 r["pct_roofline"].get<double>(), cmp.max_abs_error);
  }
  device.destroy_event(start);
  device.destroy_event(end);

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
  std::cout << fmt::format("{} ({}), {}; roofline: read {:.0f} GB/s, bf16 {:.0f} TFLOP/s; L2 {}\n", info.name,
                           info.target.arch, today(), roof.read_gb_s, roof.bf16_tflop_s,
                           o.flush_l2 ? "flushed" : "not flushed");
  std::cout << fmt::format("{:<4} {:>5} {:>3} {:>4} {:>6} {:<5} {:>4} {:>9} {:>8} {:>7} {:>9} {:>6} {:>9} {:<8} {:>6} {:>8}\n", "id",
                           "batch", "sq", "H", "ctx", "kv", "page", "time us", "GB/s", "TFLOP/s", "roof us", "%roof",
                           "max err", "family", "splits", "disp us");
  for (const auto& r : results) {
    std::cout << fmt::format("{:<4} {:>5} {:>3} {:>4} {:>6.0f} {:<5} {:>4} {:>9.1f} {:>8.0f} {:>7.1f} {:>9.1f} {:>5.0f}% {:>9.2g} {:<8} {:>6} {:>8.1f}\n",
                             r["id"].get<std::string>(), r["batch"].get<int>(), r["s_q"].get<int>(), r["heads"].get<int>(),
                             r["mean_context"].get<double>(), r["kv_dtype"].get<std::string>().substr(0, 5),
                             r["page_size"].get<int>(), r["time_us"].get<double>(), r["gb_s"].get<double>(),
                             r["tflop_s"].get<double>(), r["roofline_us"].get<double>(), r["pct_roofline"].get<double>(),
                             r["max_abs_err"].get<double>(), r["family"].get<std::string>(), r["num_splits"].get<int>(),
                             r["hot_dispatch_us"].get<double>());
  }
  return 0;
}

}  // namespace mlajit::bench
