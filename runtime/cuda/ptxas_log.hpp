// Registers, shared memory, stack and spills per kernel from NVRTC's ptxas log (--ptxas-options=-v),
// known at compile time without a device.
#pragma once

#include <map>
#include <string>

#include "runtime/backend.hpp"

namespace mlajit::runtime::cuda {

std::map<std::string, KernelResources> parse_ptxas_log(const std::string& log);

}  // namespace mlajit::runtime::cuda
