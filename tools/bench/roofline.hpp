// Roofline probes measured in the same run as the benchmark: DRAM read bandwidth (a streaming
// kernel over >= 4 GiB) and bf16 tensor throughput (a large cuBLASLt matrix product).
#pragma once

#include "runtime/backend.hpp"

namespace mlajit::bench {

struct Roofline {
  double read_gb_s = 0;       // GB/s (1e9 bytes)
  double bf16_tflop_s = 0;    // dense bf16 TFLOP/s
  std::string bf16_note;      // how the matrix probe ran, or why it did not
};

Roofline measure_roofline(runtime::Device& device);

}  // namespace mlajit::bench
