// Strict "{{key}}" renderer (fails on unknown and on unused keys, unlike permissive generators).
#include "codegen/render.hpp"

#include <set>

#include "codegen/error.hpp"

namespace mlajit {

std::string render(std::string_view text, const std::map<std::string, std::string>& values,
                   std::string_view template_name) {
  std::string out;
  out.reserve(text.size() + 256);
  std::set<std::string> used;
  std::size_t pos = 0;
  while (true) {
    const std::size_t open = text.find("{{", pos);
    if (open == std::string_view::npos) break;
    const std::size_t close = text.find("}}", open + 2);
    if (close == std::string_view::npos) {
      throw Error(ErrorCode::internal, "template '" + std::string(template_name) + "': unterminated '{{'");
    }
    const std::string key(text.substr(open + 2, close - open - 2));
    auto it = values.find(key);
    if (it == values.end()) {
      throw Error(ErrorCode::internal,
                  "template '" + std::string(template_name) + "' uses unknown key '" + key + "'");
    }
    out.append(text.substr(pos, open - pos));
    out.append(it->second);
    used.insert(key);
    pos = close + 2;
  }
  out.append(text.substr(pos));
  for (const auto& [key, value] : values) {
    if (!used.count(key)) {
      throw Error(ErrorCode::internal,
                  "template '" + std::string(template_name) + "' never uses key '" + key + "'");
    }
  }
  return out;
}

}  // namespace mlajit
