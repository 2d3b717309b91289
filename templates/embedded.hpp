// Kernel templates embedded into the library at build time (see cmake/EmbedTemplates.cmake).
#pragma once

#include <span>
#include <string_view>

namespace mlajit::templates {

struct TemplateFile {
  std::string_view path;    // relative to templates/, e.g. "decode/portable.cuh"
  std::string_view text;    // the file's bytes
  std::string_view sha256;  // hex digest of text, computed at build time
};

std::span<const TemplateFile> all_files();

// The file at `path`; throws std::out_of_range naming the path when absent.
const TemplateFile& file(std::string_view path);

}  // namespace mlajit::templates
