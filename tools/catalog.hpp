// The default catalogue: the DeepSeek-V3 decode configurations users run, warmed ahead of time.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "codegen/spec.hpp"

namespace mlajit::tools {

// kv_lora_rank 512, rope 64, bf16 out, s_q 1/2/4 (decode and MTP) x page 1/64, for bf16 q/kv
// with heads 16/32/64/128 and for the FP8 forms (bf16 q x fp8 kv, fp8 q x fp8 kv) with heads
// 16/128 (DeepSeek-V3 at TP8 / TP1): 48 entries.
std::vector<Spec> default_catalog();

// A JSON array of spec objects (the `--spec` format); throws invalid_argument naming the entry.
std::vector<Spec> catalog_from_json(const nlohmann::json& j, const std::string& origin);

}  // namespace mlajit::tools
