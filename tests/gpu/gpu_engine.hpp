// The gpu tier's shared engine and its skip: one Engine on CUDA device 0 per test binary, or a
// GTEST_SKIP naming why there is no GPU.
#pragma once

#include <memory>

#include <gtest/gtest.h>

#include "runtime/engine.hpp"

namespace mlajit {

inline Engine* shared_engine() {
  static std::unique_ptr<Engine> engine = []() -> std::unique_ptr<Engine> {
    if (runtime::backend(Backend::cuda).device_count() == 0) return nullptr;
    return std::make_unique<Engine>(0, Backend::cuda);
  }();
  return engine.get();
}

}  // namespace mlajit

#define REQUIRE_GPU()                                                                                   \
  Engine* engine = shared_engine();                                                                     \
  if (engine == nullptr) {                                                                              \
    GTEST_SKIP() << "no CUDA GPU on this machine (" << runtime::backend(Backend::cuda).unavailable_reason() \
                 << "): gpu tier skipped, run it on a GPU machine";                                     \
  }
