// Device run of a host decode problem.
#include "tools/decode_check.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace mlajit::tools {

DeviceRun run_on_device(Engine& engine, const reference::DecodeProblem& p, int num_kv_splits,
                        const std::optional<TileConfig>& tile) {
  runtime::Device& device = engine.device();
  auto upload = [&](const void* data, std::size_t bytes) {
    runtime::DeviceBuffer buffer(device, bytes == 0 ? 16 : bytes);
    if (bytes > 0) device.copy_to_device(buffer.get(), data, bytes);
    return buffer;
  };
  const Spec& s = p.spec;
  const std::size_t out_elems = std::size_t(p.total_q) * s.heads * s.v_dim();
  const std::size_t out_bytes = out_elems * dtype_size(s.out_dtype);
  const std::size_t lse_elems = std::size_t(p.total_q) * s.heads;

  runtime::DeviceBuffer q = upload(p.q.data(), p.q.size());
  runtime::DeviceBuffer kv = upload(p.kv.data(), p.kv.size());
  runtime::DeviceBuffer qo = upload(p.qo_indptr.data(), p.qo_indptr.size() * sizeof(int));
  runtime::DeviceBuffer kvp = upload(p.kv_indptr.data(), p.kv_indptr.size() * sizeof(int));
  runtime::DeviceBuffer kvi = upload(p.kv_indices.data(), p.kv_indices.size() * sizeof(int));
  runtime::DeviceBuffer last = upload(p.kv_last_page_lens.data(), p.kv_last_page_lens.size() * sizeof(int));
  runtime::DeviceBuffer out(device, out_bytes == 0 ? 16 : out_bytes);
  runtime::DeviceBuffer lse(device, (lse_elems == 0 ? 4 : lse_elems) * sizeof(float));
  device.fill_bytes(out.get(), 0xff, out.size());  // NaN in every float format we write
  device.fill_bytes(lse.get(), 0xff, lse.size());

  DecodeArgs a;
  a.q = q.get();
  a.q_dtype = s.q_dtype;
  a.kv_buffer = kv.get();
  a.kv_dtype = s.kv_dtype;
  a.kv_page_stride = p.kv_page_stride;
  a.out = out.get();
  a.out_dtype = s.out_dtype;
  a.lse = s.return_lse ? lse.as<float>() : nullptr;
  a.qo_indptr = qo.as<int>();
  a.kv_indptr = kvp.as<int>();
  a.kv_indices = kvi.as<int>();
  a.kv_last_page_lens = last.as<int>();
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

  DeviceRun run;
  run.plan = engine.plan_decode(a, tile);
  runtime::DeviceBuffer workspace;
  if (run.plan.workspace_bytes > 0) workspace = runtime::DeviceBuffer(device, run.plan.workspace_bytes);
  a.workspace = workspace.get();
  a.workspace_bytes = workspace.size();
  engine.decode(a, tile);
  device.synchronize();

  std::vector<std::uint8_t> raw(out_bytes);
  if (out_bytes > 0) device.copy_to_host(raw.data(), out.get(), out_bytes);
  run.out.resize(out_elems);
  for (std::size_t i = 0; i < out_elems; ++i) run.out[i] = load_element(raw.data(), s.out_dtype, i);
  if (s.return_lse) {
    run.lse.resize(lse_elems);
    if (lse_elems > 0) device.copy_to_host(run.lse.data(), lse.get(), lse_elems * sizeof(float));
  }
  return run;
}

Tolerance tolerance_for(const Spec& spec, KernelFamily family, double max_abs_v) {
  // The kernels accumulate in fp32 like the reference; what remains is the rounding of the
  // output itself (bf16: 2^-8 relative, fp16: 2^-11) plus fp32 summation order.
  Tolerance t{1e-4, 1e-4};
  if (spec.out_dtype == DType::bf16) t = {2e-3, 1.6e-2};
  if (spec.out_dtype == DType::fp16) t = {5e-4, 2e-3};
  if (family == KernelFamily::mma) {
    const double unit = spec.q_dtype == DType::bf16 ? std::ldexp(1.0, -9) : std::ldexp(1.0, -12);
    t.atol += unit * max_abs_v;
  }
  return t;
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
