// Target parsing and per-architecture limits.
#include "codegen/target.hpp"

#include <charconv>

#include "codegen/error.hpp"

namespace mlajit {

std::string_view backend_name(Backend b) { return b == Backend::cuda ? "cuda" : "hip"; }

int Target::warp_size() const { return backend == Backend::cuda ? 32 : 64; }

int Target::sm_version() const {
  if (backend != Backend::cuda) return 0;
  int value = 0;
  const char* begin = arch.data() + 3;
  std::from_chars(begin, arch.data() + arch.size(), value);
  return value;
}

int Target::max_shared_bytes() const {
  if (backend == Backend::hip) return arch == "gfx950" ? 160 * 1024 : 64 * 1024;
  int sm = sm_version();
  if (sm >= 90) return 227 * 1024;
  if (sm == 80 || sm == 87) return 163 * 1024;
  return 99 * 1024;  // sm_86, sm_89
}

Target parse_target(std::string_view arch, std::string_view argument) {
  const std::string text(arch);
  static constexpr std::string_view k_supported =
      "an NVIDIA arch sm_80 or later (sm_80, sm_86, sm_89, sm_90, sm_90a, ...) or an AMD arch "
      "(gfx90a, gfx942, gfx950)";
  if (text.rfind("sm_", 0) == 0 && text.size() >= 5) {
    int value = 0;
    std::string digits = text.substr(3);
    bool arch_specific = !digits.empty() && digits.back() == 'a';
    if (arch_specific) digits.pop_back();
    auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
    if (ec == std::errc() && end == digits.data() + digits.size() && value >= 80) {
      return Target{Backend::cuda, text};
    }
  }
  if (text == "gfx90a" || text == "gfx942" || text == "gfx950") return Target{Backend::hip, text};
  throw_invalid(std::string(argument), std::string(k_supported), "'" + text + "'");
}

}  // namespace mlajit
