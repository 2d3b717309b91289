// Renders the decode stub for one (Spec, TileConfig, Target) and lists the headers it needs.
#include "codegen/generator.hpp"

#include <set>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "codegen/render.hpp"
#include "templates/decode/params.cuh"
#include "templates/embedded.hpp"

namespace mlajit {

namespace {

constexpr std::string_view k_config_template = "decode/config.cu.in";
constexpr std::string_view k_stub_template = "decode/stub.cu.in";
constexpr std::string_view k_persistent_template = "decode/persistent.cu.in";
// decode/combine.cuh: 8 warps a CTA (4 on AMD's 64-wide wavefronts), 1-8 a row. The minimum
// CTAs per SM in __launch_bounds__ lets ptxas give a thread the registers for its loads in flight
// (8 vectors of 16 B) while three CTAs fit an SM (the persistent reduce's grid is mostly CTAs that
// exit at once). Changing either value changes the rendered stub, whose hash is part of the kernel
// key (runtime/jit.cpp), so cached kernels built with the old value are not served.
constexpr int k_combine_threads = 256;
constexpr int k_combine_min_blocks = 3;
// The persistent reduce waits for its tile inside merge_partials, after reading the slots, and
// holds the first partials' rows across that wait: at 3 CTAs an SM (80 registers) ptxas spills.
constexpr int k_reduce_min_blocks = 2;
constexpr int k_schedule_threads = 256;

std::string_view kernel_type(DType t) { return dtype_name(t); }

}  // namespace

std::vector<std::string> Source::entries() const {
  std::vector<std::string> names;
  for (const std::string& e : {stage1_entry, combine_entry, schedule_entry}) {
    if (!e.empty()) names.push_back(e);
  }
  return names;
}

int Source::combine_ways(int partials) const {
  int ways = 1;
  while (ways < combine_warps && 2 * ways < partials) ways *= 2;
  return ways;
}

unsigned Source::combine_ctas(int rows, int ways) const {
  const int rows_per_cta = combine_warps / ways;
  return unsigned((rows + rows_per_cta - 1) / rows_per_cta);
}

std::string Source::template_digest() const {
  std::string digest = fmt::format("{}={};{}={}", stub_template, templates::file(stub_template).sha256,
                                   k_config_template, templates::file(k_config_template).sha256);
  for (const SourceHeader& h : headers) digest += fmt::format(";{}={}", h.include_name, h.sha256);
  return digest;
}

Source generate(const Spec& spec_in, const TileConfig& tile, const Target& target) {
  validate(spec_in);
  validate(tile, spec_in, target);
  const Spec spec = canonical(spec_in);

  const bool persistent = spec.op == Op::persistent_decode;
  Source source;
  source.kernel_name = kernel_base_name(spec, tile);
  source.stub_template = std::string(persistent ? k_persistent_template : k_stub_template);
  source.stage1_entry = persistent ? "mla_decode_persistent" : "mla_decode_stage1";
  source.combine_entry = persistent ? "mla_decode_persistent_reduce" : "mla_decode_combine";
  source.stage1_threads = tile.warps * target.warp_size();
  source.stage1_shared_bytes = decode_shared_bytes(spec, tile);
  source.combine_threads = k_combine_threads;
  source.combine_warps = k_combine_threads / target.warp_size();
  if (persistent) {
    source.schedule_entry = "mla_decode_schedule";
    source.schedule_threads = k_schedule_threads;
    source.schedule_shared_bytes = kMljScheduleSharedIntsPerThread * k_schedule_threads * int(sizeof(int));
  }

  const std::string platform = target.backend == Backend::cuda ? "nvidia" : "amd";
  const std::string family(family_name(tile.family));
  const std::string stage1_header = "decode/" + family + ".cuh";
  for (std::string path : {"platform/" + platform + ".cuh", std::string("decode/params.cuh"),
                           std::string("decode/numeric.cuh"), std::string("decode/fp8.cuh"), std::string("decode/fp8_layout.cuh"), std::string("decode/rope.cuh"), std::string("decode/trace.cuh"),
                           std::string("decode/schedule.cuh"), std::string("decode/work.cuh"), stage1_header, std::string("decode/combine.cuh")}) {
    const templates::TemplateFile& f = templates::file(path);
    source.headers.push_back(SourceHeader{path, f.text, f.sha256});
  }

  const std::map<std::string, std::string> config_values = {
      {"generator_version", std::to_string(kGeneratorVersion)},
      {"kernel_name", source.kernel_name},
      {"spec_json", to_json(spec).dump()},
      {"tile_json", kernel_json(tile).dump()},
      {"platform", platform},
      {"q_type", std::string(kernel_type(spec.q_dtype))},
      {"kv_type", std::string(kernel_type(spec.kv_dtype))},
      {"out_type", std::string(kernel_type(spec.out_dtype))},
      {"heads", std::to_string(spec.heads)},
      {"kv_lora_rank", std::to_string(spec.kv_lora_rank)},
      {"rope_dim", std::to_string(spec.rope_dim)},
      {"page_size", std::to_string(spec.page_size)},
      {"causal", spec.causal ? "true" : "false"},
      {"logit_cap", fmt::format("{:.9g}", spec.logit_cap)},
      {"write_lse", spec.return_lse ? "true" : "false"},
      {"rope", std::string(rope_style_name(spec.rope))},
      {"heads_per_cta", std::to_string(tile.heads_per_cta)},
      {"tokens_per_tile", std::to_string(tile.tokens_per_tile)},
      {"warps", std::to_string(tile.warps)},
      {"stages", std::to_string(tile.stages)},
      {"mma_bf16", mma_dtype(spec, tile.family) == DType::bf16 ? "true" : "false"},
      {"shared_bytes", std::to_string(source.stage1_shared_bytes)},
      {"stage1_header", stage1_header},
      {"combine_threads", std::to_string(source.combine_threads)},
      {"combine_min_blocks", std::to_string(persistent ? k_reduce_min_blocks : k_combine_min_blocks)},
  };
  std::map<std::string, std::string> values = {
      {"config", render(templates::file(k_config_template).text, config_values, k_config_template)},
      {"min_blocks", std::to_string(decode_ctas_per_sm(spec, tile, target))},
      {"threads", std::to_string(source.stage1_threads)},
      {"combine_threads", std::to_string(source.combine_threads)},
      {"stage1_entry", source.stage1_entry},
      {"combine_entry", source.combine_entry},
  };
  if (persistent) {
    values["stage1_function"] = "decode_persistent_" + family;
    values["schedule_entry"] = source.schedule_entry;
    values["schedule_threads"] = std::to_string(source.schedule_threads);
  } else {
    values["stage1_function"] = "decode_stage1_" + family;
  }
  source.text = render(templates::file(source.stub_template).text, values, source.stub_template);
  return source;
}

namespace {

// Inlines known headers in place of their #include lines, each once (as #pragma once would).
void flatten_into(std::string_view text, const Source& source, std::set<std::string>& seen,
                  std::string& out) {
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    const std::string_view line = text.substr(pos, end - pos);
    const SourceHeader* header = nullptr;
    for (const SourceHeader& h : source.headers) {
      if (line == "#include \"" + h.include_name + "\"") header = &h;
    }
    if (header == nullptr) {
      out.append(line);
      out += '\n';
    } else if (seen.insert(header->include_name).second) {
      out += "// ---- begin " + header->include_name + " ----\n";
      flatten_into(header->text, source, seen, out);
      out += "// ---- end " + header->include_name + " ----\n";
    }
    pos = end + 1;
  }
}

}  // namespace

std::string flatten(const Source& source) {
  std::string out;
  std::set<std::string> seen;
  flatten_into(source.text, source, seen, out);
  return out;
}

}  // namespace mlajit
