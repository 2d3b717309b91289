// Element types of MLA tensors, their names and host-side conversions (for references and tests).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace mlajit {

enum class DType { bf16, fp16, fp8_e4m3, fp32 };

std::string_view dtype_name(DType t);
// Accepts the canonical names plus the aliases "bfloat16", "float16", "half", "fp8", "float32".
// Throws invalid_argument naming `argument` for anything else.
DType parse_dtype(std::string_view text, std::string_view argument);
std::size_t dtype_size(DType t);

// Host conversions (round to nearest even; fp8 e4m3 saturates to +-448, as FP8 caches do).
float bf16_to_float(std::uint16_t bits);
std::uint16_t float_to_bf16(float value);
float fp16_to_float(std::uint16_t bits);
std::uint16_t float_to_fp16(float value);
float fp8_e4m3_to_float(std::uint8_t bits);
std::uint8_t float_to_fp8_e4m3(float value);

// Reads element `index` of a buffer of type `t` as float; writes likewise.
float load_element(const void* data, DType t, std::size_t index);
void store_element(void* data, DType t, std::size_t index, float value);

}  // namespace mlajit
