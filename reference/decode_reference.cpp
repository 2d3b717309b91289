// The float32 decode reference and the random problem builder.
#include "reference/decode_reference.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>

#include "codegen/error.hpp"

namespace mlajit::reference {

namespace {

// `value` rounded to dtype t (what a store to a tensor of t keeps).
float round_to(DType t, float value) {
  std::uint8_t bytes[4];
  store_element(bytes, t, 0, value);
  return load_element(bytes, t, 0);
}

// cos | sin halves of every position, base 10000, as DeepSeek's rotary embedding builds them.
void fill_cos_sin_cache(DecodeProblem& p, const ProblemOptions& options) {
  const int R = p.spec.rope_dim;
  p.cos_sin_dtype = options.cos_sin_dtype;
  p.max_positions = options.max_positions;
  p.cos_sin_cache.resize(std::size_t(p.max_positions) * R * dtype_size(p.cos_sin_dtype));
  for (int pos = 0; pos < p.max_positions; ++pos) {
    for (int i = 0; i < R / 2; ++i) {
      const double angle = pos * std::pow(10000.0, -2.0 * i / R);
      store_element(p.cos_sin_cache.data(), p.cos_sin_dtype, std::size_t(pos) * R + i, float(std::cos(angle)));
      store_element(p.cos_sin_cache.data(), p.cos_sin_dtype, std::size_t(pos) * R + R / 2 + i, float(std::sin(angle)));
    }
  }
}

// Request b's key count (AITER's kv_last_page_lens convention).
int kv_length(const DecodeProblem& p, int b) {
  const int pages = p.kv_indptr[b + 1] - p.kv_indptr[b];
  return pages > 0 ? (pages - 1) * p.spec.page_size + p.kv_last_page_lens[b] : 0;
}

}  // namespace

float rope_element(RopeStyle style, const float* x, const float* cos_sin, int rope_dim, int d) {
  const int half = rope_dim / 2;
  int freq, partner;
  float sign;
  if (style == RopeStyle::neox) {
    freq = d < half ? d : d - half;
    partner = d < half ? d + half : d - half;
    sign = d < half ? -1.0f : 1.0f;
  } else {
    freq = d / 2;
    partner = d % 2 == 0 ? d + 1 : d - 1;
    sign = d % 2 == 0 ? -1.0f : 1.0f;
  }
  return std::fma(x[d], cos_sin[freq], sign * x[partner] * cos_sin[half + freq]);
}

DecodeProblem make_problem(const Spec& spec, const ProblemOptions& options) {
  validate(spec);
  DecodeProblem p;
  p.spec = spec;
  p.batch = int(options.kv_lens.size());
  if (p.batch == 0) throw_invalid("kv_lens", "must name at least one request", "0 requests");
  std::vector<int> q_lens = options.q_lens.empty() ? std::vector<int>(p.batch, spec.s_q) : options.q_lens;
  if (int(q_lens.size()) != p.batch) throw_invalid("q_lens", "must have one entry per request", std::to_string(q_lens.size()));
  std::mt19937_64 rng(options.seed);
  const int ps = spec.page_size;
  const int D = spec.qk_dim();

  p.qo_indptr.assign(1, 0);
  p.kv_indptr.assign(1, 0);
  int total_pages_used = 0;
  for (int b = 0; b < p.batch; ++b) {
    if (q_lens[b] < 0 || q_lens[b] > spec.s_q) throw_invalid("q_lens", "each must be in [0, s_q]", std::to_string(q_lens[b]));
    p.qo_indptr.push_back(p.qo_indptr.back() + q_lens[b]);
    const int pages = (options.kv_lens[b] + ps - 1) / ps;
    p.kv_indptr.push_back(p.kv_indptr.back() + pages);
    p.kv_last_page_lens.push_back(pages == 0 ? 1 : options.kv_lens[b] - (pages - 1) * ps);
    total_pages_used += pages;
  }
  p.kv_lens = options.kv_lens;
  p.total_q = p.qo_indptr.back();
  p.num_pages = total_pages_used + options.spare_pages;
  p.kv_page_stride = (long long)ps * D;

  // Shuffled, distinct page ids; padding entries point at real pages but must never be read.
  std::vector<int> ids(p.num_pages);
  std::iota(ids.begin(), ids.end(), 0);
  std::shuffle(ids.begin(), ids.end(), rng);
  p.kv_indices.assign(ids.begin(), ids.begin() + total_pages_used);
  std::uniform_int_distribution<int> any_page(0, std::max(0, p.num_pages - 1));
  for (int i = 0; i < options.extra_indices; ++i) p.kv_indices.push_back(any_page(rng));

  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uint64_t state = options.seed * 0x9e3779b97f4a7c15ull + 1;
  auto next_value = [&]() -> float {
    if (!options.fast_fill) return normal(rng);
    state = state * 6364136223846793005ull + 1442695040888963407ull;  // LCG: plenty for benchmarks
    return float(std::int64_t(state >> 40) - (1ll << 23)) / float(1 << 22);  // uniform in [-2, 2)
  };
  const std::size_t q_elems = std::size_t(p.total_q) * spec.heads * D;
  p.q.resize(q_elems * dtype_size(spec.q_dtype));
  for (std::size_t i = 0; i < q_elems; ++i) store_element(p.q.data(), spec.q_dtype, i, next_value());
  const std::size_t kv_elems = std::size_t(p.num_pages) * p.kv_page_stride;
  p.kv.resize(kv_elems * dtype_size(spec.kv_dtype));
  for (std::size_t i = 0; i < kv_elems; ++i) store_element(p.kv.data(), spec.kv_dtype, i, next_value());
  // Poison the tail of every last page and the spare pages: a kernel that reads past a
  // request's length produces NaN instead of a plausible number.
  const float poison = std::numeric_limits<float>::quiet_NaN();
  std::vector<bool> used(p.num_pages, false);
  for (int b = 0; b < p.batch; ++b) {
    for (int k = p.kv_indptr[b]; k < p.kv_indptr[b + 1]; ++k) used[p.kv_indices[k]] = true;
    if (p.kv_indptr[b + 1] > p.kv_indptr[b]) {
      const int last = p.kv_indices[p.kv_indptr[b + 1] - 1];
      for (int row = p.kv_last_page_lens[b]; row < ps; ++row)
        for (int d = 0; d < D; ++d) store_element(p.kv.data(), spec.kv_dtype, std::size_t(last) * p.kv_page_stride + std::size_t(row) * D + d, poison);
    }
  }
  for (int page = 0; page < p.num_pages; ++page) {
    if (used[page]) continue;
    for (long long e = 0; e < p.kv_page_stride; ++e) store_element(p.kv.data(), spec.kv_dtype, std::size_t(page) * p.kv_page_stride + e, poison);
  }
  p.sm_scale = 1.0f / std::sqrt(float(D));
  if (spec.q_dtype == DType::fp8_e4m3) p.q_scale = 0.5f;
  if (spec.kv_dtype == DType::fp8_e4m3) p.kv_scale = 0.25f;
  if (spec.rope != RopeStyle::none) {
    fill_cos_sin_cache(p, options);
    for (int b = 0; b < p.batch; ++b) {
      const int q_count = p.qo_indptr[b + 1] - p.qo_indptr[b];
      for (int t = 0; t < q_count; ++t) {
        p.positions.push_back(std::int64_t(kv_length(p, b)) - q_count + t + options.position_offset);
      }
    }
  }
  return p;
}

namespace {

// Request b with fused RoPE applied: q rows and the query tokens' own keys, rotated and
// rounded to their dtypes, as the kernels see them.
struct RopedRequest {
  std::vector<float> q;        // [q_count, heads, qk_dim]
  std::vector<float> own_k_pe; // [q_count, rope_dim]; zeros for a token without a key
};

RopedRequest rope_request(const DecodeProblem& p, int b, int L) {
  const Spec& s = p.spec;
  const int H = s.heads, D = s.qk_dim(), R = s.rope_dim, lora = s.kv_lora_rank, ps = s.page_size;
  const int q_begin = p.qo_indptr[b], q_count = p.qo_indptr[b + 1] - q_begin;
  RopedRequest r;
  r.q.resize(std::size_t(q_count) * H * D);
  r.own_k_pe.assign(std::size_t(q_count) * R, 0.0f);
  std::vector<float> table(R), x(R);
  for (int t = 0; t < q_count; ++t) {
    const std::int64_t position = std::clamp<std::int64_t>(p.positions[q_begin + t], 0, p.max_positions - 1);
    for (int i = 0; i < R; ++i) {
      table[i] = load_element(p.cos_sin_cache.data(), p.cos_sin_dtype, std::size_t(position) * R + i);
    }
    for (int h = 0; h < H; ++h) {
      const std::size_t row = (std::size_t(q_begin + t) * H + h) * D;
      float* q = &r.q[(std::size_t(t) * H + h) * D];
      for (int d = 0; d < D; ++d) q[d] = load_element(p.q.data(), s.q_dtype, row + d);
      for (int d = 0; d < R; ++d) x[d] = q[lora + d];
      for (int d = 0; d < R; ++d) q[lora + d] = round_to(s.q_dtype, rope_element(s.rope, x.data(), table.data(), R, d));
    }
    const int key = L - q_count + t;
    if (key < 0) continue;
    const std::size_t k =
        std::size_t(p.kv_indices[p.kv_indptr[b] + key / ps]) * p.kv_page_stride + std::size_t(key % ps) * D;
    for (int d = 0; d < R; ++d) x[d] = load_element(p.kv.data(), s.kv_dtype, k + lora + d);
    for (int d = 0; d < R; ++d) {
      r.own_k_pe[std::size_t(t) * R + d] = round_to(s.kv_dtype, rope_element(s.rope, x.data(), table.data(), R, d));
    }
  }
  return r;
}

}  // namespace

DecodeResult decode(const DecodeProblem& p, int max_requests) {
  const Spec& s = p.spec;
  const int H = s.heads, D = s.qk_dim(), Dv = s.v_dim(), ps = s.page_size;
  const bool rope = s.rope != RopeStyle::none;
  const double q_scale = s.q_dtype == DType::fp8_e4m3 ? p.q_scale : 1.0;
  const double kv_scale = s.kv_dtype == DType::fp8_e4m3 ? p.kv_scale : 1.0;
  DecodeResult r;
  r.out.assign(std::size_t(p.total_q) * H * Dv, 0.0f);
  r.lse.assign(std::size_t(p.total_q) * H, -std::numeric_limits<float>::infinity());
  if (rope) r.k_pe_out.assign(std::size_t(p.total_q) * s.rope_dim, 0.0f);
  std::vector<double> scores, acc(Dv);
  const int requests = max_requests < 0 ? p.batch : std::min(p.batch, max_requests);
  for (int b = 0; b < requests; ++b) {
    const int q_begin = p.qo_indptr[b], q_count = p.qo_indptr[b + 1] - q_begin;
    const int L = kv_length(p, b);
    auto key_offset = [&](int j) {
      const int page = p.kv_indices[p.kv_indptr[b] + j / ps];
      return std::size_t(page) * p.kv_page_stride + std::size_t(j % ps) * D;
    };
    const RopedRequest roped = rope ? rope_request(p, b, L) : RopedRequest{};
    if (rope) {
      std::copy(roped.own_k_pe.begin(), roped.own_k_pe.end(), r.k_pe_out.begin() + std::size_t(q_begin) * s.rope_dim);
    }
    // Element d of query row (t, h) and of key j, with fused RoPE applied where it reaches.
    auto q_value = [&](int t, int h, int d) -> double {
      if (rope) return roped.q[(std::size_t(t) * H + h) * D + d];
      return load_element(p.q.data(), s.q_dtype, (std::size_t(q_begin + t) * H + h) * D + d);
    };
    auto k_value = [&](int j, std::size_t k, int d) -> double {
      const int t = j - (L - q_count);
      if (rope && t >= 0 && d >= s.kv_lora_rank) {
        return roped.own_k_pe[std::size_t(t) * s.rope_dim + d - s.kv_lora_rank];
      }
      return load_element(p.kv.data(), s.kv_dtype, k + d);
    };
    for (int t = 0; t < q_count; ++t) {
      const int visible = s.causal ? std::clamp(L - q_count + t + 1, 0, L) : L;
      for (int h = 0; h < H; ++h) {
        const std::size_t row = std::size_t(q_begin + t) * H + h;
        if (visible == 0) continue;
        scores.assign(visible, 0.0);
        double m = -INFINITY;
        for (int j = 0; j < visible; ++j) {
          const std::size_t k = key_offset(j);
          double dot = 0;
          for (int d = 0; d < D; ++d) dot += q_value(t, h, d) * k_value(j, k, d);
          double logit = dot * p.sm_scale * q_scale * kv_scale;
          if (s.logit_cap > 0) logit = s.logit_cap * std::tanh(logit / s.logit_cap);
          scores[j] = logit;
          m = std::max(m, logit);
        }
        double l = 0;
        std::fill(acc.begin(), acc.end(), 0.0);
        for (int j = 0; j < visible; ++j) {
          const double w = std::exp(scores[j] - m);
          l += w;
          const std::size_t k = key_offset(j);
          for (int c = 0; c < Dv; ++c) acc[c] += w * double(load_element(p.kv.data(), s.kv_dtype, k + c));
        }
        for (int c = 0; c < Dv; ++c) r.out[row * Dv + c] = float(acc[c] / l * kv_scale);
        r.lse[row] = float(m + std::log(l));
      }
    }
  }
  return r;
}

Comparison compare(const DecodeResult& want, const std::vector<float>& got_out,
                   const std::vector<float>* got_lse, double atol, double rtol, long long rows) {
  Comparison c;
  const std::size_t row_len = want.lse.empty() ? 1 : want.out.size() / want.lse.size();
  const std::size_t out_count = rows < 0 ? want.out.size() : std::min(want.out.size(), std::size_t(rows) * row_len);
  const std::size_t lse_count = rows < 0 ? want.lse.size() : std::min(want.lse.size(), std::size_t(rows));
  double dot = 0, norms = 0;
  for (std::size_t i = 0; i < out_count; ++i) {
    const double g = i < got_out.size() ? got_out[i] : NAN;
    if (!std::isfinite(g)) {
      ++c.non_finite_outputs;
      ++c.mismatches;
      continue;
    }
    dot += g * want.out[i];
    norms += g * g + double(want.out[i]) * want.out[i];
    const double err = std::fabs(g - want.out[i]);
    c.max_abs_error = std::max(c.max_abs_error, err);
    if (err > atol + rtol * std::fabs(want.out[i])) ++c.mismatches;
  }
  c.cosine_distance = norms > 0 ? 1.0 - 2.0 * dot / norms : 0.0;
  if (got_lse != nullptr) {
    for (std::size_t i = 0; i < lse_count; ++i) {
      const float w = want.lse[i], g = i < got_lse->size() ? (*got_lse)[i] : NAN;
      if (std::isinf(w) || std::isinf(g) || std::isnan(g)) {
        if (!(std::isinf(w) && std::isinf(g) && w < 0 && g < 0)) c.lse_pattern_ok = false;
        continue;
      }
      c.max_lse_error = std::max(c.max_lse_error, double(std::fabs(g - w)));
    }
  }
  return c;
}

}  // namespace mlajit::reference
