// Kernel resources (VGPRs, SGPRs, LDS, scratch, spills) read from an AMD code object's metadata
// note, so they are known right after hipRTC, without a device.
#pragma once

#include <cstdint>
#include <map>
#include <span>
#include <string>

#include "runtime/backend.hpp"

namespace mlajit::runtime::hip {

struct CodeObjectNotes {
  std::map<std::string, KernelResources> kernels;  // by kernel name; origin "code-object notes"
  std::string failure;  // why nothing could be read ("built without LLVM", a parse error); else empty
};

// Reads the NT_AMDGPU_METADATA note (msgpack, code object v3 and later) of an hsaco ELF, or of
// the amdgcn entry of a clang offload bundle. Never throws.
CodeObjectNotes read_code_object_notes(std::span<const std::uint8_t> binary);

}  // namespace mlajit::runtime::hip
