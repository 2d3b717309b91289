// Spec (the problem a kernel solves) and TileConfig (the knobs that shape it), with validation
// that names the argument and the constraint, and canonical JSON used for keys.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "codegen/dtype.hpp"
#include "codegen/target.hpp"

namespace mlajit {

// Kernel families of DESIGN.md generated so far: decode (grid stage 1 + split-K combine) and
// persistent decode (metadata kernel + persistent stage 1 + reduce, decode/schedule.cuh); both
// compute the same decode (mla-semantics §1.2-1.5). "decode" | "persistent-decode".
enum class Op { decode, persistent_decode };

std::string_view op_name(Op op);
Op parse_op(std::string_view text, std::string_view argument = "op");

// Fused RoPE (mla-semantics §2): none, NeoX rotate-half (pairs i, i + rope_dim/2) or GPT-J
// interleaved (pairs 2i, 2i + 1).
enum class RopeStyle { none, neox, gptj };

std::string_view rope_style_name(RopeStyle style);
RopeStyle parse_rope_style(std::string_view text, std::string_view argument = "rope");

// Absorbed MLA decode: q [total_q, heads, kv_lora_rank + rope_dim] against a paged latent cache
// [pages, page_size, 1, kv_lora_rank + rope_dim]; out [total_q, heads, kv_lora_rank].
struct Spec {
  Op op = Op::decode;
  DType q_dtype = DType::bf16;
  DType kv_dtype = DType::bf16;
  DType out_dtype = DType::bf16;
  int heads = 16;            // query heads (one latent KV head)
  int kv_lora_rank = 512;    // latent width = V width
  int rope_dim = 64;         // rope part of q / cached rows
  int page_size = 1;         // tokens per page, power of two 1..256
  int s_q = 1;               // max query tokens per request (1 = decode, >1 = MTP / verify)
  bool causal = true;        // bottom-right aligned mask across the s_q tokens
  float logit_cap = 0.0f;    // cap * tanh(s / cap) on scaled logits; 0 = off
  bool return_lse = false;   // also write the natural-log LSE [total_q, heads] (fp32)
  RopeStyle rope = RopeStyle::none;  // rotate q_pe and the query tokens' own k_pe in the kernel

  int qk_dim() const { return kv_lora_rank + rope_dim; }
  int v_dim() const { return kv_lora_rank; }
  bool operator==(const Spec&) const = default;
};

// Kernel families for stage 1 of decode: the portable SIMT kernel (every target, every spec),
// the matrix-core kernel (NVIDIA sm_80+: mma.sync + ldmatrix + cp.async) and the Hopper kernel
// (sm_90a: warp-specialised producer / consumer warpgroups, wgmma, mbarrier pipeline).
enum class KernelFamily { portable, mma, wgmma };

std::string_view family_name(KernelFamily f);
KernelFamily parse_family(std::string_view text, std::string_view argument = "family");

// Shape of the generated kernel plus the split count used at launch.
struct TileConfig {
  KernelFamily family = KernelFamily::portable;
  int heads_per_cta = 16;    // query rows (token x head pairs) one CTA owns
  int tokens_per_tile = 32;  // KV tokens staged in shared memory per step
  int warps = 8;             // warps (wavefronts on AMD) per CTA
  int stages = 1;            // shared-memory pipeline depth
  // Launch parameter, not a kernel shape: one code object serves every split count, so it is
  // left out of the kernel key (see kernel_json). 0 = let tuning choose.
  int num_splits = 0;

  bool operator==(const TileConfig&) const = default;
};

// Throws invalid_argument naming the field and its constraint.
void validate(const Spec& spec);
// Checks the config against the spec and what the target's hardware allows.
void validate(const TileConfig& tile, const Spec& spec, const Target& target);

// Shared memory the decode stage-1 kernel of tile.family needs, in bytes (the generated kernel
// static_asserts the same number).
int decode_shared_bytes(const Spec& spec, const TileConfig& tile);
// CTAs of stage 1 that fit on one SM / CU at once by shared memory (the kernel is compiled
// with this as its minimum-blocks launch bound, so registers are sized for it too).
int decode_ctas_per_sm(const Spec& spec, const TileConfig& tile, const Target& target);
// Whether the matrix-core family can serve this spec on this target (dtypes, dims, arch).
bool mma_family_supports(const Spec& spec, const Target& target);
// Whether the Hopper family can serve this spec on this target (sm_90a, 16-bit q == cache dtype or
// an fp8 cache, no fused RoPE, qk_dim and v_dim multiples of 64, two 64-token cache tiles fit shared memory).
bool wgmma_family_supports(const Spec& spec, const Target& target);
// What the wgmma family's wide tile (64 rows per CTA, two consumer warpgroups over 256 V columns
// each, P written over the rope block) needs on top of wgmma_family_supports: a 16-bit cache,
// kv_lora_rank 512 and rope_dim >= 64.
bool wgmma_wide_tile_supports(const Spec& spec);
// The wgmma family's ring slots for a tile: 2 (64-token tiles), 4 (the wide tile's 32-token tiles).
int wgmma_stages(const TileConfig& tile);
// Every kernel family that can serve the spec on the target: portable, then mma and wgmma where
// supported.
std::vector<KernelFamily> families_serving(const Spec& spec, const Target& target);
// The 16-bit operand dtype of a matrix-core family's math (mma, wgmma): fp16 when q is fp16 or
// when wgmma reads an fp8 cache (a bf16 q is then scaled into fp16's range by a power of two per
// CTA), else bf16. An fp8 q or cache is widened to it exactly: every e4m3 value is a bf16 / fp16
// normal or zero.
DType mma_dtype(const Spec& spec, KernelFamily family);

// Canonical forms: equal problems give byte-identical JSON (sorted keys, normalised fields).
Spec canonical(Spec spec);
nlohmann::json to_json(const Spec& spec);
nlohmann::json to_json(const TileConfig& tile);
// The fields that shape the code object (everything but num_splits).
nlohmann::json kernel_json(const TileConfig& tile);
// Parses JSON written by to_json (unknown keys are an error); missing keys take defaults.
Spec spec_from_json(const nlohmann::json& j);
TileConfig tile_from_json(const nlohmann::json& j);

// Readable kernel name, e.g. "mla_decode_q-bf16_kv-bf16_h16_sq1_ps64_hc16_bn32_w8".
std::string kernel_base_name(const Spec& spec, const TileConfig& tile);

}  // namespace mlajit
