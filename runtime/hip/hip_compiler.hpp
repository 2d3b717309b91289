// hipRTC: generated source -> hsaco for an AMD arch, with no device needed.
#pragma once

#include <string>
#include <vector>

#include "runtime/backend.hpp"

namespace mlajit::runtime::hip {

// What compile_hsaco passes to hipRTC for `target`.
std::vector<std::string> hiprtc_options(const Target& target);

// "hiprtc" and its version; throws Error(backend_unavailable) when hipRTC is missing.
CompilerInfo hiprtc_info();

// Compiles source.text with source.headers in memory. Throws Error(compile_failed) naming the
// kernel with the full log, Error(backend_unavailable) when hipRTC is missing.
CodeObject compile_hsaco(const Source& source, const Target& target);

}  // namespace mlajit::runtime::hip
