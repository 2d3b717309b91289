// Lookup over the embedded template table.
#include "templates/embedded.hpp"

#include <stdexcept>
#include <string>

namespace mlajit::templates {

const TemplateFile& file(std::string_view path) {
  for (const TemplateFile& f : all_files()) {
    if (f.path == path) return f;
  }
  throw std::out_of_range("no embedded template named '" + std::string(path) + "'");
}

}  // namespace mlajit::templates
