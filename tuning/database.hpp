// The tuning database: per arch, the measured-best TileConfig of decode shape buckets, with the
// timings that justify it, the sweep it came from and the model parameters fitted to it. Pure:
// JSON in and out, merge, nearest-bucket lookup; files and the environment are registry.hpp's.
#pragma once

#include <limits>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "codegen/spec.hpp"
#include "tuning/choose.hpp"

namespace mlajit::tuning {

// What a database entry is keyed by. Everything else about a call (out dtype, LSE, soft-cap,
// the causal flag) changes neither which kernel shapes are valid nor their speed noticeably.
struct Bucket {
  int batch_bin = 0;    // floor(log2(batch))
  int rows = 16;        // heads * s_q: query rows per request
  int context_bin = 0;  // floor(log2(mean KV tokens per request)), 0 below 2 tokens
  DType q_dtype = DType::bf16;
  DType kv_dtype = DType::bf16;
  int page_size = 1;
  int kv_lora_rank = 512;
  int rope_dim = 64;

  auto operator<=>(const Bucket&) const = default;
};

Bucket bucket_of(const Spec& spec, const DecodeShape& shape);
// "b7.r16.c12.q-bf16.kv-bf16.ps64.d512-64": the entry's key in the JSON file.
std::string bucket_key(const Bucket& bucket);

// How far an entry's bucket is from a query's, for borrowing its kernel shape:
//   0.5 * |batch bins| + 1 * |log2 rows| + 0.5 * |context bins| + 0.25 * |log2 page size|
// (the tile depends on rows first; batch and context move the split count, which the model
// recomputes for a borrowed tile). Infinite when dtypes or dims differ: the kernel is not the same.
double bucket_distance(const Bucket& query, const Bucket& entry);
// Entries farther than this are not borrowed; the model decides alone.
inline constexpr double k_max_bucket_distance = 2.0;

// One timed configuration (tile.num_splits is the split count used).
struct Timing {
  TileConfig tile;
  double time_us = 0;
  std::string date;  // YYYY-MM-DD
  std::string card;  // device name
  double model_time_us = 0;  // history only: the model's choice in the same run
};

struct Measurement {
  TileConfig tile;  // with num_splits
  double time_us = 0;
};

struct Entry {
  Spec spec;                  // the spec swept (the bucket is derived from spec + shape)
  std::string shape_id;       // "S1", "C-h32-sq2-ps64", ...
  DecodeShape shape;          // batch, mean/max context, multiprocessors (ctas_per_sm unused)
  Timing best;                // the fastest valid configuration of the sweep
  Timing model;               // the model's own choice in the same sweep (no database)
  double max_abs_error = 0;   // of best against the float32 reference
  std::vector<Measurement> measurements;  // every valid candidate (the fit's input)
  std::vector<Timing> history;            // results a merge replaced or kept out, newest first
  Bucket bucket;  // bucket_of(spec, shape): set by sort_entries, which every edit ends with
};

struct Metadata {
  std::string arch;            // "sm_90a"
  std::string card;            // "NVIDIA H100 80GB HBM3"
  std::string driver;
  std::string compiler;        // "nvrtc 12.8"
  std::string mlajit_version;
  int generator_version = 0;
  std::string date;            // of the latest run merged in
  // Only a database measured on a GPU steers the engine; a placeholder or a simulated sweep
  // (`mlajit tune --simulate`) says false and is ignored by lookup.
  bool measured = false;
  std::string note;
  ModelParams model;           // fitted to the entries' measurements (defaults when not fitted)
  bool model_fitted = false;
};

struct Database {
  Metadata meta;
  std::vector<Entry> entries;  // sorted by bucket, one per bucket
};

inline constexpr int k_database_format = 1;

nlohmann::json to_json(const ModelParams& params);

// Throws invalid_argument naming `origin` and the entry on malformed input or a key that does
// not match its entry's bucket.
Database database_from_json(const nlohmann::json& j, const std::string& origin);
nlohmann::json to_json(const Database& db);
// The file text: two-space indentation, arrays of numbers and strings on one line.
std::string dump_database(const Database& db);

// Adds `incoming` (a newer run) to `db`. Per bucket: a new bucket is added; for a bucket both
// hold, when the same shape was measured on the same card the faster best stays (ties go to the
// newer run), otherwise the newer run's entry replaces the older (timings of different shapes or
// cards do not compare). Either way the other result goes into the kept entry's history with its
// date, card and the model's time. Metadata and model parameters become the newer run's.
void merge_into(Database& db, const Database& incoming);

// The entry for a bucket: the same bucket, else the nearest within k_max_bucket_distance (ties:
// the first in bucket order). nullptr when there is none.
struct Match {
  const Entry* entry = nullptr;
  double distance = std::numeric_limits<double>::infinity();
};
Match find_entry(const Database& db, const Bucket& bucket);

// Drops entries whose best tile the target rejects (validate), e.g. after a kernel family's limits
// changed, and fp8-cache entries swept before the mma family served fp8 caches (measurements, none
// of family mma, where the model now picks mma); the model decides for those until a re-tune. Returns how many. Both depend on dtypes, dims, the rope style and the target only,
// which an entry's bucket fixes, so what passes here holds for every call that finds the entry.
std::size_t drop_invalid_entries(Database& db, const Target& target);

// Recomputes each entry's bucket, sorts by bucket and keeps one entry per bucket (the last
// wins): the canonical order lookup tie-breaks on and files are written in.
void sort_entries(Database& db);

}  // namespace mlajit::tuning
