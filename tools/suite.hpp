// The decode shapes of BENCH.md (S1-S8) and shape files: what `mlajit bench` times and
// `mlajit tune` sweeps by default.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "codegen/spec.hpp"
#include "reference/decode_reference.hpp"

namespace mlajit::tools {

struct Shape {
  std::string id;
  int batch = 1;
  int s_q = 1;
  int heads = 16;
  int context = 4096;   // tokens per request (uniform)
  int context_min = 0;  // > 0: uniform random in [context_min, context] (seed 0)
  DType kv_dtype = DType::bf16;
  int page_size = 64;
  std::string stresses;
  DType q_dtype = DType::bf16;

  // bf16 output, DeepSeek-V3 dims.
  Spec spec() const;
};

std::vector<Shape> suite();
// {id, batch, s_q, heads, context, context_min, q_dtype, kv_dtype, page_size}; missing keys take
// defaults.
Shape shape_from_json(const nlohmann::json& j);
// The suite shapes named by `ids` (all when empty), or the shapes of a JSON array file when
// `file` is set; invalid_argument naming the option otherwise.
std::vector<Shape> select_shapes(const std::vector<std::string>& ids, const std::string& file);
// Tokens per request: `context` each, or the seeded random lengths of a ragged shape.
std::vector<int> context_lengths(const Shape& s);
// The host problem of a shape (seed 0, fast fill, no padding pages), as bench and tune time it.
reference::DecodeProblem make_problem(const Shape& s);

}  // namespace mlajit::tools
