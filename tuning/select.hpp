// The engine's choice for a decode call: the tuning database's bucket when one is near, else the
// model; plus the explanation `mlajit tune --explain` prints. Pure (the database is passed in).
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "tuning/choose.hpp"
#include "tuning/database.hpp"

namespace mlajit::tuning {

enum class Origin {
  exact_bucket,    // the database's entry for this bucket
  nearest_bucket,  // the kernel shape of the nearest entry within k_max_bucket_distance
  model,           // no (measured) database, or no entry near enough
};
std::string_view origin_name(Origin origin);

struct Selection {
  TileConfig tile;  // num_splits resolved
  Origin origin = Origin::model;
  const Entry* entry = nullptr;  // the entry used (exact or nearest)
  double distance = 0;
  // True when num_splits is the entry's measured count: the exact bucket and the same batch as
  // the sweep (so the same CTAs per split). Otherwise the model picks splits for the tile.
  bool measured_splits = false;
};

// Tile and splits for a call. `db` may be null; an unmeasured database is ignored. Neither
// allocates nor throws for a valid spec (the engine calls it on every decode).
// shape.ctas_per_sm is ignored: it follows from the tile chosen.
Selection select(const Spec& spec, const Target& target, const DecodeShape& shape, const Database* db);
// Splits for a given tile (a caller-forced kernel shape), under the database's model parameters.
int select_splits(const Spec& spec, const Target& target, const TileConfig& tile, const DecodeShape& shape,
                  const Database* db);
// The model parameters in force: the measured database's (fitted), else the target's defaults.
ModelParams params_for(const Target& target, const Database* db);

// SMs / CUs of the usual card of an arch (for --explain without a device): H100 SXM 132,
// A100 108, L40S 142, RTX 3090-class 82, MI300X 304, MI355X 256, MI250X GCD 110.
int default_multiprocessors(const Target& target);

struct Explanation {
  Spec spec;
  Target target;
  DecodeShape shape;  // ctas_per_sm of the chosen tile
  Bucket bucket;
  std::string database;  // where the database came from, or why there is none
  bool database_used = false;
  std::vector<std::pair<double, const Entry*>> nearest;  // up to 3 nearest entries (distance, entry)
  Selection selection;
  ModelParams params;
  TileConfig model_tile;             // the model alone (no database), splits resolved
  std::vector<SplitScore> scores;    // the model's table for the selected tile
};

// `database_note` says where `db` came from (a file, embedded, ignored because unmeasured...).
Explanation explain(const Spec& spec, const Target& target, const DecodeShape& shape, const Database* db,
                    std::string database_note);
std::string format_explanation(const Explanation& e);
nlohmann::json to_json(const Explanation& e);

// "mma hc16 bn32 w8 st2 x4" (x: splits).
std::string tile_summary(const TileConfig& tile);

}  // namespace mlajit::tuning
