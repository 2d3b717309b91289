// Spec flags and target resolution shared by the `mlajit` verbs.
#include "tools/spec_flags.hpp"

#include <fstream>

#include "codegen/error.hpp"
#include "runtime/backend.hpp"
#include "tuning/choose.hpp"

namespace mlajit::tools {

void SpecFlags::add_to(CLI::App& app) {
  app.add_option("--op", op, "operation: decode | persistent-decode (metadata kernel + persistent stage 1 + reduce)")->capture_default_str();
  app.add_option("--heads", heads, "query heads, 1..256 (one latent KV head)")->capture_default_str();
  app.add_option("--q-dtype", q_dtype, "q dtype: bf16 | fp16 | fp8_e4m3")->capture_default_str();
  app.add_option("--kv-dtype", kv_dtype, "KV cache dtype: bf16 | fp16 | fp8_e4m3")->capture_default_str();
  app.add_option("--out-dtype", out_dtype, "output dtype: bf16 | fp16 | fp32")->capture_default_str();
  app.add_option("--kv-lora-rank", kv_lora_rank, "latent width = V width (multiple of 16)")->capture_default_str();
  app.add_option("--rope-dim", rope_dim, "rope width of q and cached rows (multiple of 16)")->capture_default_str();
  app.add_option("--page-size", page_size, "tokens per KV page, power of two 1..256")->capture_default_str();
  app.add_option("--sq", s_q, "query tokens per request, 1..8 (MTP / speculative verify > 1)")->capture_default_str();
  app.add_flag("--no-causal", no_causal, "no mask across the s_q query tokens (default: bottom-right causal)");
  app.add_option("--logit-cap", logit_cap, "soft-cap of the scaled logits (0 = off)")->capture_default_str();
  app.add_flag("--lse", lse, "the kernel also writes the natural-log LSE");
  app.add_option("--rope", rope, "fused RoPE of q_pe and each query token's own k_pe: none | neox | gptj")
      ->capture_default_str();
  app.add_option("--spec", spec_file, "read the spec from a JSON file instead of the flags");
  app.add_option("--family", family, "override the tile: kernel family portable | mma | wgmma (sm_90a)");
  app.add_option("--heads-per-cta", heads_per_cta, "override the tile: query rows per CTA");
  app.add_option("--tokens-per-tile", tokens_per_tile, "override the tile: KV tokens per step (8/16/32/64)");
  app.add_option("--warps", warps, "override the tile: warps (wavefronts on AMD) per CTA");
}

Spec SpecFlags::spec() const {
  if (!spec_file.empty()) {
    Spec s = spec_from_json(read_json_file(spec_file, "--spec"));
    validate(s);
    return s;
  }
  Spec s;
  s.op = parse_op(op, "--op");
  s.heads = heads;
  s.q_dtype = parse_dtype(q_dtype, "--q-dtype");
  s.kv_dtype = parse_dtype(kv_dtype, "--kv-dtype");
  s.out_dtype = parse_dtype(out_dtype, "--out-dtype");
  s.kv_lora_rank = kv_lora_rank;
  s.rope_dim = rope_dim;
  s.page_size = page_size;
  s.s_q = s_q;
  s.causal = !no_causal;
  s.logit_cap = logit_cap;
  s.return_lse = lse;
  s.rope = parse_rope_style(rope, "--rope");
  validate(s);
  return s;
}

TileConfig SpecFlags::tile(const Spec& s, const Target& target) const {
  TileConfig t = family.empty() ? tuning::choose_tile(s, target)
                                : tuning::choose_tile(s, target, parse_family(family, "--family"));
  if (heads_per_cta > 0) t.heads_per_cta = heads_per_cta;
  if (tokens_per_tile > 0) t.tokens_per_tile = tokens_per_tile;
  if (warps > 0) t.warps = warps;
  // An overridden mma shape keeps the model's stages where they fit, else the most that do; the
  // wgmma family's stages follow from its tile.
  while (t.family == KernelFamily::mma && t.stages > 2 && decode_shared_bytes(s, t) > target.max_shared_bytes()) --t.stages;
  if (t.family == KernelFamily::wgmma) t.stages = wgmma_stages(t);
  validate(t, s, target);
  return t;
}

// The target: --arch, else the first CUDA device, else an error saying how to name one.
Target resolve_target(const std::string& arch) {
  if (!arch.empty()) return parse_target(arch, "--arch");
  runtime::Backend& cuda = runtime::backend(Backend::cuda);
  if (cuda.device_count() > 0) return cuda.open_device(0)->info().target;
  runtime::Backend& hip = runtime::backend(Backend::hip);
  if (hip.device_count() > 0) return hip.open_device(0)->info().target;
  throw Error(ErrorCode::backend_unavailable,
              "no GPU found to take the target from; name one with --arch (sm_80, sm_90a, gfx90a, gfx942, gfx950)");
}

nlohmann::json read_json_file(const std::string& path, const std::string& option) {
  std::ifstream in(path);
  if (!in) throw_invalid(option, "must name a readable JSON file", path);
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw_invalid(option, std::string("must hold valid JSON: ") + e.what(), path);
  }
}

}  // namespace mlajit::tools
