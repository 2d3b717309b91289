// The default catalogue: the DeepSeek-V3 decode configurations users run, warmed ahead of time.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "codegen/spec.hpp"

namespace mlajit::tools {

// heads 16/32/64/128 x s_q 1/2/4 x page 1/64, bf16 q/kv/out, kv_lora_rank 512, rope 64.
std::vector<Spec> default_catalog();

// A JSON array of spec objects (the `--spec` format); throws invalid_argument naming the entry.
std::vector<Spec> catalog_from_json(const nlohmann::json& j, const std::string& origin);

}  // namespace mlajit::tools
