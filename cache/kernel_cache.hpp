// The kernel cache: key hashing, the on-disk store (atomic publish, per-key locks, integrity
// checks, versioned layout) and the compile-once protocol. Knows nothing about GPUs: the code
// object is bytes plus a JSON manifest.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace mlajit::cache {

// Everything that decides what a code object contains. Nothing machine-specific (no paths).
struct KeyFields {
  nlohmann::json spec;          // canonical Spec JSON
  nlohmann::json tile;          // kernel-shaping TileConfig JSON (no num_splits)
  std::string backend;          // "cuda" | "hip"
  std::string arch;             // full arch string, e.g. "sm_90a"
  std::string compiler;         // "nvrtc" | "hiprtc"
  std::string compiler_version;
  int generator_version = 0;
  std::string template_digest;  // Source::template_digest()
  std::vector<std::string> compile_options;
};

struct KernelKey {
  std::string readable_name;  // e.g. mla_decode_q-bf16_..._w8
  std::string hash;           // lowercase hex SHA-256 of canonical()
  nlohmann::json fields;      // KeyFields as JSON (what key.json stores)

  std::string canonical() const;  // fields.dump(): sorted keys, no whitespace
  std::string short_hash() const { return hash.substr(0, 16); }
  // "<readable_name>.<short_hash>": the entry's directory name
  std::string entry_name() const { return readable_name + "." + short_hash(); }
};

KernelKey make_key(const KeyFields& fields, const std::string& readable_name);

// Lowercase hex SHA-256 (OpenSSL).
std::string sha256_hex(const void* data, std::size_t size);

struct Entry {
  std::vector<std::uint8_t> code;  // the code object
  nlohmann::json manifest;         // compile facts: registers, shared memory, spills, log, ms
};

enum class Outcome { memory_hit, disk_hit, compiled };

// Root of the user cache: $MLAJIT_CACHE_DIR, else $XDG_CACHE_HOME/mlajit, else ~/.cache/mlajit.
std::filesystem::path default_root();

class DiskStore {
 public:
  explicit DiskStore(std::filesystem::path root);

  const std::filesystem::path& root() const { return root_; }
  // <root>/v1/<backend>-<arch>/<shard>/<entry_name>
  std::filesystem::path entry_dir(const KernelKey& key) const;

  // A verified entry, or nullopt on a miss. A damaged entry (size / checksum / key mismatch) is
  // moved aside into <root>/v1/quarantine, reported on stderr, and counts as a miss.
  std::optional<Entry> load(const KernelKey& key) const;

  // Publishes atomically (temporary directory inside the root, fsync, rename). Returns false and
  // leaves nothing half-written when the disk refuses (read-only, full); the caller still has
  // the code object in memory.
  bool store(const KernelKey& key, const Entry& entry) const;

  // Compile-once across threads and processes: load; else take the key's lock, load again, else
  // call compile() and publish. `outcome` says which happened. compile() throwing leaves the
  // store as it was.
  Entry get_or_create(const KernelKey& key, const std::function<Entry()>& compile, Outcome* outcome) const;

  // How long get_or_create waits on a key's lock held by someone else: after `report_after` it
  // says once on stderr who holds it; after `give_up_after` it throws Error(cache_error).
  // Defaults 10 s and 600 s; tests shorten them.
  void set_lock_timeouts(std::chrono::milliseconds report_after, std::chrono::milliseconds give_up_after);

  // <root>/v1/locks/<hash>.lock: the key's lock file (never deleted; see kernel_cache.cpp).
  std::filesystem::path lock_path(const KernelKey& key) const;
  // <root>/v1/quarantine: where damaged entries are moved.
  std::filesystem::path quarantine_dir() const;

 private:
  std::filesystem::path root_;
  std::chrono::milliseconds lock_report_after_{std::chrono::seconds(10)};
  std::chrono::milliseconds lock_give_up_after_{std::chrono::seconds(600)};
};

}  // namespace mlajit::cache
