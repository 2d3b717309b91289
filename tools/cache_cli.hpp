// `mlajit cache ls|stat|verify|gc|export|import|explain`: look into, check, bound and ship the
// on-disk kernel cache. Every verb takes --json and --dir (default: the user cache root).
#pragma once

#include <cstdint>
#include <string>

#include <CLI/CLI.hpp>

#include "tools/spec_flags.hpp"

namespace mlajit::tools {

class CacheCommand {
 public:
  // Registers `cache` and its verbs on `app`. CLI11 keeps pointers into this object: do not move it.
  explicit CacheCommand(CLI::App& app);
  CacheCommand(const CacheCommand&) = delete;
  CacheCommand& operator=(const CacheCommand&) = delete;

  bool selected() const { return command_->parsed(); }
  // Runs the verb that was parsed; returns the exit status (1: bad entries, or something left undone).
  int run() const;

 private:
  int ls() const;
  int stat() const;
  int verify() const;
  int gc() const;
  int export_bundle() const;
  int import_bundle() const;
  int explain() const;

  CLI::App* command_ = nullptr;
  CLI::App* ls_ = nullptr;
  CLI::App* stat_ = nullptr;
  CLI::App* verify_ = nullptr;
  CLI::App* gc_ = nullptr;
  CLI::App* export_ = nullptr;
  CLI::App* import_ = nullptr;
  CLI::App* explain_ = nullptr;

  std::string dir_;        // --dir
  bool json_ = false;      // --json
  std::string max_size_;   // gc --max-size
  std::string file_;       // export / import FILE
  SpecFlags spec_flags_;   // explain
  std::string arch_;       // explain --arch
};

}  // namespace mlajit::tools
