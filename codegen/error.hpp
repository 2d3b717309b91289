// The one exception type of mlajit: a code the C ABI can return plus a readable message.
#pragma once

#include <stdexcept>
#include <string>

namespace mlajit {

// Values match mlajit_status in include/mlajit/mlajit.h.
enum class ErrorCode {
  invalid_argument = 1,   // a caller's argument breaks a documented constraint
  unsupported = 2,        // valid, but no kernel family/target handles it yet
  compile_failed = 3,     // NVRTC / hipRTC rejected generated source (message holds the log)
  backend_unavailable = 4,// libcuda / libnvrtc / libamdhip64 missing, or no device
  device_error = 5,       // a driver call failed
  cache_error = 6,        // the kernel cache could not be used
  internal = 7,
};

class Error : public std::runtime_error {
 public:
  Error(ErrorCode code, const std::string& message) : std::runtime_error(message), code_(code) {}
  ErrorCode code() const noexcept { return code_; }

 private:
  ErrorCode code_;
};

// Throws ErrorCode::invalid_argument with "argument: constraint (got value)".
[[noreturn]] void throw_invalid(const std::string& argument, const std::string& constraint,
                                const std::string& got);

}  // namespace mlajit
