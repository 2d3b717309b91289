// The HIP Backend object: hipRTC for compiling (hip_compiler), the module API for devices
// (hip_device); both libraries are dlopen()ed on first use (hip_library).
#include "runtime/hip/hip_backend.hpp"

#include <fmt/format.h>

#include "codegen/error.hpp"
#include "runtime/hip/hip_compiler.hpp"
#include "runtime/hip/hip_device.hpp"
#include "runtime/hip/hip_library.hpp"

namespace mlajit::runtime::hip {

namespace {

class HipBackend final : public Backend {
 public:
  mlajit::Backend kind() const override { return mlajit::Backend::hip; }

  bool compiler_available() const override { return compiler().loaded(); }

  CompilerInfo compiler_info() override { return hiprtc_info(); }

  CodeObject compile(const Source& source, const Target& target) override {
    return compile_hsaco(source, target);
  }

  std::vector<std::string> compile_options(const Target& target) const override {
    return hiprtc_options(target);
  }

  int device_count() override { return visible_device_count(); }

  std::string unavailable_reason() override { return device_unavailable_reason(); }

  std::unique_ptr<Device> open_device(int ordinal) override {
    const int count = device_count();
    if (count == 0) throw Error(ErrorCode::backend_unavailable, "no HIP device: " + unavailable_reason());
    if (ordinal < 0 || ordinal >= count) {
      throw Error(ErrorCode::invalid_argument,
                  fmt::format("invalid argument 'device': must be in [0, {}) (got {})", count, ordinal));
    }
    return open_hip_device(ordinal);
  }
};

}  // namespace

Backend& instance() {
  static HipBackend backend;
  return backend;
}

}  // namespace mlajit::runtime::hip
