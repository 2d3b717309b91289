// DType names and exact host conversions, used by the float32 reference and by tests.
#include "codegen/dtype.hpp"

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <string>

#include "codegen/error.hpp"

namespace mlajit {

std::string_view dtype_name(DType t) {
  switch (t) {
    case DType::bf16: return "bf16";
    case DType::fp16: return "fp16";
    case DType::fp8_e4m3: return "fp8_e4m3";
    case DType::fp32: return "fp32";
  }
  return "?";
}

DType parse_dtype(std::string_view text, std::string_view argument) {
  if (text == "bf16" || text == "bfloat16") return DType::bf16;
  if (text == "fp16" || text == "float16" || text == "half") return DType::fp16;
  if (text == "fp8_e4m3" || text == "fp8" || text == "e4m3") return DType::fp8_e4m3;
  if (text == "fp32" || text == "float32" || text == "float") return DType::fp32;
  throw_invalid(std::string(argument), "one of bf16, fp16, fp8_e4m3, fp32", "'" + std::string(text) + "'");
}

std::size_t dtype_size(DType t) {
  switch (t) {
    case DType::bf16:
    case DType::fp16: return 2;
    case DType::fp8_e4m3: return 1;
    case DType::fp32: return 4;
  }
  return 0;
}

float bf16_to_float(std::uint16_t bits) { return std::bit_cast<float>(std::uint32_t(bits) << 16); }

std::uint16_t float_to_bf16(float value) {
  std::uint32_t u = std::bit_cast<std::uint32_t>(value);
  if (std::isnan(value)) return std::uint16_t((u >> 16) | 0x40);  // keep it a quiet NaN
  u += 0x7fff + ((u >> 16) & 1);                                   // round to nearest even
  return std::uint16_t(u >> 16);
}

float fp16_to_float(std::uint16_t bits) { return float(std::bit_cast<_Float16>(bits)); }

std::uint16_t float_to_fp16(float value) { return std::bit_cast<std::uint16_t>(_Float16(value)); }

namespace {

// All 256 e4m3 (fn variant: no infinities, 0x7f/0xff are NaN) values.
const std::array<float, 256>& fp8_table() {
  static const std::array<float, 256> table = [] {
    std::array<float, 256> t{};
    for (int b = 0; b < 256; ++b) {
      int sign = b >> 7, exponent = (b >> 3) & 0xf, mantissa = b & 7;
      float magnitude;
      if (exponent == 0xf && mantissa == 7) {
        magnitude = NAN;
      } else if (exponent == 0) {
        magnitude = std::ldexp(float(mantissa), -9);
      } else {
        magnitude = std::ldexp(1.0f + float(mantissa) / 8.0f, exponent - 7);
      }
      t[b] = sign ? -magnitude : magnitude;
    }
    return t;
  }();
  return table;
}

}  // namespace

float fp8_e4m3_to_float(std::uint8_t bits) { return fp8_table()[bits]; }

std::uint8_t float_to_fp8_e4m3(float value) {
  if (std::isnan(value)) return 0x7f;
  const auto& table = fp8_table();
  const float magnitude = std::fabs(value);
  // Positive codes 0..0x7e are increasing: find the first >= magnitude, then pick the nearer of
  // it and its predecessor, ties to the even code (round to nearest even); saturate at 0x7e.
  const auto first = table.begin(), last = table.begin() + 0x7f;
  const int above = int(std::lower_bound(first, last, magnitude) - first);
  int best = std::min(above, 0x7e);
  if (above > 0 && above <= 0x7e) {
    const float below_err = magnitude - table[above - 1], above_err = table[above] - magnitude;
    if (below_err < above_err || (below_err == above_err && ((above - 1) & 1) == 0)) best = above - 1;
  }
  return std::uint8_t(best | (std::signbit(value) ? 0x80 : 0));
}

float load_element(const void* data, DType t, std::size_t index) {
  switch (t) {
    case DType::bf16: return bf16_to_float(static_cast<const std::uint16_t*>(data)[index]);
    case DType::fp16: return fp16_to_float(static_cast<const std::uint16_t*>(data)[index]);
    case DType::fp8_e4m3: return fp8_e4m3_to_float(static_cast<const std::uint8_t*>(data)[index]);
    case DType::fp32: return static_cast<const float*>(data)[index];
  }
  return NAN;
}

void store_element(void* data, DType t, std::size_t index, float value) {
  switch (t) {
    case DType::bf16: static_cast<std::uint16_t*>(data)[index] = float_to_bf16(value); return;
    case DType::fp16: static_cast<std::uint16_t*>(data)[index] = float_to_fp16(value); return;
    case DType::fp8_e4m3: static_cast<std::uint8_t*>(data)[index] = float_to_fp8_e4m3(value); return;
    case DType::fp32: static_cast<float*>(data)[index] = value; return;
  }
}

}  // namespace mlajit
