// Tuning database: JSON form, merge and nearest-bucket lookup.
#include "tuning/database.hpp"

#include <algorithm>
#include <bit>
#include <cmath>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "codegen/error.hpp"

namespace mlajit::tuning {

namespace {

// floor(log2(v)) for v >= 1, else 0; exact, and cheap enough for every decode call.
int floor_log2(double v) { return v < 2.0 ? 0 : int(std::bit_width((unsigned long long)v)) - 1; }

// |log2(a / b)|, without a logarithm when both are powers of two (page sizes, most row counts):
// lookup runs on every decode call.
double log2_ratio(int a, int b) {
  if (a == b) return 0.0;
  a = std::max(a, 1);
  b = std::max(b, 1);
  if (std::has_single_bit(unsigned(a)) && std::has_single_bit(unsigned(b))) {
    return std::abs(std::countr_zero(unsigned(a)) - std::countr_zero(unsigned(b)));
  }
  return std::fabs(std::log2(double(a) / double(b)));
}

using nlohmann::json;

// ---- JSON helpers: every read names the file, the entry and the field --------------------------
template <class T>
T get(const json& j, const char* key, const std::string& where) {
  auto it = j.find(key);
  if (it == j.end()) throw_invalid(where, fmt::format("is missing '{}'", key), j.dump());
  try {
    return it->get<T>();
  } catch (const json::exception&) {
    throw_invalid(where, fmt::format("'{}' has the wrong JSON type", key), it->dump());
  }
}

template <class T>
T get_or(const json& j, const char* key, T fallback, const std::string& where) {
  return j.contains(key) ? get<T>(j, key, where) : fallback;
}

// A tile written as [family, heads_per_cta, tokens_per_tile, warps, stages, num_splits].
json tile_row(const TileConfig& t) {
  return json::array({family_name(t.family), t.heads_per_cta, t.tokens_per_tile, t.warps, t.stages, t.num_splits});
}

TileConfig tile_from_row(const json& row, const std::string& where) {
  if (!row.is_array() || row.size() < 6) {
    throw_invalid(where, "must be [family, heads_per_cta, tokens_per_tile, warps, stages, num_splits, ...]", row.dump());
  }
  try {
    return tile_from_json(json{{"family", row[0]}, {"heads_per_cta", row[1]}, {"tokens_per_tile", row[2]},
                               {"warps", row[3]}, {"stages", row[4]}, {"num_splits", row[5]}});
  } catch (const Error& e) {
    throw_invalid(where, e.what(), row.dump());
  }
}

json timing_json(const Timing& t, bool with_model_time) {
  json j{{"tile", to_json(t.tile)}, {"time_us", t.time_us}, {"date", t.date}, {"card", t.card}};
  if (with_model_time) j["model_time_us"] = t.model_time_us;
  return j;
}

Timing timing_from_json(const json& j, const std::string& where) {
  Timing t;
  try {
    t.tile = tile_from_json(get<json>(j, "tile", where));
  } catch (const Error& e) {
    throw_invalid(where + ".tile", e.what(), j.dump());
  }
  t.time_us = get<double>(j, "time_us", where);
  t.date = get_or<std::string>(j, "date", "", where);
  t.card = get_or<std::string>(j, "card", "", where);
  t.model_time_us = get_or<double>(j, "model_time_us", 0.0, where);
  return t;
}

}  // namespace

json to_json(const ModelParams& p) {
  return json{{"split_overhead_tokens", p.split_overhead_tokens},
              {"tail_wave_floor", p.tail_wave_floor},
              {"combine_launch_tokens", p.combine_launch_tokens},
              {"combine_traffic_factor", p.combine_traffic_factor},
              {"max_splits", p.max_splits}};
}

namespace {

ModelParams params_from_json(const json& j, const std::string& where) {
  ModelParams p;
  p.split_overhead_tokens = get_or<double>(j, "split_overhead_tokens", p.split_overhead_tokens, where);
  p.tail_wave_floor = get_or<double>(j, "tail_wave_floor", p.tail_wave_floor, where);
  p.combine_launch_tokens = get_or<double>(j, "combine_launch_tokens", p.combine_launch_tokens, where);
  p.combine_traffic_factor = get_or<double>(j, "combine_traffic_factor", p.combine_traffic_factor, where);
  p.max_splits = get_or<int>(j, "max_splits", p.max_splits, where);
  if (p.max_splits < 1 || p.max_splits > 4096) throw_invalid(where + ".max_splits", "must be in [1, 4096]", std::to_string(p.max_splits));
  return p;
}

json entry_json(const Entry& e) {
  json measurements = json::array();
  for (const Measurement& m : e.measurements) {
    json row = tile_row(m.tile);
    row.push_back(m.time_us);
    measurements.push_back(row);
  }
  json history = json::array();
  for (const Timing& t : e.history) history.push_back(timing_json(t, true));
  return json{{"spec", to_json(e.spec)},
              {"shape", {{"id", e.shape_id}, {"batch", e.shape.batch}, {"mean_context", e.shape.mean_kv_tokens},
                         {"max_context", e.shape.max_kv_tokens}, {"multiprocessors", e.shape.multiprocessors}}},
              {"best", timing_json(e.best, false)},
              {"model", timing_json(e.model, false)},
              {"max_abs_error", e.max_abs_error},
              {"measurements", measurements},
              {"history", history}};
}

Entry entry_from_json(const json& j, const std::string& where) {
  Entry e;
  try {
    e.spec = spec_from_json(get<json>(j, "spec", where));
    validate(e.spec);
  } catch (const Error& err) {
    throw_invalid(where + ".spec", err.what(), j.dump());
  }
  const json shape = get<json>(j, "shape", where);
  e.shape_id = get_or<std::string>(shape, "id", "", where + ".shape");
  e.shape.batch = get<int>(shape, "batch", where + ".shape");
  e.shape.mean_kv_tokens = get<double>(shape, "mean_context", where + ".shape");
  e.shape.max_kv_tokens = get_or<double>(shape, "max_context", 0.0, where + ".shape");
  e.shape.multiprocessors = get<int>(shape, "multiprocessors", where + ".shape");
  if (e.shape.batch < 1 || e.shape.multiprocessors < 1) {
    throw_invalid(where + ".shape", "batch and multiprocessors must be >= 1", shape.dump());
  }
  e.best = timing_from_json(get<json>(j, "best", where), where + ".best");
  e.model = timing_from_json(get<json>(j, "model", where), where + ".model");
  e.max_abs_error = get_or<double>(j, "max_abs_error", 0.0, where);
  for (const json& row : get_or<json>(j, "measurements", json::array(), where)) {
    Measurement m{tile_from_row(row, where + ".measurements"), 0.0};
    if (row.size() != 7 || !row[6].is_number()) {
      throw_invalid(where + ".measurements", "rows must end with time_us", row.dump());
    }
    m.time_us = row[6].get<double>();
    e.measurements.push_back(m);
  }
  for (const json& t : get_or<json>(j, "history", json::array(), where)) {
    e.history.push_back(timing_from_json(t, where + ".history"));
  }
  e.bucket = bucket_of(e.spec, e.shape);
  return e;
}

// Pretty printer that keeps arrays of scalars on one line (measurement rows, tiles).
void write_json(std::string& out, const json& j, int indent) {
  const std::string pad(std::size_t(indent) * 2, ' ');
  const std::string inner(std::size_t(indent + 1) * 2, ' ');
  if (j.is_object() && !j.empty()) {
    out += "{\n";
    std::size_t i = 0;
    for (auto it = j.begin(); it != j.end(); ++it, ++i) {
      out += inner + json(it.key()).dump() + ": ";
      write_json(out, it.value(), indent + 1);
      out += i + 1 < j.size() ? ",\n" : "\n";
    }
    out += pad + "}";
  } else if (j.is_array() && !j.empty() &&
             std::any_of(j.begin(), j.end(), [](const json& e) { return e.is_structured(); })) {
    out += "[\n";
    for (std::size_t i = 0; i < j.size(); ++i) {
      out += inner;
      write_json(out, j[i], indent + 1);
      out += i + 1 < j.size() ? ",\n" : "\n";
    }
    out += pad + "]";
  } else {
    out += j.dump(-1, ' ', false, json::error_handler_t::replace);
  }
}

bool same_measured_shape(const Entry& a, const Entry& b) {
  return a.spec == b.spec && a.shape.batch == b.shape.batch && a.shape.mean_kv_tokens == b.shape.mean_kv_tokens &&
         a.shape.max_kv_tokens == b.shape.max_kv_tokens;
}

Timing as_history(const Entry& e) {
  Timing t = e.best;
  t.model_time_us = e.model.time_us;
  return t;
}

constexpr std::size_t k_max_history = 8;

}  // namespace

Bucket bucket_of(const Spec& spec, const DecodeShape& shape) {
  Bucket b;
  b.batch_bin = floor_log2(shape.batch);
  b.rows = spec.heads * spec.s_q;
  b.context_bin = floor_log2(shape.mean_kv_tokens);
  b.q_dtype = spec.q_dtype;
  b.kv_dtype = spec.kv_dtype;
  b.page_size = spec.page_size;
  b.kv_lora_rank = spec.kv_lora_rank;
  b.rope_dim = spec.rope_dim;
  return b;
}

std::string bucket_key(const Bucket& b) {
  return fmt::format("b{}.r{}.c{}.q-{}.kv-{}.ps{}.d{}-{}", b.batch_bin, b.rows, b.context_bin, dtype_name(b.q_dtype),
                     dtype_name(b.kv_dtype), b.page_size, b.kv_lora_rank, b.rope_dim);
}

double bucket_distance(const Bucket& q, const Bucket& e) {
  if (q.q_dtype != e.q_dtype || q.kv_dtype != e.kv_dtype || q.kv_lora_rank != e.kv_lora_rank ||
      q.rope_dim != e.rope_dim) {
    return std::numeric_limits<double>::infinity();
  }
  return 0.5 * std::abs(q.batch_bin - e.batch_bin) + 1.0 * log2_ratio(q.rows, e.rows) +
         0.5 * std::abs(q.context_bin - e.context_bin) + 0.25 * log2_ratio(q.page_size, e.page_size);
}

Match find_entry(const Database& db, const Bucket& bucket) {
  // Entries are sorted by bucket: the exact one by binary search, the nearest by a scan.
  const auto exact = std::lower_bound(db.entries.begin(), db.entries.end(), bucket,
                                      [](const Entry& e, const Bucket& b) { return e.bucket < b; });
  if (exact != db.entries.end() && exact->bucket == bucket) return Match{&*exact, 0.0};
  Match best;
  for (const Entry& e : db.entries) {
    const double d = bucket_distance(bucket, e.bucket);
    if (d < best.distance) {
      best.entry = &e;
      best.distance = d;
    }
  }
  if (best.distance > k_max_bucket_distance) return Match{};
  return best;
}

std::size_t drop_invalid_entries(Database& db, const Target& target) {
  const std::size_t before = db.entries.size();
  std::erase_if(db.entries, [&](const Entry& e) {
    try {
      validate(e.best.tile, e.spec, target);
    } catch (const Error&) {
      return true;
    }
    // A sweep from before the family the model now picks for this spec on this target served it
    // (fp8 caches before the mma family read them; 16-bit specs on sm_90a before wgmma) never
    // tried that family: its best is stale.
    const KernelFamily family = choose_tile(e.spec, target).family;
    const bool swept = std::any_of(e.measurements.begin(), e.measurements.end(),
                                   [&](const Measurement& m) { return m.tile.family == family; });
    return !e.measurements.empty() && !swept;
  });
  return before - db.entries.size();
}

void sort_entries(Database& db) {
  for (Entry& e : db.entries) e.bucket = bucket_of(e.spec, e.shape);
  std::stable_sort(db.entries.begin(), db.entries.end(),
                   [](const Entry& a, const Entry& b) { return a.bucket < b.bucket; });
  // One entry per bucket: the last of equal buckets wins.
  std::vector<Entry> unique;
  for (Entry& e : db.entries) {
    if (!unique.empty() && unique.back().bucket == e.bucket) {
      unique.back() = std::move(e);
    } else {
      unique.push_back(std::move(e));
    }
  }
  db.entries = std::move(unique);
}

Database database_from_json(const json& j, const std::string& origin) {
  if (!j.is_object()) throw_invalid(origin, "must hold a JSON object", j.dump().substr(0, 80));
  const int format = get<int>(j, "format", origin);
  if (format != k_database_format) {
    throw_invalid(origin, fmt::format("has format {}, this mlajit reads format {}", format, k_database_format),
                  std::to_string(format));
  }
  Database db;
  const json meta = get<json>(j, "metadata", origin);
  const std::string where = origin + ": metadata";
  db.meta.arch = get<std::string>(meta, "arch", where);
  db.meta.card = get_or<std::string>(meta, "card", "", where);
  db.meta.driver = get_or<std::string>(meta, "driver", "", where);
  db.meta.compiler = get_or<std::string>(meta, "compiler", "", where);
  db.meta.mlajit_version = get_or<std::string>(meta, "mlajit_version", "", where);
  db.meta.generator_version = get_or<int>(meta, "generator_version", 0, where);
  db.meta.date = get_or<std::string>(meta, "date", "", where);
  db.meta.measured = get<bool>(meta, "measured", where);
  db.meta.note = get_or<std::string>(meta, "note", "", where);
  db.meta.model = params_from_json(get_or<json>(meta, "model", json::object(), where), where + ".model");
  db.meta.model_fitted = get_or<bool>(meta, "model_fitted", false, where);
  const json entries = get_or<json>(j, "entries", json::object(), origin);
  if (!entries.is_object()) throw_invalid(origin + ": entries", "must be an object keyed by bucket", entries.dump().substr(0, 80));
  for (auto it = entries.begin(); it != entries.end(); ++it) {
    Entry e = entry_from_json(it.value(), origin + ": entry " + it.key());
    if (bucket_key(e.bucket) != it.key()) {
      throw_invalid(origin + ": entry " + it.key(), "key does not match its spec and shape, which give " + bucket_key(e.bucket),
                    it.key());
    }
    db.entries.push_back(std::move(e));
  }
  sort_entries(db);
  return db;
}

json to_json(const Database& db) {
  json entries = json::object();
  for (const Entry& e : db.entries) entries[bucket_key(e.bucket)] = entry_json(e);
  const Metadata& m = db.meta;
  return json{{"format", k_database_format},
              {"metadata",
               {{"arch", m.arch}, {"card", m.card}, {"driver", m.driver}, {"compiler", m.compiler},
                {"mlajit_version", m.mlajit_version}, {"generator_version", m.generator_version}, {"date", m.date},
                {"measured", m.measured}, {"note", m.note}, {"model", to_json(m.model)},
                {"model_fitted", m.model_fitted}}},
              {"entries", entries}};
}

std::string dump_database(const Database& db) {
  std::string out;
  write_json(out, to_json(db), 0);
  return out + "\n";
}

void merge_into(Database& db, const Database& incoming) {
  sort_entries(db);
  for (const Entry& in : incoming.entries) {
    const Bucket bucket = bucket_of(in.spec, in.shape);
    auto it = std::find_if(db.entries.begin(), db.entries.end(), [&](const Entry& e) { return e.bucket == bucket; });
    if (it == db.entries.end()) {
      db.entries.push_back(in);
      continue;
    }
    const bool comparable = same_measured_shape(*it, in) && it->best.card == in.best.card;
    const bool keep_old = comparable && it->best.time_us < in.best.time_us;
    Entry kept = keep_old ? *it : in;
    const Entry& other = keep_old ? in : *it;
    std::vector<Timing> history{as_history(other)};
    for (const Timing& t : kept.history) history.push_back(t);
    for (const Timing& t : other.history) history.push_back(t);
    std::stable_sort(history.begin(), history.end(), [](const Timing& a, const Timing& b) { return a.date > b.date; });
    if (history.size() > k_max_history) history.resize(k_max_history);
    kept.history = std::move(history);
    *it = std::move(kept);
  }
  db.meta = incoming.meta;
  sort_entries(db);
}

}  // namespace mlajit::tuning
