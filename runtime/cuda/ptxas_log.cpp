// Parser of ptxas -v output.
#include "runtime/cuda/ptxas_log.hpp"

#include <algorithm>
#include <charconv>
#include <string_view>

namespace mlajit::runtime::cuda {

namespace {

// The integer that ends right before `suffix` in `line` (e.g. "40" of "Used 40 registers"); -1
// when the suffix is absent.
int number_before(std::string_view line, std::string_view suffix) {
  const std::size_t at = line.find(suffix);
  if (at == std::string_view::npos) return -1;
  std::size_t begin = at;
  while (begin > 0 && line[begin - 1] >= '0' && line[begin - 1] <= '9') --begin;
  int value = -1;
  std::from_chars(line.data() + begin, line.data() + at, value);
  return value;
}

}  // namespace

// Per-entry resources from NVRTC's log with --ptxas-options=-v (known without a device):
//   ptxas info    : Function properties for mla_decode_stage1
//       0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
//   ptxas info    : Used 128 registers, used 1 barriers, 0 bytes smem, 400 bytes cmem[0]
// Plain string scanning: no backtracking regex over compiler output of unknown length.
std::map<std::string, KernelResources> parse_ptxas_log(const std::string& log) {
  std::map<std::string, KernelResources> out;
  constexpr std::string_view k_function = "Function properties for ";
  std::string current;
  std::size_t pos = 0;
  while (pos < log.size()) {
    std::size_t end = log.find('\n', pos);
    if (end == std::string::npos) end = log.size();
    const std::string_view line(log.data() + pos, end - pos);
    pos = end + 1;
    if (const std::size_t at = line.find(k_function); at != std::string_view::npos) {
      std::string_view name = line.substr(at + k_function.size());
      name = name.substr(0, name.find_first_of(" \t\r"));
      current = std::string(name);
      out[current].origin = "ptxas";
    } else if (current.empty()) {
      continue;
    } else if (line.find(" bytes stack frame") != std::string_view::npos) {
      out[current].local_bytes = number_before(line, " bytes stack frame");
      out[current].spill_stores = number_before(line, " bytes spill stores");
      out[current].spill_loads = number_before(line, " bytes spill loads");
    } else if (line.find(" registers") != std::string_view::npos && line.find("Used ") != std::string_view::npos) {
      out[current].registers = number_before(line, " registers");
      out[current].shared_bytes = std::max(0, number_before(line, " bytes smem"));
    }
  }
  return out;
}

}  // namespace mlajit::runtime::cuda
