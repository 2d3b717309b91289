// The one substitution mechanism for templates: "{{name}}" placeholders, strict both ways.
#pragma once

#include <map>
#include <string>
#include <string_view>

namespace mlajit {

// Replaces every {{key}} in `text`. Throws Error(internal) naming the key when the text uses a
// key that `values` lacks, or when `values` holds a key the text never uses.
std::string render(std::string_view text, const std::map<std::string, std::string>& values,
                   std::string_view template_name);

}  // namespace mlajit
