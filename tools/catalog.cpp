// Default catalogue and catalogue files.
#include "tools/catalog.hpp"

#include <nlohmann/json.hpp>

#include "codegen/error.hpp"

namespace mlajit::tools {

std::vector<Spec> default_catalog() {
  std::vector<Spec> specs;
  auto add = [&](std::initializer_list<int> heads_list, DType q_dtype, DType kv_dtype) {
    for (int heads : heads_list) {
      for (int s_q : {1, 2, 4}) {
        for (int page_size : {1, 64}) {
          Spec s;
          s.heads = heads;
          s.s_q = s_q;
          s.page_size = page_size;
          s.q_dtype = q_dtype;
          s.kv_dtype = kv_dtype;
          specs.push_back(s);
        }
      }
    }
  };
  add({16, 32, 64, 128}, DType::bf16, DType::bf16);
  add({16, 128}, DType::bf16, DType::fp8_e4m3);
  add({16, 128}, DType::fp8_e4m3, DType::fp8_e4m3);
  return specs;
}

std::vector<Spec> catalog_from_json(const nlohmann::json& j, const std::string& origin) {
  if (!j.is_array()) throw_invalid("catalog", "must be a JSON array of spec objects", origin);
  std::vector<Spec> specs;
  for (std::size_t i = 0; i < j.size(); ++i) {
    try {
      specs.push_back(spec_from_json(j[i]));
      validate(specs.back());
    } catch (const Error& e) {
      throw Error(e.code(), origin + " entry " + std::to_string(i) + ": " + e.what());
    }
  }
  return specs;
}

}  // namespace mlajit::tools
