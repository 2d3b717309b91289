// GPU tier: the fp8 (e4m3) widening of templates/decode/fp8.cuh, bit for bit. Every one of the 256
// codes goes through widen_e4m3x8 to bf16 and to fp16 on the device and must equal the host's
// exact conversion (NaN codes: NaN), in groups of eight as the kernels call it; two more groups
// put the codes next to a NaN (0x78-0x7e, 0xf8-0xfe) in a group without one, for a path that
// treats NaN groups apart (session 5 tried one; it was slower). Skips with a message where no GPU is.
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "codegen/dtype.hpp"
#include "runtime/backend.hpp"
#include "templates/embedded.hpp"
#include "tests/gpu/gpu_engine.hpp"

namespace mlajit {
namespace {

constexpr const char* kWidenKernel = R"(#include "platform/nvidia.cuh"
#include "decode/numeric.cuh"
#include "decode/fp8.cuh"
MLJ_GLOBAL void mlj_widen_e4m3_test(const unsigned int* codes, unsigned short* bf16_out, unsigned short* fp16_out, int groups) {
  const int g = blockIdx.x * blockDim.x + threadIdx.x;
  if (g >= groups) return;
  const mlj::Vec16 b = mlj::widen_e4m3x8<true>(codes[2 * g], codes[2 * g + 1]);
  const mlj::Vec16 f = mlj::widen_e4m3x8<false>(codes[2 * g], codes[2 * g + 1]);
  for (int i = 0; i < 4; ++i) {
    bf16_out[8 * g + 2 * i] = (unsigned short)(b.w[i] & 0xffffu);
    bf16_out[8 * g + 2 * i + 1] = (unsigned short)(b.w[i] >> 16);
    fp16_out[8 * g + 2 * i] = (unsigned short)(f.w[i] & 0xffffu);
    fp16_out[8 * g + 2 * i + 1] = (unsigned short)(f.w[i] >> 16);
  }
}
)";

// Groups of eight codes: 0..255 in order, then 0x78-0x7e and 0xf8-0xfe each with a zero code.
std::vector<std::uint8_t> code_groups() {
  std::vector<std::uint8_t> codes;
  for (int c = 0; c < 256; ++c) codes.push_back(std::uint8_t(c));
  for (int c = 0x78; c < 0x7f; ++c) codes.push_back(std::uint8_t(c));
  codes.push_back(0x00);
  for (int c = 0xf8; c < 0xff; ++c) codes.push_back(std::uint8_t(c));
  codes.push_back(0x80);
  return codes;
}

void expect_exact(const char* type, std::uint8_t code, std::uint16_t got, float want, float got_value,
                  std::uint16_t want_bits) {
  if (std::isnan(want)) {
    EXPECT_TRUE(std::isnan(got_value)) << fmt::format("{} of e4m3 0x{:02x} (NaN): got bits 0x{:04x}", type, code, got);
  } else {
    EXPECT_EQ(got, want_bits) << fmt::format("{} of e4m3 0x{:02x} ({}): got 0x{:04x} ({})", type, code, want, got,
                                             got_value);
  }
}

TEST(Fp8Widen, EveryE4m3CodeIsExactInBf16AndFp16) {
  REQUIRE_GPU();
  runtime::Device& device = engine->device();
  Source source;
  source.kernel_name = "mlj_widen_e4m3_test";
  source.text = kWidenKernel;
  for (const char* path : {"platform/nvidia.cuh", "decode/numeric.cuh", "decode/fp8.cuh"}) {
    const templates::TemplateFile& f = templates::file(path);
    source.headers.push_back(SourceHeader{std::string(path), f.text, f.sha256});
  }
  const runtime::CodeObject code = runtime::backend(Backend::cuda).compile(source, device.info().target);
  auto module = device.load(code);
  runtime::Kernel& kernel = module->kernel("mlj_widen_e4m3_test");

  const std::vector<std::uint8_t> codes = code_groups();
  ASSERT_EQ(codes.size() % 8, 0u);
  int groups = int(codes.size() / 8);
  runtime::DeviceBuffer codes_d(device, codes.size());
  runtime::DeviceBuffer bf16_d(device, codes.size() * 2);
  runtime::DeviceBuffer fp16_d(device, codes.size() * 2);
  device.copy_to_device(codes_d.get(), codes.data(), codes.size());
  device.fill_bytes(bf16_d.get(), 0xee, codes.size() * 2);
  device.fill_bytes(fp16_d.get(), 0xee, codes.size() * 2);
  const void* codes_ptr = codes_d.get();
  void* bf16_ptr = bf16_d.get();
  void* fp16_ptr = fp16_d.get();
  void* args[] = {&codes_ptr, &bf16_ptr, &fp16_ptr, &groups};
  kernel.launch({1}, {64}, 0, nullptr, args, runtime::LaunchOrder::after_previous);
  device.synchronize();
  std::vector<std::uint16_t> bf16(codes.size()), fp16(codes.size());
  device.copy_to_host(bf16.data(), bf16_d.get(), codes.size() * 2);
  device.copy_to_host(fp16.data(), fp16_d.get(), codes.size() * 2);

  int nan_codes = 0;
  for (std::size_t i = 0; i < codes.size(); ++i) {
    const float want = fp8_e4m3_to_float(codes[i]);
    nan_codes += std::isnan(want) ? 1 : 0;
    expect_exact("bf16", codes[i], bf16[i], want, bf16_to_float(bf16[i]), float_to_bf16(want));
    expect_exact("fp16", codes[i], fp16[i], want, fp16_to_float(fp16[i]), float_to_fp16(want));
  }
  EXPECT_EQ(nan_codes, 2);  // 0x7f and 0xff: the host reference agrees that e4m3 ("fn") has two NaNs
}

}  // namespace
}  // namespace mlajit
