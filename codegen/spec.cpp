// Validation, canonical JSON and names for Spec and TileConfig.
#include "codegen/spec.hpp"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "codegen/error.hpp"

namespace mlajit {

std::string_view op_name(Op op) {
  switch (op) {
    case Op::decode: return "decode";
    case Op::persistent_decode: return "persistent-decode";
  }
  return "?";
}

Op parse_op(std::string_view text, std::string_view argument) {
  for (Op op : {Op::decode, Op::persistent_decode}) {
    if (text == op_name(op)) return op;
  }
  throw_invalid(std::string(argument), "one of: decode, persistent-decode", "'" + std::string(text) + "'");
}

std::string_view rope_style_name(RopeStyle style) {
  switch (style) {
    case RopeStyle::none: return "none";
    case RopeStyle::neox: return "neox";
    case RopeStyle::gptj: return "gptj";
  }
  return "?";
}

RopeStyle parse_rope_style(std::string_view text, std::string_view argument) {
  for (RopeStyle style : {RopeStyle::none, RopeStyle::neox, RopeStyle::gptj}) {
    if (text == rope_style_name(style)) return style;
  }
  throw_invalid(std::string(argument), "one of: none, neox, gptj", "'" + std::string(text) + "'");
}

namespace {

bool is_power_of_two(int v) { return v > 0 && (v & (v - 1)) == 0; }

void require_range(const char* name, long long value, long long lo, long long hi) {
  if (value < lo || value > hi) {
    throw_invalid(name, fmt::format("must be in [{}, {}]", lo, hi), std::to_string(value));
  }
}

void require_multiple(const char* name, int value, int step) {
  if (value % step != 0) {
    throw_invalid(name, fmt::format("must be a multiple of {}", step), std::to_string(value));
  }
}

int ceil_div(int a, int b) { return (a + b - 1) / b; }

}  // namespace

void validate(const Spec& spec) {
  require_range("heads", spec.heads, 1, 256);
  require_range("kv_lora_rank", spec.kv_lora_rank, 16, 1024);
  require_multiple("kv_lora_rank", spec.kv_lora_rank, 16);
  require_range("rope_dim", spec.rope_dim, 0, 256);
  require_multiple("rope_dim", spec.rope_dim, 16);
  if (!is_power_of_two(spec.page_size) || spec.page_size > 256) {
    throw_invalid("page_size", "must be a power of two in [1, 256]", std::to_string(spec.page_size));
  }
  require_range("s_q", spec.s_q, 1, 8);
  if (!std::isfinite(spec.logit_cap) || spec.logit_cap < 0.0f) {
    throw_invalid("logit_cap", "must be finite and >= 0 (0 turns the soft-cap off)",
                  fmt::format("{}", spec.logit_cap));
  }
  if (spec.q_dtype == DType::fp32) throw_invalid("q_dtype", "must be bf16, fp16 or fp8_e4m3", "fp32");
  if (spec.kv_dtype == DType::fp32) throw_invalid("kv_dtype", "must be bf16, fp16 or fp8_e4m3", "fp32");
  if (spec.out_dtype == DType::fp8_e4m3) {
    throw_invalid("out_dtype", "must be bf16, fp16 or fp32", "fp8_e4m3");
  }
  if (spec.rope != RopeStyle::none && spec.rope_dim == 0) {
    throw_invalid("rope", "needs rope_dim > 0 (there is no rope part to rotate)",
                  std::string(rope_style_name(spec.rope)));
  }
}

std::string_view family_name(KernelFamily f) {
  switch (f) {
    case KernelFamily::mma: return "mma";
    case KernelFamily::wgmma: return "wgmma";
    case KernelFamily::portable: break;
  }
  return "portable";
}

KernelFamily parse_family(std::string_view text, std::string_view argument) {
  for (KernelFamily f : {KernelFamily::portable, KernelFamily::mma, KernelFamily::wgmma}) {
    if (text == family_name(f)) return f;
  }
  throw_invalid(std::string(argument), "must be portable, mma or wgmma", "'" + std::string(text) + "'");
}

namespace {

// The matrix-core families' operand rule: a 16-bit cache needs q of the same dtype; an fp8 (e4m3)
// cache is widened per tile to the mma dtype (mma_dtype), so q may be bf16, fp16 or fp8.
bool matrix_core_dtypes(const Spec& spec) {
  const bool sixteen_bit = spec.q_dtype == spec.kv_dtype && (spec.q_dtype == DType::bf16 || spec.q_dtype == DType::fp16);
  return sixteen_bit || spec.kv_dtype == DType::fp8_e4m3;
}

}  // namespace

bool mma_family_supports(const Spec& spec, const Target& target) {
  // Fused RoPE with an fp8 cache stays portable.
  const bool fp8_rope = spec.kv_dtype == DType::fp8_e4m3 && spec.rope != RopeStyle::none;
  return target.backend == Backend::cuda && target.sm_version() >= 80 && matrix_core_dtypes(spec) && !fp8_rope &&
         spec.qk_dim() % 64 == 0 && spec.v_dim() % 128 == 0;
}

bool wgmma_family_supports(const Spec& spec, const Target& target) {
  if (!(target.backend == Backend::cuda && target.arch == "sm_90a" && matrix_core_dtypes(spec) &&
        spec.rope == RopeStyle::none && spec.qk_dim() % 64 == 0 && spec.v_dim() % 64 == 0)) {
    return false;
  }
  // Two 64-token tiles of the cache must fit with the smallest CTA (8 rows): kv_lora_rank 512
  // leaves room for 32 rows; about 800 and wider do not fit at all.
  TileConfig smallest;
  smallest.family = KernelFamily::wgmma;
  smallest.heads_per_cta = 8;
  smallest.tokens_per_tile = 64;
  smallest.warps = 12;
  smallest.stages = 2;
  return decode_shared_bytes(spec, smallest) <= target.max_shared_bytes();
}

std::vector<KernelFamily> families_serving(const Spec& spec, const Target& target) {
  std::vector<KernelFamily> families = {KernelFamily::portable};
  if (mma_family_supports(spec, target)) families.push_back(KernelFamily::mma);
  if (wgmma_family_supports(spec, target)) families.push_back(KernelFamily::wgmma);
  return families;
}

DType mma_dtype(const Spec& spec, KernelFamily family) {
  if (spec.q_dtype == DType::fp16) return DType::fp16;
  // wgmma widens an fp8 cache in its consumers' critical path: e4m3 -> fp16 is one conversion per
  // pair, e4m3 -> bf16 four (through fp16 and fp32). q is brought into fp16's range (wgmma.cuh).
  if (family == KernelFamily::wgmma && spec.kv_dtype == DType::fp8_e4m3) return DType::fp16;
  return DType::bf16;
}

int decode_ctas_per_sm(const Spec& spec, const TileConfig& tile, const Target& target) {
  if (tile.family != KernelFamily::mma) return 1;  // wgmma: one 384-thread CTA takes the SM
  // 64 rows per CTA keep 128 fp32 accumulators per thread: more than the 128 registers a thread
  // may have at two 256-thread CTAs per SM. (32 rows never fit two per SM by shared memory.)
  if (tile.heads_per_cta > 32) return 1;
  // Per-SM shared memory is the per-CTA opt-in limit plus 1 KiB reserved per CTA on sm_80/90.
  const int per_sm = target.max_shared_bytes() + 1024;
  return std::clamp(per_sm / (decode_shared_bytes(spec, tile) + 1024), 1, 2);
}

bool wgmma_wide_tile_supports(const Spec& spec) {
  return spec.kv_dtype != DType::fp8_e4m3 && spec.v_dim() == 512 && spec.qk_dim() - spec.v_dim() >= 64;
}

int wgmma_stages(const TileConfig& tile) { return tile.tokens_per_tile == 32 ? 4 : 2; }

int decode_shared_bytes(const Spec& spec, const TileConfig& tile) {
  if (tile.family == KernelFamily::wgmma && tile.heads_per_cta == 64) {
    // Must equal WgmmaWideLayout::kTotalBytes (templates/decode/wgmma.cuh): the ring, Q of 64
    // rows, two mbarriers per stage, the two consumers' row maxima, 1 KiB of alignment slack.
    return tile.stages * tile.tokens_per_tile * spec.qk_dim() * 2 + 64 * spec.qk_dim() * 2 + 2 * tile.stages * 8 +
           2 * 64 * 4 + 1024;
  }
  if (tile.family == KernelFamily::wgmma) {
    // Must equal WgmmaDecodeLayout::kTotalBytes in templates/decode/wgmma.cuh: the ring's slots
    // (16-bit cache: `stages` widened tiles of tokens_per_tile rows, qk_dim / 64 swizzled blocks of
    // 128 B a row; fp8 cache: raw tiles, 4 slots when consumer 1's accumulators - the hand-off -
    // fit one, else 2 slots of the larger of the two), Q (rows x qk_dim, 16 bits), P of each
    // consumer (rows x 64 tokens, 16 bits), per consumer 4 warps' and 2 final fp32 per row, two
    // mbarriers per slot, and 1 KiB to align the swizzled base to 1024 B.
    const int rows = tile.heads_per_cta;
    int slots = tile.stages;
    int slot_bytes = tile.tokens_per_tile * spec.qk_dim() * 2;
    if (spec.kv_dtype == DType::fp8_e4m3) {
      const int raw_bytes = tile.tokens_per_tile * spec.qk_dim();
      const int handoff_bytes = spec.v_dim() / 64 * (rows / 2) * 128 * 4;
      slots = handoff_bytes <= raw_bytes ? 4 : 2;
      slot_bytes = std::max(raw_bytes, handoff_bytes);
    }
    return slots * slot_bytes + rows * spec.qk_dim() * 2 + 2 * rows * 128 + 2 * (4 + 2) * rows * 4 + 2 * slots * 8 +
           1024;
  }
  if (tile.family == KernelFamily::mma) {
    // Must equal MmaDecodeLayout::kTotalBytes in templates/decode/mma.cuh: the KV ring, the
    // widened tile (fp8 cache only), Q, the S partials (kKSplit = 4 / M tiles slices of rows x
    // (tile + 8) fp32: 64 rows' worth at every heads_per_cta), P in 16 bits (rows x (tile + 8))
    // and three fp32 per row. 16-bit ring rows are padded by 16 B like Q; fp8 ring rows are not.
    const int rows = tile.heads_per_cta;
    const int row_bytes = (spec.qk_dim() + 8) * 2;
    const bool fp8_cache = spec.kv_dtype == DType::fp8_e4m3;
    const int ring_row_bytes = fp8_cache ? spec.qk_dim() : row_bytes;
    const int wide_bytes = fp8_cache ? tile.tokens_per_tile * row_bytes : 0;
    const int stride = tile.tokens_per_tile + 8;
    const int k_split = 4 / std::max(1, rows / 16);
    return tile.stages * tile.tokens_per_tile * ring_row_bytes + wide_bytes + rows * row_bytes +
           k_split * rows * stride * 4 + rows * stride * 2 + 3 * rows * 4;
  }
  const int rows = tile.heads_per_cta;
  const int q_bytes = rows * spec.qk_dim() * 4;  // q staged as pre-scaled fp32
  const int kv_bytes = tile.tokens_per_tile * spec.qk_dim() * int(dtype_size(spec.kv_dtype));
  const int score_bytes = rows * tile.tokens_per_tile * 4;
  const int row_state_bytes = rows * 3 * 4;  // running max, running sum, rescale factor
  return q_bytes + kv_bytes + score_bytes + row_state_bytes;
}

namespace {

void validate_mma(const TileConfig& tile, const Spec& spec, const Target& target) {
  if (!mma_family_supports(spec, target)) {
    throw_invalid("family", "mma needs an NVIDIA sm_80+ target, q_dtype == kv_dtype in {bf16, fp16} or an "
                  "fp8_e4m3 kv_dtype without fused rope, (kv_lora_rank + rope_dim) % 64 == 0 and "
                  "kv_lora_rank % 128 == 0", "mma");
  }
  if (tile.heads_per_cta != 16 && tile.heads_per_cta != 32 && tile.heads_per_cta != 64) {
    throw_invalid("heads_per_cta", "must be 16, 32 or 64 for the mma family (1, 2 or 4 mma M tiles)",
                  std::to_string(tile.heads_per_cta));
  }
  if (tile.warps != 8) throw_invalid("warps", "must be 8 for the mma family", std::to_string(tile.warps));
  if (tile.tokens_per_tile != 32 && tile.tokens_per_tile != 64) {
    throw_invalid("tokens_per_tile", "must be 32 or 64 for the mma family", std::to_string(tile.tokens_per_tile));
  }
  require_range("stages", tile.stages, 2, 4);
  require_range("num_splits", tile.num_splits, 0, 4096);
  const int shared = decode_shared_bytes(spec, tile);
  if (shared > target.max_shared_bytes()) {
    throw_invalid("stages", fmt::format("tile needs {} B of shared memory, {} allows {} B; lower stages, "
                                        "tokens_per_tile or heads_per_cta", shared, target.arch, target.max_shared_bytes()),
                  std::to_string(tile.stages));
  }
}

void validate_wgmma(const TileConfig& tile, const Spec& spec, const Target& target) {
  if (!wgmma_family_supports(spec, target)) {
    throw_invalid("family", "wgmma needs the sm_90a target, q_dtype == kv_dtype in {bf16, fp16} or an fp8_e4m3 "
                  "kv_dtype, no fused rope, two 64-token tiles in shared memory, "
                  "kv_lora_rank % 64 == 0 and rope_dim % 64 == 0", "wgmma");
  }
  const bool wide = tile.heads_per_cta == 64;
  if (!wide && (tile.heads_per_cta % 8 != 0 || tile.heads_per_cta < 8 || tile.heads_per_cta > 32)) {
    throw_invalid("heads_per_cta", "must be 8, 16, 24, 32 (the wgmma N of one CTA) or 64 (the wide tile) for the wgmma family",
                  std::to_string(tile.heads_per_cta));
  }
  if (wide && !wgmma_wide_tile_supports(spec)) {
    throw_invalid("heads_per_cta", "64 (the wide wgmma tile) needs a 16-bit cache, kv_lora_rank 512 and rope_dim >= 64", "64");
  }
  const int warps = 12;
  if (tile.warps != warps) {
    throw_invalid("warps", fmt::format("must be {} for this wgmma tile ({})", warps,
                                       wide ? "2 consumer warpgroups + a producer warpgroup" : "3 warpgroups"),
                  std::to_string(tile.warps));
  }
  if (tile.tokens_per_tile != 64 && !(wide && tile.tokens_per_tile == 32)) {
    throw_invalid("tokens_per_tile", "must be 64 for the wgmma family (or 32 with the wide tile)",
                  std::to_string(tile.tokens_per_tile));
  }
  // Narrow tiles: one ring slot per consumer; the wide tile: a pair of tiles in flight while the
  // consumers compute another (32 tokens) or none (64 tokens).
  const int stages = wgmma_stages(tile);
  if (tile.stages != stages) {
    throw_invalid("stages", fmt::format("must be {} for this wgmma tile ({}-token tiles)", stages, tile.tokens_per_tile),
                  std::to_string(tile.stages));
  }
  require_range("num_splits", tile.num_splits, 0, 4096);
  const int shared = decode_shared_bytes(spec, tile);
  if (shared > target.max_shared_bytes()) {
    throw_invalid("heads_per_cta", fmt::format("tile needs {} B of shared memory, {} allows {} B", shared, target.arch,
                                               target.max_shared_bytes()),
                  std::to_string(tile.heads_per_cta));
  }
}

}  // namespace

void validate(const TileConfig& tile, const Spec& spec, const Target& target) {
  if (tile.family == KernelFamily::mma) return validate_mma(tile, spec, target);
  if (tile.family == KernelFamily::wgmma) return validate_wgmma(tile, spec, target);
  require_range("heads_per_cta", tile.heads_per_cta, 1, 64);
  const int t = tile.tokens_per_tile;
  if (t != 8 && t != 16 && t != 32 && t != 64) {
    throw_invalid("tokens_per_tile", "must be one of 8, 16, 32, 64", std::to_string(t));
  }
  if (!is_power_of_two(tile.warps) || tile.warps > 16) {
    throw_invalid("warps", "must be a power of two in [1, 16]", std::to_string(tile.warps));
  }
  const int threads = tile.warps * target.warp_size();
  if (threads > 1024) {
    throw_invalid("warps", fmt::format("warps x {} lanes must be <= 1024 threads on {}",
                                       target.warp_size(), target.arch),
                  std::to_string(tile.warps));
  }
  if (tile.stages != 1) {
    throw_invalid("stages", "the portable decode kernel supports 1 stage", std::to_string(tile.stages));
  }
  require_range("num_splits", tile.num_splits, 0, 4096);
  const int accumulators = tile.heads_per_cta * ceil_div(spec.v_dim(), threads);
  if (accumulators > 128) {
    throw_invalid("heads_per_cta",
                  fmt::format("heads_per_cta x ceil(kv_lora_rank / threads) must be <= 128 "
                              "accumulators per thread (kv_lora_rank {}, {} threads)",
                              spec.v_dim(), threads),
                  std::to_string(tile.heads_per_cta));
  }
  const int shared = decode_shared_bytes(spec, tile);
  if (shared > target.max_shared_bytes()) {
    throw_invalid("tokens_per_tile",
                  fmt::format("tile needs {} B of shared memory, {} allows {} B; lower "
                              "heads_per_cta or tokens_per_tile",
                              shared, target.arch, target.max_shared_bytes()),
                  std::to_string(t));
  }
}

Spec canonical(Spec spec) {
  if (spec.s_q == 1) spec.causal = true;  // the mask is a no-op for one query token
  return spec;
}

nlohmann::json to_json(const Spec& s) {
  const Spec spec = canonical(s);
  return nlohmann::json{{"op", op_name(spec.op)},
                        {"q_dtype", dtype_name(spec.q_dtype)},
                        {"kv_dtype", dtype_name(spec.kv_dtype)},
                        {"out_dtype", dtype_name(spec.out_dtype)},
                        {"heads", spec.heads},
                        {"kv_lora_rank", spec.kv_lora_rank},
                        {"rope_dim", spec.rope_dim},
                        {"page_size", spec.page_size},
                        {"s_q", spec.s_q},
                        {"causal", spec.causal},
                        {"logit_cap", spec.logit_cap},
                        {"return_lse", spec.return_lse},
                        {"rope", rope_style_name(spec.rope)}};
}

nlohmann::json kernel_json(const TileConfig& tile) {
  return nlohmann::json{{"family", family_name(tile.family)},
                        {"heads_per_cta", tile.heads_per_cta},
                        {"tokens_per_tile", tile.tokens_per_tile},
                        {"warps", tile.warps},
                        {"stages", tile.stages}};
}

nlohmann::json to_json(const TileConfig& tile) {
  nlohmann::json j = kernel_json(tile);
  j["num_splits"] = tile.num_splits;
  return j;
}

namespace {

template <class T>
void read_field(const nlohmann::json& j, const char* key, T& out) {
  auto it = j.find(key);
  if (it == j.end()) return;
  try {
    out = it->get<T>();
  } catch (const nlohmann::json::exception&) {
    throw_invalid(key, "has the wrong JSON type", it->dump());
  }
}

void reject_unknown_keys(const nlohmann::json& j, const nlohmann::json& known, const char* what) {
  if (!j.is_object()) throw_invalid(what, "must be a JSON object", j.dump());
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (!known.contains(it.key())) {
      throw_invalid(what, fmt::format("unknown key '{}'; known keys: {}", it.key(), known.dump()),
                    j.dump());
    }
  }
}

}  // namespace

Spec spec_from_json(const nlohmann::json& j) {
  nlohmann::json known = to_json(Spec{});
  reject_unknown_keys(j, known, "spec");
  Spec spec;
  std::string text;
  if (j.contains("op")) { read_field(j, "op", text); spec.op = parse_op(text); }
  if (j.contains("q_dtype")) { read_field(j, "q_dtype", text); spec.q_dtype = parse_dtype(text, "q_dtype"); }
  if (j.contains("kv_dtype")) { read_field(j, "kv_dtype", text); spec.kv_dtype = parse_dtype(text, "kv_dtype"); }
  if (j.contains("out_dtype")) { read_field(j, "out_dtype", text); spec.out_dtype = parse_dtype(text, "out_dtype"); }
  if (j.contains("rope")) { read_field(j, "rope", text); spec.rope = parse_rope_style(text, "rope"); }
  read_field(j, "heads", spec.heads);
  read_field(j, "kv_lora_rank", spec.kv_lora_rank);
  read_field(j, "rope_dim", spec.rope_dim);
  read_field(j, "page_size", spec.page_size);
  read_field(j, "s_q", spec.s_q);
  read_field(j, "causal", spec.causal);
  read_field(j, "logit_cap", spec.logit_cap);
  read_field(j, "return_lse", spec.return_lse);
  return spec;
}

TileConfig tile_from_json(const nlohmann::json& j) {
  reject_unknown_keys(j, to_json(TileConfig{}), "tile");
  TileConfig tile;
  if (j.contains("family")) {
    std::string family;
    read_field(j, "family", family);
    tile.family = parse_family(family);
  }
  read_field(j, "heads_per_cta", tile.heads_per_cta);
  read_field(j, "tokens_per_tile", tile.tokens_per_tile);
  read_field(j, "warps", tile.warps);
  read_field(j, "stages", tile.stages);
  read_field(j, "num_splits", tile.num_splits);
  return tile;
}

std::string kernel_base_name(const Spec& s, const TileConfig& tile) {
  const Spec spec = canonical(s);
  std::string name = fmt::format("mla_{}_q-{}_kv-{}_o-{}_h{}_sq{}{}_ps{}_d{}-{}", op_name(spec.op),
                                 dtype_name(spec.q_dtype), dtype_name(spec.kv_dtype),
                                 dtype_name(spec.out_dtype), spec.heads, spec.s_q,
                                 spec.causal ? "" : "nc", spec.page_size, spec.kv_lora_rank,
                                 spec.rope_dim);
  if (spec.logit_cap > 0.0f) name += fmt::format("_cap{}", spec.logit_cap);
  if (spec.return_lse) name += "_lse";
  if (spec.rope != RopeStyle::none) name += fmt::format("_rope-{}", rope_style_name(spec.rope));
  name += fmt::format("_{}_hc{}_bn{}_w{}", tile.family == KernelFamily::portable ? "simt" : family_name(tile.family), tile.heads_per_cta,
                      tile.tokens_per_tile, tile.warps);
  if (tile.stages > 1) name += fmt::format("_st{}", tile.stages);
  return name;
}

}  // namespace mlajit
