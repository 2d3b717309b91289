// Device run of a host decode problem.
#include "tools/decode_check.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace mlajit::tools {

DecodeArgs decode_args(const reference::DecodeProblem& p, const ProblemBuffers& b, int num_kv_splits) {
  const Spec& s = p.spec;
  DecodeArgs a;
  a.q = b.q;
  a.q_dtype = s.q_dtype;
  a.kv_buffer = b.kv;
  a.kv_dtype = s.kv_dtype;
  a.kv_page_stride = p.kv_page_stride;
  a.out = b.out;
  a.out_dtype = s.out_dtype;
  a.lse = s.return_lse ? b.lse : nullptr;
  a.qo_indptr = b.qo_indptr;
  a.kv_indptr = b.kv_indptr;
  a.kv_indices = b.kv_indices;
  a.kv_last_page_lens = b.kv_last_page_lens;
  a.batch = p.batch;
  a.total_q = p.total_q;
  a.num_heads = s.heads;
  a.max_seqlen_q = s.s_q;
  a.page_size = s.page_size;
  a.kv_lora_rank = s.kv_lora_rank;
  a.rope_dim = s.rope_dim;
  a.num_kv_indices = (long long)p.kv_indices.size();
  a.sm_scale = p.sm_scale;
  a.logit_cap = s.logit_cap;
  a.q_scale = p.q_scale;
  a.kv_scale = p.kv_scale;
  a.causal = s.causal;
  a.num_kv_splits = num_kv_splits;
  a.rope = s.rope;
  if (s.rope != RopeStyle::none) {
    a.cos_sin_cache = b.cos_sin_cache;
    a.cos_sin_dtype = p.cos_sin_dtype;
    a.max_positions = p.max_positions;
    a.positions = b.positions;
    a.k_pe_out = b.k_pe_out;
  }
  return a;
}

std::vector<float> load_elements(const void* data, DType t, std::size_t count) {
  std::vector<float> values(count);
  for (std::size_t i = 0; i < count; ++i) values[i] = load_element(data, t, i);
  return values;
}

DeviceProblem upload(Engine& engine, const reference::DecodeProblem& p, int num_kv_splits) {
  runtime::Device& device = engine.device();
  auto put = [&](runtime::DeviceBuffer& buffer, const void* data, std::size_t bytes) {
    buffer = runtime::DeviceBuffer(device, bytes == 0 ? 16 : bytes);
    if (bytes > 0) device.copy_to_device(buffer.get(), data, bytes);
  };
  auto poisoned = [&](runtime::DeviceBuffer& buffer, std::size_t bytes) {
    buffer = runtime::DeviceBuffer(device, bytes == 0 ? 16 : bytes);
    device.fill_bytes(buffer.get(), 0xff, buffer.size());  // NaN in every float format (fp8 too)
  };
  const Spec& s = p.spec;
  DeviceProblem d;
  put(d.q, p.q.data(), p.q.size());
  put(d.kv, p.kv.data(), p.kv.size());
  put(d.qo, p.qo_indptr.data(), p.qo_indptr.size() * sizeof(int));
  put(d.kvp, p.kv_indptr.data(), p.kv_indptr.size() * sizeof(int));
  put(d.kvi, p.kv_indices.data(), p.kv_indices.size() * sizeof(int));
  put(d.last, p.kv_last_page_lens.data(), p.kv_last_page_lens.size() * sizeof(int));
  put(d.cos_sin, p.cos_sin_cache.data(), p.cos_sin_cache.size());
  put(d.positions, p.positions.data(), p.positions.size() * sizeof(std::int64_t));
  const bool rope = s.rope != RopeStyle::none;
  poisoned(d.k_pe, rope ? std::size_t(p.total_q) * s.rope_dim * dtype_size(s.kv_dtype) : 0);
  poisoned(d.out, std::size_t(p.total_q) * s.heads * s.v_dim() * dtype_size(s.out_dtype));
  poisoned(d.lse, std::size_t(p.total_q) * s.heads * sizeof(float));

  ProblemBuffers b;
  b.q = d.q.get();
  b.kv = d.kv.get();
  b.out = d.out.get();
  b.lse = d.lse.as<float>();
  b.qo_indptr = d.qo.as<int>();
  b.kv_indptr = d.kvp.as<int>();
  b.kv_indices = d.kvi.as<int>();
  b.kv_last_page_lens = d.last.as<int>();
  b.cos_sin_cache = d.cos_sin.get();
  b.positions = static_cast<const std::int64_t*>(d.positions.get());
  b.k_pe_out = d.k_pe.get();
  d.args = decode_args(p, b, num_kv_splits);
  return d;
}

DeviceRun read_outputs(Engine& engine, const DeviceProblem& d, const reference::DecodeProblem& p) {
  runtime::Device& device = engine.device();
  const Spec& s = p.spec;
  const std::size_t out_elems = std::size_t(p.total_q) * s.heads * s.v_dim();
  const std::size_t out_bytes = out_elems * dtype_size(s.out_dtype);
  const std::size_t lse_elems = std::size_t(p.total_q) * s.heads;
  const bool rope = s.rope != RopeStyle::none;
  const std::size_t k_pe_elems = rope ? std::size_t(p.total_q) * s.rope_dim : 0;
  const std::size_t k_pe_bytes = k_pe_elems * dtype_size(s.kv_dtype);
  DeviceRun run;
  std::vector<std::uint8_t> raw(out_bytes);
  if (out_bytes > 0) device.copy_to_host(raw.data(), d.out.get(), out_bytes);
  run.out = load_elements(raw.data(), s.out_dtype, out_elems);
  if (rope) {
    std::vector<std::uint8_t> raw_k_pe(k_pe_bytes);
    if (k_pe_bytes > 0) device.copy_to_host(raw_k_pe.data(), d.k_pe.get(), k_pe_bytes);
    run.k_pe_out = load_elements(raw_k_pe.data(), s.kv_dtype, k_pe_elems);
  }
  if (s.return_lse) {
    run.lse.resize(lse_elems);
    if (lse_elems > 0) device.copy_to_host(run.lse.data(), d.lse.get(), lse_elems * sizeof(float));
  }
  return run;
}

DeviceRun run_on_device(Engine& engine, const reference::DecodeProblem& p, int num_kv_splits,
                        const std::optional<TileConfig>& tile) {
  runtime::Device& device = engine.device();
  DeviceProblem d = upload(engine, p, num_kv_splits);
  DecodeArgs a = d.args;
  const DecodePlan plan = engine.plan_decode(a, tile);
  if (plan.workspace_bytes > 0) d.workspace = runtime::DeviceBuffer(device, plan.workspace_bytes);
  a.workspace = d.workspace.get();
  a.workspace_bytes = d.workspace.size();
  engine.decode(a, tile);
  device.synchronize();
  DeviceRun run = read_outputs(engine, d, p);
  run.plan = plan;
  return run;
}

PersistentBuffers allocate_persistent(Engine& engine, const PersistentPlan& plan) {
  runtime::Device& device = engine.device();
  PersistentBuffers b;
  b.metadata_buffer = runtime::DeviceBuffer(device, plan.layout.bytes());
  device.fill_bytes(b.metadata_buffer.get(), 0x7f, b.metadata_buffer.size());
  b.metadata = metadata_in(plan.layout, b.metadata_buffer.as<int>());
  if (plan.workspace_bytes > 0) b.workspace = runtime::DeviceBuffer(device, plan.workspace_bytes);
  return b;
}

DeviceRun run_persistent_on_device(Engine& engine, const reference::DecodeProblem& p,
                                   const std::optional<TileConfig>& tile, int decodes) {
  DeviceProblem d = upload(engine, p);
  DecodeArgs a = d.args;
  const PersistentPlan plan = engine.plan_persistent(a, tile);
  PersistentBuffers b = allocate_persistent(engine, plan);
  a.workspace = b.workspace.get();
  a.workspace_bytes = b.workspace.size();
  engine.persistent_metadata_fill(a, b.metadata, tile);
  for (int k = 0; k < decodes; ++k) {
    if (k > 0) {
      runtime::Device& device = engine.device();
      if (b.workspace.size() > 0) device.fill_bytes(b.workspace.get(), 0x7f, b.workspace.size());
      device.fill_bytes(d.out.get(), 0x7f, d.out.size());
      if (d.lse.size() > 0) device.fill_bytes(d.lse.get(), 0x7f, d.lse.size());
    }
    engine.persistent_decode(a, b.metadata, tile);
  }
  engine.device().synchronize();
  DeviceRun run = read_outputs(engine, d, p);
  run.plan.spec = plan.spec;
  run.plan.tile = plan.tile;
  return run;
}

Tolerance tolerance_for(const Spec& spec, KernelFamily family, double max_abs_v) {
  // The kernels accumulate in fp32 like the reference; what remains is the rounding of the
  // output itself (bf16: 2^-8 relative, fp16: 2^-11) plus fp32 summation order.
  // FP8 q / KV add nothing: kernel and reference read the same e4m3 bytes and widen them exactly
  // (e4m3 -> fp32 is exact, and so is e4m3 -> bf16 / fp16, the mma family's operand types),
  // apply the same per-tensor scales, and the portable family keeps P in fp32, so fp8's
  // quantisation error is in both sides' inputs, not between them.
  // Fused RoPE adds nothing either: q_pe and k_pe are rotated with the same float expression
  // and rounded to the same dtypes on both sides (reference::rope_element).
  Tolerance t{1e-4, 1e-4};
  if (spec.out_dtype == DType::bf16) t = {2e-3, 1.6e-2};
  if (spec.out_dtype == DType::fp16) t = {5e-4, 2e-3};
  // The mma and wgmma families round P to their operand type (mma_dtype: fp16 when q is fp16 and
  // for wgmma with an fp8 cache, else bf16): |sum (p~ - p) v| / l <= u max|v|. (A bf16 q that
  // wgmma scales into fp16 keeps bf16's bits: nothing to add.) With an fp8 cache the output is
  // kv_scale times that; max_abs_v is the stored (unscaled) V, so the term is loose by 1 / kv_scale.
  if (family != KernelFamily::portable) {  // mma and wgmma
    const double unit = mma_dtype(spec, family) == DType::bf16 ? std::ldexp(1.0, -9) : std::ldexp(1.0, -12);
    t.atol += unit * max_abs_v;
  }
  return t;
}

reference::Comparison compare_k_pe(const reference::DecodeResult& want, const DeviceRun& run, const Spec& spec) {
  // Device and host evaluate the same float expression and round it to the cache dtype, so they
  // agree bit for bit; one step of that dtype (relative: bf16 2^-7, fp16 2^-10, fp8 2^-3; plus
  // fp8's subnormal step) leaves room for a compiler that contracts differently.
  double rtol = std::ldexp(1.0, -7), atol = 0;
  if (spec.kv_dtype == DType::fp16) rtol = std::ldexp(1.0, -10);
  if (spec.kv_dtype == DType::fp8_e4m3) {
    rtol = std::ldexp(1.0, -3);
    atol = std::ldexp(1.0, -9);
  }
  reference::DecodeResult k_pe;
  k_pe.out = want.k_pe_out;
  return reference::compare(k_pe, run.k_pe_out, nullptr, atol, rtol);
}

double max_abs_value(const reference::DecodeProblem& p) {
  const Spec& s = p.spec;
  double m = 0;
  for (int b = 0; b < p.batch; ++b) {
    const int pages = p.kv_indptr[b + 1] - p.kv_indptr[b];
    const int len = pages > 0 ? (pages - 1) * s.page_size + p.kv_last_page_lens[b] : 0;
    for (int j = 0; j < len; ++j) {
      const std::size_t row = std::size_t(p.kv_indices[p.kv_indptr[b] + j / s.page_size]) * p.kv_page_stride +
                              std::size_t(j % s.page_size) * s.qk_dim();
      for (int c = 0; c < s.v_dim(); ++c) {
        const double v = std::fabs(load_element(p.kv.data(), s.kv_dtype, row + c));
        if (std::isfinite(v)) m = std::max(m, v);
      }
    }
  }
  return m;
}

}  // namespace mlajit::tools
