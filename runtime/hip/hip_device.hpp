// AMD devices through the HIP runtime module API: discovery, memory, module load and launch.
#pragma once

#include <memory>
#include <string>

#include "runtime/backend.hpp"

namespace mlajit::runtime::hip {

// hipInit + hipGetDeviceCount, once per process; 0 (never throws) when the runtime or a GPU is missing.
int visible_device_count();
// Why visible_device_count() is 0; empty when there are devices.
std::string device_unavailable_reason();

// Opens device `ordinal` (0 <= ordinal < visible_device_count()); throws Error(device_error).
std::unique_ptr<Device> open_hip_device(int ordinal);

}  // namespace mlajit::runtime::hip
