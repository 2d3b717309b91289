// How the timed runs of `mlajit bench` and `mlajit tune` empty L2 of the problem's data first
// (BENCH.md: a real decode step does not find its KV in L2).
//   read  (default): stream a 512 MiB buffer through L2 with the roofline's read kernel; L2 is left
//         holding clean lines, so the timed call pays only for its own traffic, as the read probe
//         it is compared against does.
//   write: fill that buffer (a memset); L2 is left full of dirty lines whose write-back to DRAM
//         lands inside the timed call (about L2's size in extra DRAM traffic: ~12 us on an H200).
//   none:  nothing between runs.
#pragma once

#include <memory>
#include <string>

#include <CLI/CLI.hpp>

#include "runtime/backend.hpp"

namespace mlajit::tools {

enum class L2Flush { read, write, none };

std::string flush_name(L2Flush mode);
// Adds --flush read|write|none (default read) to a command.
void add_flush_option(CLI::App& cmd, L2Flush& mode);

// Does the chosen flush, on the null stream, before each timed run.
class L2Flusher {
 public:
  L2Flusher(runtime::Device& device, L2Flush mode);
  void flush();

 private:
  runtime::Device& device_;
  L2Flush mode_;
  runtime::DeviceBuffer buffer_;
  runtime::DeviceBuffer sink_;
  std::unique_ptr<runtime::Module> module_;
  unsigned fills_ = 0;
};

}  // namespace mlajit::tools
