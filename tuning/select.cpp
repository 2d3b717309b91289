// Database-or-model selection and its explanation.
#include "tuning/select.hpp"

#include <algorithm>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace mlajit::tuning {

std::string_view origin_name(Origin origin) {
  switch (origin) {
    case Origin::exact_bucket: return "exact_bucket";
    case Origin::nearest_bucket: return "nearest_bucket";
    case Origin::model: return "model";
  }
  return "?";
}

ModelParams params_for(const Target& target, const Database* db) {
  return db != nullptr && db->meta.measured ? db->meta.model : default_params(target);
}

int select_splits(const Spec& spec, const Target& target, const TileConfig& tile, const DecodeShape& shape,
                  const Database* db) {
  DecodeShape resident = shape;
  resident.ctas_per_sm = decode_ctas_per_sm(spec, tile, target);
  return choose_splits(spec, tile, resident, params_for(target, db));
}

Selection select(const Spec& spec, const Target& target, const DecodeShape& shape, const Database* db) {
  if (db != nullptr && !db->meta.measured) db = nullptr;
  Selection s;
  if (db != nullptr) {
    const Match match = find_entry(*db, bucket_of(spec, shape));
    if (match.entry != nullptr) {
      s.entry = match.entry;
      s.distance = match.distance;
      s.origin = match.distance == 0.0 ? Origin::exact_bucket : Origin::nearest_bucket;
      s.tile = match.entry->best.tile;
      s.measured_splits = s.origin == Origin::exact_bucket && shape.batch == match.entry->shape.batch;
      if (!s.measured_splits) s.tile.num_splits = select_splits(spec, target, s.tile, shape, db);
      return s;
    }
  }
  s.tile = choose_tile(spec, target);
  s.tile.num_splits = select_splits(spec, target, s.tile, shape, db);
  return s;
}

int default_multiprocessors(const Target& target) {
  const std::string& a = target.arch;
  if (a == "sm_80") return 108;
  if (a == "sm_86") return 82;
  if (a == "sm_89") return 142;
  if (a == "gfx942") return 304;
  if (a == "gfx950") return 256;
  if (a == "gfx90a") return 110;
  return 132;  // sm_90 / sm_90a: H100 SXM, H200
}

std::string tile_summary(const TileConfig& t) {
  std::string s = fmt::format("{} hc{} bn{} w{}", family_name(t.family), t.heads_per_cta, t.tokens_per_tile, t.warps);
  if (t.family == KernelFamily::mma) s += fmt::format(" st{}", t.stages);
  return s + fmt::format(" x{}", t.num_splits);
}

Explanation explain(const Spec& spec, const Target& target, const DecodeShape& shape, const Database* db,
                    std::string database_note) {
  Explanation e;
  e.spec = spec;
  e.target = target;
  e.shape = shape;
  e.bucket = bucket_of(spec, shape);
  e.database = std::move(database_note);
  e.database_used = db != nullptr && db->meta.measured;
  if (e.database_used) {
    for (const Entry& entry : db->entries) {
      const double d = bucket_distance(e.bucket, entry.bucket);
      if (d < std::numeric_limits<double>::infinity()) e.nearest.emplace_back(d, &entry);
    }
    std::stable_sort(e.nearest.begin(), e.nearest.end(),
                     [](const auto& a, const auto& b) { return a.first < b.first; });
    if (e.nearest.size() > 3) e.nearest.resize(3);
  }
  e.selection = select(spec, target, shape, db);
  e.params = params_for(target, db);
  e.model_tile = select(spec, target, shape, nullptr).tile;
  e.shape.ctas_per_sm = decode_ctas_per_sm(spec, e.selection.tile, target);
  choose_splits(spec, e.selection.tile, e.shape, e.params, &e.scores);
  return e;
}

namespace {

std::string entry_summary(const Entry& entry) {
  return fmt::format("{} ({}, batch {}, context {:.0f}): best {} {:.1f} us, model {} {:.1f} us; {}, {}",
                     bucket_key(entry.bucket), entry.shape_id, entry.shape.batch, entry.shape.mean_kv_tokens,
                     tile_summary(entry.best.tile), entry.best.time_us, tile_summary(entry.model.tile),
                     entry.model.time_us, entry.best.card, entry.best.date);
}

std::string choice_reason(const Explanation& e) {
  const Selection& s = e.selection;
  switch (s.origin) {
    case Origin::exact_bucket:
      return s.measured_splits
                 ? "exact bucket: the measured best, splits included (same batch as the sweep)"
                 : fmt::format("exact bucket: its kernel shape; the sweep had batch {}, so the model picks splits",
                               s.entry->shape.batch);
    case Origin::nearest_bucket:
      return fmt::format("nearest bucket {} at distance {:.2f}: its kernel shape; the model picks splits",
                         bucket_key(s.entry->bucket), s.distance);
    case Origin::model:
      return e.database_used ? fmt::format("the model: no entry within distance {:.1f}", k_max_bucket_distance)
                             : "the model: no measured database for this arch";
  }
  return "?";
}

}  // namespace

std::string format_explanation(const Explanation& e) {
  const Spec& s = e.spec;
  std::string out = fmt::format(
      "decode h{} sq{} ps{} q {} kv {} out {} d{}-{} on {} ({} SMs); batch {}, context mean {:.0f}{}\n", s.heads,
      s.s_q, s.page_size, dtype_name(s.q_dtype), dtype_name(s.kv_dtype), dtype_name(s.out_dtype), s.kv_lora_rank,
      s.rope_dim, e.target.arch, e.shape.multiprocessors, e.shape.batch, e.shape.mean_kv_tokens,
      e.shape.max_kv_tokens > 0 ? fmt::format(" max {:.0f}", e.shape.max_kv_tokens) : "");
  out += fmt::format("bucket:   {}\ndatabase: {}\n", bucket_key(e.bucket), e.database);
  for (const auto& [distance, entry] : e.nearest) {
    out += fmt::format("  distance {:.2f}  {}\n", distance, entry_summary(*entry));
  }
  out += fmt::format("choice:   {} ({} CTAs/SM)\n  from {}\n", tile_summary(e.selection.tile), e.shape.ctas_per_sm,
                     choice_reason(e));
  out += fmt::format("model alone: {}\n", tile_summary(e.model_tile));
  const ModelParams& p = e.params;
  out += fmt::format(
      "model parameters ({}): overhead {:.1f} tokens/CTA, tail-wave floor {:.2f}, combine {:.1f} tokens + "
      "traffic x{:.2f}, at most {} splits\n",
      e.database_used ? "from the database" : "defaults", p.split_overhead_tokens, p.tail_wave_floor,
      p.combine_launch_tokens, p.combine_traffic_factor, p.max_splits);
  out += fmt::format("split scores for {} (cost in slot tokens):\n", tile_summary(e.selection.tile));
  out += fmt::format("  {:>6} {:>7} {:>6} {:>10} {:>9} {:>8} {:>9} {:>6}\n", "splits", "CTAs", "waves", "tokens/CTA",
                     "stage 1", "combine", "cost", "score");
  double best = 0;
  for (const SplitScore& sc : e.scores) best = std::max(best, sc.score);
  for (const SplitScore& sc : e.scores) {
    const char* mark = sc.splits == e.selection.tile.num_splits ? "<" : (sc.score == best ? "*" : "");
    out += fmt::format("  {:>6} {:>7} {:>6.2f} {:>10.0f} {:>9.1f} {:>8.1f} {:>9.1f} {:>6.3f} {}\n", sc.splits,
                       sc.ctas, sc.waves, sc.tokens_per_cta, sc.stage1_cost, sc.combine_cost, sc.cost, sc.score,
                       mark);
  }
  out += "  (< the choice; * the model's best where the choice differs)\n";
  return out;
}

nlohmann::json to_json(const Explanation& e) {
  using nlohmann::json;
  json nearest = json::array();
  for (const auto& [distance, entry] : e.nearest) {
    nearest.push_back({{"bucket", bucket_key(entry->bucket)}, {"distance", distance}, {"shape", entry->shape_id},
                       {"best", to_json(entry->best.tile)}, {"best_us", entry->best.time_us},
                       {"model_us", entry->model.time_us}, {"card", entry->best.card}, {"date", entry->best.date}});
  }
  json scores = json::array();
  for (const SplitScore& s : e.scores) {
    scores.push_back({{"splits", s.splits}, {"ctas", s.ctas}, {"waves", s.waves}, {"tokens_per_cta", s.tokens_per_cta},
                      {"stage1_cost", s.stage1_cost}, {"combine_cost", s.combine_cost}, {"cost", s.cost},
                      {"score", s.score}});
  }
  return json{{"spec", to_json(e.spec)},
              {"arch", e.target.arch},
              {"multiprocessors", e.shape.multiprocessors},
              {"ctas_per_sm", e.shape.ctas_per_sm},
              {"batch", e.shape.batch},
              {"mean_context", e.shape.mean_kv_tokens},
              {"max_context", e.shape.max_kv_tokens},
              {"bucket", bucket_key(e.bucket)},
              {"database", e.database},
              {"database_used", e.database_used},
              {"nearest", nearest},
              {"origin", origin_name(e.selection.origin)},
              {"distance", e.selection.distance},
              {"measured_splits", e.selection.measured_splits},
              {"tile", to_json(e.selection.tile)},
              {"model_tile", to_json(e.model_tile)},
              {"model", to_json(e.params)},
              {"scores", scores}};
}

}  // namespace mlajit::tuning
