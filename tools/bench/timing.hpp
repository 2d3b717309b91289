// Device side of a timed decode, shared by `mlajit bench` and `mlajit tune`: a host problem
// uploaded once, GPU-event timing with L2 flushed between runs (BENCH.md; tools/bench/l2_flush.hpp),
// the output read back.
#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <vector>

#include "reference/decode_reference.hpp"
#include "runtime/engine.hpp"
#include "tools/bench/l2_flush.hpp"
#include "tools/decode_check.hpp"

namespace mlajit::tools {

// Makes the workspace large enough for a call with `tile` (nullopt: the engine's choice).
void ensure_workspace(Engine& engine, DeviceProblem& d, const std::optional<TileConfig>& tile);
// The first `rows` (token x head) output rows as floats.
std::vector<float> download_output(Engine& engine, const DeviceProblem& d, const Spec& spec, long long rows);

// Median device time of a call between two GPU events, L2 flushed (when asked) before each run.
class DecodeTimer {
 public:
  DecodeTimer(runtime::Device& device, L2Flush flush);
  ~DecodeTimer();
  DecodeTimer(const DecodeTimer&) = delete;
  DecodeTimer& operator=(const DecodeTimer&) = delete;

  // `warmup` untimed calls, then the median of `runs` timed ones, in ms.
  double median_ms(const std::function<void()>& call, int warmup, int runs);

 private:
  runtime::Device& device_;
  L2Flusher flusher_;
  void* start_ = nullptr;
  void* end_ = nullptr;
};

// Today's date (UTC), YYYY-MM-DD.
std::string today();

}  // namespace mlajit::tools
