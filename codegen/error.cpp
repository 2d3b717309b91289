// Helpers for building mlajit::Error messages.
#include "codegen/error.hpp"

namespace mlajit {

void throw_invalid(const std::string& argument, const std::string& constraint,
                   const std::string& got) {
  throw Error(ErrorCode::invalid_argument,
              "invalid argument '" + argument + "': " + constraint + " (got " + got + ")");
}

}  // namespace mlajit
