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

// The streaming-read kernel (templates/probe/stream_read.cuh), compiled for `device`; the read
// probe and the L2 flush (tools/bench/l2_flush.hpp) use it.
std::unique_ptr<runtime::Module> load_stream_read(runtime::Device& device);
// Reads `bytes` (a multiple of 16) at `data` once, after the previous work on the null stream;
// `sink` is a scratch buffer of at least 4 words a multiprocessor.
void launch_stream_read(runtime::Module& module, runtime::Device& device, const void* data, std::size_t bytes,
                        void* sink);

}  // namespace mlajit::bench
