// Where generated code runs: a backend (CUDA via NVRTC, HIP via hipRTC) and an architecture name.
#pragma once

#include <string>
#include <string_view>

namespace mlajit {

enum class Backend { cuda, hip };

std::string_view backend_name(Backend b);

struct Target {
  Backend backend = Backend::cuda;
  std::string arch = "sm_90a";  // "sm_80", "sm_86", "sm_89", "sm_90", "sm_90a", "gfx90a", "gfx942", "gfx950"

  // Lanes that run in lock step: 32 on NVIDIA, 64 on the AMD CDNA targets we support.
  int warp_size() const;
  // Shared memory (LDS) one CTA may use, with the opt-in limit on NVIDIA.
  int max_shared_bytes() const;
  // NVIDIA compute capability as major*10+minor (90 for sm_90a); 0 on AMD.
  int sm_version() const;

  bool operator==(const Target&) const = default;
};

// Parses an arch name and picks its backend; throws invalid_argument naming `argument` otherwise.
Target parse_target(std::string_view arch, std::string_view argument = "arch");

}  // namespace mlajit
