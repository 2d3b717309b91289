// CUDA backend: driver API + NVRTC, both loaded with dlopen on first use.
#pragma once

#include "runtime/backend.hpp"

namespace mlajit::runtime::cuda {

Backend& instance();

}  // namespace mlajit::runtime::cuda
