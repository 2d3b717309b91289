// The spec flags shared by every `mlajit` verb that takes one kernel (gen, compile, verify, cache
// explain), and how a verb picks its target.
#pragma once

#include <string>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "codegen/spec.hpp"
#include "codegen/target.hpp"

namespace mlajit::tools {

// Spec flags shared by every verb that takes a spec.
struct SpecFlags {
  std::string op = "decode";
  int heads = 16;
  std::string q_dtype = "bf16", kv_dtype = "bf16", out_dtype = "bf16", rope = "none";
  int kv_lora_rank = 512, rope_dim = 64, page_size = 1, s_q = 1;
  bool no_causal = false, lse = false;
  float logit_cap = 0.0f;
  std::string spec_file;
  // Tile overrides (0 = the tuning model's choice).
  std::string family;  // empty = the model's family
  int heads_per_cta = 0, tokens_per_tile = 0, warps = 0;

  void add_to(CLI::App& app);
  Spec spec() const;
  // The tuning model's tile for `s` on `target`, with the overrides applied; validated.
  TileConfig tile(const Spec& s, const Target& target) const;
};

// The target: --arch, else the first CUDA device, else an error saying how to name one.
Target resolve_target(const std::string& arch);

// The JSON document in the file an option names; invalid_argument naming the option otherwise.
nlohmann::json read_json_file(const std::string& path, const std::string& option);

}  // namespace mlajit::tools
