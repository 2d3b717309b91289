// Every MLAJIT_* environment variable, read in this one place (listed by `mlajit info`).
// It sits in cache/, the lowest module with effects, so that cache and runtime can both use it.
#pragma once

#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace mlajit {

struct EnvironmentVariable {
  std::string_view name;
  std::string_view meaning;
};

// The variables mlajit reads, with what each means.
std::span<const EnvironmentVariable> environment_variables();

// Value of a variable from environment_variables(); nullopt when unset or empty.
// Throws Error(internal) for a name not in the table, so no variable goes undocumented.
std::optional<std::string> read_environment(std::string_view name);

}  // namespace mlajit
