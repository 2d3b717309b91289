// The kernel cache: key hashing, the on-disk store (atomic publish, per-key locks, integrity
// checks, versioned layout, layers, size budget) and the compile-once protocol. Knows nothing
// about GPUs: the code object is bytes plus a JSON manifest.
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
// The read-only system layer: $MLAJIT_CACHE_SYSTEM_DIR, or nullopt.
std::optional<std::filesystem::path> default_system_root();

// <root>/v1/<backend>-<arch>/<shard>/<readable-name>.<hash16>/{key.json, manifest.json,
// code.cubin | code.hsaco}; see entry_files.hpp. The user layer (root) is read and written; an
// optional system layer (an admin's pre-warmed cache) is searched first and never written.
class DiskStore {
 public:
  explicit DiskStore(std::filesystem::path root, std::optional<std::filesystem::path> system_root = std::nullopt);

  const std::filesystem::path& root() const { return root_; }
  const std::optional<std::filesystem::path>& system_root() const { return system_root_; }
  // <root>/v1/<backend>-<arch>/<shard>/<entry_name>
  std::filesystem::path entry_dir(const KernelKey& key) const;

  // A verified entry, or nullopt on a miss. The system layer is searched first. A damaged user
  // entry (size / checksum / key mismatch) is moved aside into <root>/v1/quarantine, reported on
  // stderr and in `*quarantined` (the reason), and counts as a miss; a damaged system entry is
  // reported and skipped. A user-layer hit refreshes the entry's last-use stamp (its
  // directory's mtime, at most once a minute), which is what gc's LRU order reads.
  std::optional<Entry> load(const KernelKey& key, std::string* quarantined = nullptr) const;

  // Publishes atomically (temporary directory inside the root, fsync, rename). Returns false and
  // leaves nothing half-written when the disk refuses (read-only, full); the caller still has
  // the code object in memory.
  bool store(const KernelKey& key, const Entry& entry) const;

  // Compile-once across threads and processes: load; else take the key's lock, load again, else
  // call compile() and publish (then, with a size limit, evict least-recently-used entries).
  // `outcome` says which happened; `quarantined` as for load(). compile() throwing leaves the
  // store as it was.
  Entry get_or_create(const KernelKey& key, const std::function<Entry()>& compile, Outcome* outcome,
                      std::string* quarantined = nullptr) const;

  // How long get_or_create waits on a key's lock held by someone else: after `report_after` it
  // says once on stderr who holds it; after `give_up_after` it throws Error(cache_error).
  // Defaults 10 s and 600 s; tests shorten them.
  void set_lock_timeouts(std::chrono::milliseconds report_after, std::chrono::milliseconds give_up_after);
  // Byte budget of the user layer, enforced after every publish (nullopt: unbounded).
  void set_size_limit(std::optional<std::uint64_t> bytes) { size_limit_ = bytes; }
  std::optional<std::uint64_t> size_limit() const { return size_limit_; }

  // <root>/v1/locks/<hash>.lock: the key's lock file (never deleted; see key_lock.hpp).
  std::filesystem::path lock_path(const KernelKey& key) const;
  // <root>/v1/quarantine: where damaged entries are moved.
  std::filesystem::path quarantine_dir() const;

 private:
  std::optional<Entry> load_layer(const std::filesystem::path& layer_root, const KernelKey& key, bool writable,
                                  bool lock_held, std::string* quarantined) const;
  std::optional<Entry> load_any(const KernelKey& key, bool lock_held, std::string* quarantined) const;

  std::filesystem::path root_;
  std::optional<std::filesystem::path> system_root_;
  std::optional<std::uint64_t> size_limit_;
  std::chrono::milliseconds lock_report_after_{std::chrono::seconds(10)};
  std::chrono::milliseconds lock_give_up_after_{std::chrono::seconds(600)};
};

}  // namespace mlajit::cache
