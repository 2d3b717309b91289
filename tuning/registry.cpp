// Embedded and user tuning databases, loaded once per arch.
#include "tuning/registry.hpp"

#include <cstdio>
#include <fstream>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <sstream>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cache/environment.hpp"
#include "cache/kernel_cache.hpp"
#include "codegen/error.hpp"

namespace mlajit::tuning {

namespace {

std::string describe(const Database& db) {
  return fmt::format("{} entries measured on {} ({}, {}, mlajit {}), model {}", db.entries.size(),
                     db.meta.card.empty() ? "?" : db.meta.card,
                     db.meta.date.empty() ? "no date" : db.meta.date, db.meta.compiler.empty() ? "?" : db.meta.compiler,
                     db.meta.mlajit_version.empty() ? "?" : db.meta.mlajit_version,
                     db.meta.model_fitted ? "fitted" : "defaults");
}

// Parses one database for `arch`; nullopt (with the reason in `note`) when unusable.
std::optional<Database> usable(const std::string& text, const std::string& origin, const Target& target,
                               std::string& note) {
  Database db;
  try {
    db = database_from_json(nlohmann::json::parse(text), origin);
  } catch (const std::exception& e) {
    note = fmt::format("{}: unreadable, ignored ({})", origin, e.what());
    std::fprintf(stderr, "mlajit: tuning database %s\n", note.c_str());
    return std::nullopt;
  }
  if (database_name(db.meta.arch) != database_name(target.arch)) {
    note = fmt::format("{}: made for {}, not {}; ignored", origin, db.meta.arch, target.arch);
    return std::nullopt;
  }
  if (!db.meta.measured) {
    note = fmt::format("{}: not measured on a GPU ({} entries); ignored", origin, db.entries.size());
    return std::nullopt;
  }
  const std::size_t dropped = drop_invalid_entries(db, target);
  note = fmt::format("{}: {}{}", origin, describe(db),
                     dropped ? fmt::format(" ({} entries dropped: their tile is no longer valid, or their sweep "
                                                     "predates a kernel family that now serves them)", dropped)
                             : "");
  return db;
}

std::string read_text(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

struct Registry {
  std::shared_mutex mutex;
  std::vector<std::pair<std::string, const LoadedDatabase*>> current;
  std::vector<std::unique_ptr<LoadedDatabase>> all;  // never freed: references outlive reloads
};

Registry& registry() {
  static Registry r;
  return r;
}

}  // namespace

std::string database_name(std::string_view arch) {
  if (arch.starts_with("sm_") && (arch.ends_with("a") || arch.ends_with("f"))) arch.remove_suffix(1);
  return std::string(arch);
}

std::filesystem::path user_database_path(std::string_view arch) {
  const std::string file = database_name(arch) + ".json";
  if (std::optional<std::string> dir = read_environment("MLAJIT_TUNING_DIR")) return std::filesystem::path(*dir) / file;
  return cache::default_root() / "tuning" / file;
}

LoadedDatabase load_database(std::string_view arch) { return load_database(arch, embedded_databases()); }

LoadedDatabase load_database(std::string_view arch, std::span<const EmbeddedDatabase> shipped) {
  LoadedDatabase loaded;
  Target target;
  try {
    target = parse_target(arch);
  } catch (const Error& e) {
    loaded.description = e.what();
    return loaded;
  }
  std::vector<std::string> notes;
  const std::string file = database_name(arch) + ".json";
  for (const EmbeddedDatabase& embedded : shipped) {
    if (embedded.file != file) continue;
    std::string note;
    loaded.db = usable(std::string(embedded.text), "embedded " + file, target, note);
    notes.push_back(note);
  }
  if (notes.empty()) notes.push_back("none shipped for " + database_name(arch));

  std::filesystem::path path;
  try {
    path = user_database_path(arch);
  } catch (const Error& e) {
    notes.push_back(std::string("no user database: ") + e.what());
  }
  std::error_code ec;
  if (!path.empty() && std::filesystem::exists(path, ec)) {
    std::string note;
    std::optional<Database> user = usable(read_text(path), "user " + path.string(), target, note);
    notes.push_back(note);
    if (user) {
      if (loaded.db) {
        // The user's entries and model win; the shipped ones fill the other buckets.
        for (Entry& e : loaded.db->entries) {
          if (std::none_of(user->entries.begin(), user->entries.end(),
                           [&](const Entry& u) { return u.bucket == e.bucket; })) {
            user->entries.push_back(std::move(e));
          }
        }
        sort_entries(*user);
      }
      loaded.db = std::move(user);
    }
  } else if (!path.empty()) {
    notes.push_back("no user database at " + path.string());
  }
  for (std::size_t i = 0; i < notes.size(); ++i) loaded.description += (i ? "; " : "") + notes[i];
  return loaded;
}

LoadedDatabase load_database_file(const std::filesystem::path& path, std::string_view arch) {
  LoadedDatabase loaded;
  try {
    loaded.db = usable(read_text(path), path.string(), parse_target(arch), loaded.description);
  } catch (const Error& e) {
    loaded.description = e.what();
  }
  return loaded;
}

const LoadedDatabase& loaded_database(std::string_view arch) {
  Registry& r = registry();
  {
    std::shared_lock lock(r.mutex);
    for (const auto& [name, db] : r.current) {
      if (name == arch) return *db;
    }
  }
  // Load outside the lock (file reads); a racing loader's result is kept, ours discarded.
  auto fresh = std::make_unique<LoadedDatabase>(load_database(arch));
  std::unique_lock lock(r.mutex);
  for (const auto& [name, db] : r.current) {
    if (name == arch) return *db;
  }
  r.all.push_back(std::move(fresh));
  r.current.emplace_back(std::string(arch), r.all.back().get());
  return *r.all.back();
}

void reload_databases() {
  Registry& r = registry();
  std::unique_lock lock(r.mutex);
  r.current.clear();
}

}  // namespace mlajit::tuning
