// Streaming-read probe (NVRTC) and bf16 GEMM probe (cuBLASLt, dlopen()ed).
#include "tools/bench/roofline.hpp"

#include <cublasLt.h>
#include <dlfcn.h>

#include <algorithm>
#include <vector>

#include <fmt/format.h>

#include "codegen/error.hpp"
#include "templates/embedded.hpp"

namespace mlajit::bench {

namespace {

template <class Fn>
double median_ms(runtime::Device& device, int runs, Fn&& fn) {
  void* start = device.create_event();
  void* end = device.create_event();
  std::vector<float> times;
  for (int i = 0; i < runs; ++i) {
    device.record_event(start, nullptr);
    fn();
    device.record_event(end, nullptr);
    times.push_back(device.elapsed_ms(start, end));
  }
  device.destroy_event(start);
  device.destroy_event(end);
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

double stream_read_gb_s(runtime::Device& device) {
  const std::unique_ptr<runtime::Module> module = load_stream_read(device);
  const std::size_t bytes = std::size_t(4) << 30;  // 4 GiB
  runtime::DeviceBuffer data(device, bytes);
  runtime::DeviceBuffer sink(device, 1 << 20);
  device.fill_bytes(data.get(), 0x11, bytes);
  auto run = [&] { launch_stream_read(*module, device, data.get(), bytes, sink.get()); };
  run();
  device.synchronize();
  const double ms = median_ms(device, 10, run);
  return double(bytes) / (ms * 1e-3) / 1e9;
}

struct CublasLt {
  decltype(&cublasLtCreate) create = nullptr;
  decltype(&cublasLtDestroy) destroy = nullptr;
  decltype(&cublasLtMatmulDescCreate) desc_create = nullptr;
  decltype(&cublasLtMatmulDescDestroy) desc_destroy = nullptr;
  decltype(&cublasLtMatmulDescSetAttribute) desc_set = nullptr;
  decltype(&cublasLtMatrixLayoutCreate) layout_create = nullptr;
  decltype(&cublasLtMatrixLayoutDestroy) layout_destroy = nullptr;
  decltype(&cublasLtMatmulPreferenceCreate) pref_create = nullptr;
  decltype(&cublasLtMatmulPreferenceDestroy) pref_destroy = nullptr;
  decltype(&cublasLtMatmulPreferenceSetAttribute) pref_set = nullptr;
  decltype(&cublasLtMatmulAlgoGetHeuristic) heuristic = nullptr;
  decltype(&cublasLtMatmul) matmul = nullptr;
};

bool load_cublaslt(CublasLt& lt, std::string& why) {
  void* h = nullptr;
  for (const char* name : {"libcublasLt.so.13", "libcublasLt.so.12", "libcublasLt.so",
                           "/usr/local/cuda/lib64/libcublasLt.so.13", "/usr/local/cuda/lib64/libcublasLt.so"}) {
    if ((h = dlopen(name, RTLD_NOW | RTLD_LOCAL)) != nullptr) break;
  }
  if (h == nullptr) {
    why = "libcublasLt not found";
    return false;
  }
#define MLJ_LT(field, name) lt.field = reinterpret_cast<decltype(lt.field)>(dlsym(h, name))
  MLJ_LT(create, "cublasLtCreate");
  MLJ_LT(destroy, "cublasLtDestroy");
  MLJ_LT(desc_create, "cublasLtMatmulDescCreate");
  MLJ_LT(desc_destroy, "cublasLtMatmulDescDestroy");
  MLJ_LT(desc_set, "cublasLtMatmulDescSetAttribute");
  MLJ_LT(layout_create, "cublasLtMatrixLayoutCreate");
  MLJ_LT(layout_destroy, "cublasLtMatrixLayoutDestroy");
  MLJ_LT(pref_create, "cublasLtMatmulPreferenceCreate");
  MLJ_LT(pref_destroy, "cublasLtMatmulPreferenceDestroy");
  MLJ_LT(pref_set, "cublasLtMatmulPreferenceSetAttribute");
  MLJ_LT(heuristic, "cublasLtMatmulAlgoGetHeuristic");
  MLJ_LT(matmul, "cublasLtMatmul");
#undef MLJ_LT
  if (!lt.create || !lt.matmul || !lt.heuristic || !lt.desc_set || !lt.pref_set) {
    why = "libcublasLt lacks required symbols";
    return false;
  }
  return true;
}

double bf16_tflop_s(runtime::Device& device, std::string& note) {
  CublasLt lt;
  if (!load_cublaslt(lt, note)) return 0;
  const int n = 8192;
  const std::size_t bytes = std::size_t(n) * n * 2;
  runtime::DeviceBuffer a(device, bytes), b(device, bytes), c(device, bytes);
  runtime::DeviceBuffer workspace(device, 64 << 20);
  // Non-zero operands: products of zeros run faster than real data.
  device.fill_bytes(a.get(), 0x3c, bytes);
  device.fill_bytes(b.get(), 0x3b, bytes);
  cublasLtHandle_t handle = nullptr;
  if (lt.create(&handle) != CUBLAS_STATUS_SUCCESS) {
    note = "cublasLtCreate failed";
    return 0;
  }
  cublasLtMatmulDesc_t desc = nullptr;
  lt.desc_create(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F);
  cublasOperation_t trans = CUBLAS_OP_T, no_trans = CUBLAS_OP_N;
  lt.desc_set(desc, CUBLASLT_MATMUL_DESC_TRANSA, &trans, sizeof(trans));
  lt.desc_set(desc, CUBLASLT_MATMUL_DESC_TRANSB, &no_trans, sizeof(no_trans));
  cublasLtMatrixLayout_t layout = nullptr;
  lt.layout_create(&layout, CUDA_R_16BF, n, n, n);
  cublasLtMatmulPreference_t pref = nullptr;
  lt.pref_create(&pref);
  std::size_t ws = workspace.size();
  lt.pref_set(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws));
  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  lt.heuristic(handle, desc, layout, layout, layout, layout, pref, 1, &result, &found);
  double tflops = 0;
  if (found > 0) {
    const float alpha = 1.0f, beta = 0.0f;
    auto run = [&] {
      lt.matmul(handle, desc, &alpha, a.get(), layout, b.get(), layout, &beta, c.get(), layout, c.get(), layout,
                &result.algo, workspace.get(), ws, nullptr);
    };
    run();
    device.synchronize();
    const double ms = median_ms(device, 10, run);
    tflops = 2.0 * n * n * double(n) / (ms * 1e-3) / 1e12;
    note = fmt::format("cuBLASLt bf16 {}x{}x{} (non-zero data)", n, n, n);
  } else {
    note = "cuBLASLt found no algorithm";
  }
  lt.pref_destroy(pref);
  lt.layout_destroy(layout);
  lt.desc_destroy(desc);
  lt.destroy(handle);
  return tflops;
}

}  // namespace

std::unique_ptr<runtime::Module> load_stream_read(runtime::Device& device) {
  Source source;
  source.kernel_name = "mlj_stream_read";
  source.text = std::string(templates::file("probe/stream_read.cuh").text);
  const runtime::CodeObject code = runtime::backend(device.info().target.backend).compile(source, device.info().target);
  return device.load(code);
}

void launch_stream_read(runtime::Module& module, runtime::Device& device, const void* data, std::size_t bytes,
                        void* sink) {
  unsigned long long count = bytes / 16;
  void* args[] = {&data, &count, &sink};
  const unsigned blocks = unsigned(device.info().multiprocessors) * 4;
  module.kernel("mlj_stream_read").launch({blocks}, {512}, 0, nullptr, args, runtime::LaunchOrder::after_previous);
}

Roofline measure_roofline(runtime::Device& device) {
  Roofline r;
  r.read_gb_s = stream_read_gb_s(device);
  r.bf16_tflop_s = bf16_tflop_s(device, r.bf16_note);
  return r;
}

}  // namespace mlajit::bench
