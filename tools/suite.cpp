// BENCH.md's decode suite and shape files.
#include "tools/suite.hpp"

#include <algorithm>
#include <random>

#include <nlohmann/json.hpp>

#include "codegen/error.hpp"
#include "tools/spec_flags.hpp"

namespace mlajit::tools {

Spec Shape::spec() const {
  Spec s;
  s.heads = heads;
  s.s_q = s_q;
  s.page_size = page_size;
  s.q_dtype = q_dtype;
  s.kv_dtype = kv_dtype;
  return s;
}

std::vector<Shape> suite() {
  return {
      {"S1", 128, 1, 16, 4096, 0, DType::bf16, 64, "memory-bound, TP8 serving"},
      {"S2", 64, 1, 128, 4096, 0, DType::bf16, 64, "compute-bound, TP1 / DP attention"},
      {"S3", 64, 1, 16, 16384, 256, DType::bf16, 64, "load balance across SMs"},
      {"S4", 128, 2, 16, 4096, 0, DType::bf16, 64, "MTP / speculative verify"},
      {"S5", 4, 1, 16, 32768, 0, DType::bf16, 64, "small batch, long context: split-K"},
      {"S6", 32, 1, 64, 8192, 0, DType::bf16, 64, "mid head count"},
      {"S7", 128, 1, 16, 4096, 0, DType::fp8_e4m3, 64, "FP8 KV cache"},
      {"S8", 128, 1, 16, 4096, 0, DType::bf16, 1, "token-level pages"},
  };
}

Shape shape_from_json(const nlohmann::json& j) {
  Shape s;
  s.id = j.value("id", std::string("custom"));
  s.batch = j.value("batch", 1);
  s.s_q = j.value("s_q", 1);
  s.heads = j.value("heads", 16);
  s.context = j.value("context", 4096);
  s.context_min = j.value("context_min", 0);
  s.q_dtype = parse_dtype(j.value("q_dtype", std::string("bf16")), "q_dtype");
  s.kv_dtype = parse_dtype(j.value("kv_dtype", std::string("bf16")), "kv_dtype");
  s.page_size = j.value("page_size", 64);
  return s;
}

std::vector<Shape> select_shapes(const std::vector<std::string>& ids, const std::string& file) {
  std::vector<Shape> shapes;
  if (!file.empty()) {
    const nlohmann::json j = read_json_file(file, "--shapes");
    if (!j.is_array()) throw_invalid("--shapes", "must hold a JSON array of shape objects", file);
    for (const auto& s : j) shapes.push_back(shape_from_json(s));
    return shapes;
  }
  for (const Shape& s : suite()) {
    if (ids.empty() || std::find(ids.begin(), ids.end(), s.id) != ids.end()) shapes.push_back(s);
  }
  for (const std::string& id : ids) {
    if (std::none_of(shapes.begin(), shapes.end(), [&](const Shape& s) { return s.id == id; })) {
      throw_invalid("--shape", "must be one of S1..S8", id);
    }
  }
  return shapes;
}

std::vector<int> context_lengths(const Shape& s) {
  std::vector<int> lens(s.batch, s.context);
  if (s.context_min > 0) {
    std::mt19937 rng(0);
    std::uniform_int_distribution<int> dist(s.context_min, s.context);
    for (int& l : lens) l = dist(rng);
  }
  return lens;
}

reference::DecodeProblem make_problem(const Shape& s) {
  reference::ProblemOptions po;
  po.kv_lens = context_lengths(s);
  po.seed = 0;
  po.fast_fill = true;
  po.spare_pages = 0;
  po.extra_indices = 0;
  return reference::make_problem(s.spec(), po);
}

}  // namespace mlajit::tools
