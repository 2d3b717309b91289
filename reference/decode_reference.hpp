// Float32 CPU reference of MLA decode (mla-semantics §1.2) and a builder of random paged problems.
// An addition to DESIGN.md's module list: pure host code shared by the gpu tests, the CLI's
// verified run and the benchmark, so that all three check against the same definition.
#pragma once

#include <cstdint>
#include <vector>

#include "codegen/spec.hpp"

namespace mlajit::reference {

// A decode problem in host memory, laid out exactly as the device API takes it.
struct DecodeProblem {
  Spec spec;
  int batch = 0;
  int total_q = 0;
  int num_pages = 0;                 // pages in the cache buffer
  long long kv_page_stride = 0;      // elements between pages
  std::vector<std::uint8_t> q;       // [total_q, heads, qk_dim] in spec.q_dtype
  std::vector<std::uint8_t> kv;      // [num_pages, page stride] in spec.kv_dtype
  std::vector<int> qo_indptr;        // [batch + 1]
  std::vector<int> kv_indptr;        // [batch + 1]
  std::vector<int> kv_indices;       // may be longer than kv_indptr[batch] (padding)
  std::vector<int> kv_last_page_lens;// [batch]
  std::vector<int> kv_lens;          // tokens per request (derived, for reports)
  float sm_scale = 0.0f;
  float q_scale = 1.0f;
  float kv_scale = 1.0f;
  // Fused RoPE (spec.rope != none): q's and the query tokens' own keys' rope parts are unrotated.
  std::vector<std::int64_t> positions;       // [total_q]
  std::vector<std::uint8_t> cos_sin_cache;   // [max_positions, rope_dim] in cos_sin_dtype
  DType cos_sin_dtype = DType::bf16;
  int max_positions = 0;
};

struct ProblemOptions {
  std::vector<int> kv_lens;      // tokens per request (0 allowed)
  std::vector<int> q_lens;       // query tokens per request; empty = spec.s_q for all
  std::uint64_t seed = 0;
  int extra_indices = 7;         // padding after the used kv_indices (must never be read)
  int spare_pages = 3;           // pages nobody uses (filled with NaN when the dtype has one)
  bool fast_fill = false;        // uniform values from a cheap generator (benchmarks' large caches)
  // Fused RoPE tables: base 10000, positions = each query token's key index + position_offset
  // (an offset past max_positions exercises the clamp).
  DType cos_sin_dtype = DType::bf16;
  int max_positions = 4096;
  int position_offset = 0;
};

// Random q / kv (normal-ish, scaled like real activations), shuffled page ids, AITER's
// kv_last_page_lens convention (a zero-length request has no pages).
DecodeProblem make_problem(const Spec& spec, const ProblemOptions& options);

struct DecodeResult {
  std::vector<float> out;  // [total_q, heads, v_dim]
  std::vector<float> lse;  // [total_q, heads], natural log, -inf for rows that see no key
  std::vector<float> k_pe_out;  // fused RoPE: [total_q, rope_dim], each token's own key's rotated k_pe
};

// Fused RoPE on the host, as the kernels compute it (templates/decode/rope.cuh): element d of
// the rotated vector x at table row `cos_sin` (rope_dim values: cos halves then sin halves),
// evaluated in float with one fma so that device and host round alike.
float rope_element(RopeStyle style, const float* x, const float* cos_sin, int rope_dim, int d);

// Double-accumulated reference; rows with no visible key give 0 and -inf. With fused RoPE, q's
// rope part and each query token's own key's k_pe are rotated and rounded to their dtypes first.
// Only the first `max_requests` requests are computed (the rest stay 0 / -inf); -1 = all.
DecodeResult decode(const DecodeProblem& problem, int max_requests = -1);

struct Comparison {
  double max_abs_error = 0;
  double max_lse_error = 0;  // over finite LSE values
  bool lse_pattern_ok = true;  // -inf exactly where the reference has -inf
  long long non_finite_outputs = 0;
  long long mismatches = 0;    // |got - want| > atol + rtol * |want|
  double cosine_distance = 0;  // AITER's cal_diff: 1 - 2 sum(xy) / sum(x^2 + y^2), over finite outputs
};

// Compares the first `rows` (token x head) rows, or all when rows < 0.
Comparison compare(const DecodeResult& want, const std::vector<float>& got_out,
                   const std::vector<float>* got_lse, double atol, double rtol, long long rows = -1);

}  // namespace mlajit::reference
