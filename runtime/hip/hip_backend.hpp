// HIP backend: HIP runtime (module API) + hipRTC, both loaded with dlopen on first use.
#pragma once

#include "runtime/backend.hpp"

namespace mlajit::runtime::hip {

Backend& instance();

}  // namespace mlajit::runtime::hip
