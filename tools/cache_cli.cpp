// The `mlajit cache` verbs: thin presentation over cache/ (inventory, gc, bundle, explain).
#include "tools/cache_cli.hpp"

#include <algorithm>
#include <filesystem>
#include <iostream>
#include <map>
#include <optional>
#include <tuple>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cache/bundle.hpp"
#include "cache/entry_files.hpp"
#include "cache/explain.hpp"
#include "cache/file_io.hpp"
#include "cache/gc.hpp"
#include "cache/inventory.hpp"
#include "cache/kernel_cache.hpp"
#include "codegen/error.hpp"
#include "codegen/generator.hpp"
#include "runtime/jit.hpp"

#ifndef MLAJIT_VERSION
#define MLAJIT_VERSION "unknown"
#endif

namespace mlajit::tools {

namespace fs = std::filesystem;

namespace {

std::string human_bytes(std::uint64_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double value = static_cast<double>(bytes);
  int unit = 0;
  while (value >= 1024.0 && unit < 4) {
    value /= 1024.0;
    ++unit;
  }
  return unit == 0 ? fmt::format("{} B", bytes) : fmt::format("{:.1f} {}", value, units[unit]);
}

// Splits "cuda-sm_90a" at the first dash (AMD arch strings may contain dashes, backends do not).
std::pair<std::string, std::string> split_target(const std::string& target) {
  const std::size_t dash = target.find('-');
  return {target.substr(0, dash), dash == std::string::npos ? std::string() : target.substr(dash + 1)};
}

nlohmann::json paths_json(const std::vector<cache::EntryInfo>& entries) {
  nlohmann::json out = nlohmann::json::array();
  for (const cache::EntryInfo& entry : entries) out.push_back(entry.relative.string());
  return out;
}

// One line per problem, "  <path>: <problem>", for verify and export.
std::string problem_lines(const nlohmann::json& problems) {
  std::string text;
  for (const nlohmann::json& p : problems) {
    text += fmt::format("  {}: {}\n", p["path"].get<std::string>(), p["problem"].get<std::string>());
  }
  return text;
}

nlohmann::json json_or_null(const std::optional<std::uint64_t>& value) {
  return value ? nlohmann::json(*value) : nlohmann::json();
}

fs::path root_from(const std::string& dir) { return dir.empty() ? cache::default_root() : fs::path(dir); }

void print(bool json, const nlohmann::json& document, const std::string& text) {
  if (json) {
    std::cout << document.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
  } else {
    std::cout << text;
  }
}

}  // namespace

CacheCommand::CacheCommand(CLI::App& app) {
  command_ = app.add_subcommand("cache", "inspect, check, bound and ship the on-disk kernel cache");
  command_->require_subcommand(1);
  ls_ = command_->add_subcommand("ls", "list entries: kernel, arch, size, created, last use");
  stat_ = command_->add_subcommand("stat", "totals per arch, quarantine and temporary leftovers");
  verify_ = command_->add_subcommand("verify", "re-check every entry (size, checksum, key hash, place); exit 1 naming bad ones");
  gc_ = command_->add_subcommand("gc", "evict least recently used entries to a size budget; remove stale leftovers");
  export_ = command_->add_subcommand("export", "write every good entry into one compressed bundle FILE");
  import_ = command_->add_subcommand("import", "validate bundle FILE and install its entries");
  explain_ = command_->add_subcommand("explain", "show a kernel's key fields and, on a miss, the nearest entry and what differs");
  for (CLI::App* verb : {ls_, stat_, verify_, gc_, export_, import_, explain_}) {
    verb->add_option("--dir", dir_, "cache root (default: MLAJIT_CACHE_DIR, else the XDG cache directory)");
    verb->add_flag("--json", json_, "machine-readable output");
  }
  gc_->add_option("--max-size", max_size_, "byte budget, e.g. 500M or 10G (default: MLAJIT_CACHE_MAX_SIZE)");
  export_->add_option("FILE", file_, "bundle to write")->required();
  import_->add_option("FILE", file_, "bundle to read")->required();
  spec_flags_.add_to(*explain_);
  explain_->add_option("--arch", arch_, "target (default: the current device)");
}

int CacheCommand::run() const {
  if (*ls_) return ls();
  if (*stat_) return stat();
  if (*verify_) return verify();
  if (*gc_) return gc();
  if (*export_) return export_bundle();
  if (*import_) return import_bundle();
  return explain();
}

int CacheCommand::ls() const {
  const fs::path root = root_from(dir_);
  nlohmann::json entries = nlohmann::json::array();
  std::string text = fmt::format("{:<78} {:<12} {:>10} {:<20} {:<20}\n", "entry", "arch", "bytes", "created", "last use");
  std::uint64_t total = 0;
  std::vector<cache::EntryInfo> listed = cache::list_entries(root);
  // By target, then kernel name: the order a person scans for (the layout's order is by hash).
  std::sort(listed.begin(), listed.end(), [](const cache::EntryInfo& a, const cache::EntryInfo& b) {
    return std::tie(a.target, a.name) < std::tie(b.target, b.name);
  });
  for (const cache::EntryInfo& entry : listed) {
    nlohmann::json manifest;
    try {
      manifest = cache::read_json(entry.dir / cache::k_manifest_file);
    } catch (const cache::IoFailure&) {
      // listed anyway; `verify` says what is wrong with it
    }
    const std::string created = manifest.is_object() ? manifest.value("created", std::string("?")) : "?";
    const std::string last_use = cache::utc_time(entry.last_use);
    const auto [backend, arch] = split_target(entry.target);
    entries.push_back({{"name", entry.name}, {"backend", backend}, {"arch", arch}, {"bytes", entry.bytes},
                       {"created", created}, {"last_use", last_use}, {"path", entry.relative.string()}});
    text += fmt::format("{:<78} {:<12} {:>10} {:<20} {:<20}\n", entry.name, arch, entry.bytes, created, last_use);
    total += entry.bytes;
  }
  text += fmt::format("{} entries, {} in {}\n", entries.size(), human_bytes(total), root.string());
  print(json_, {{"root", root.string()}, {"entries", entries}, {"bytes", total}}, text);
  return 0;
}

int CacheCommand::stat() const {
  const fs::path root = root_from(dir_);
  std::map<std::string, std::pair<std::size_t, std::uint64_t>> per_target;
  std::size_t entries = 0;
  std::uint64_t bytes = 0;
  for (const cache::EntryInfo& entry : cache::list_entries(root)) {
    auto& [count, target_bytes] = per_target[entry.target];
    ++count;
    target_bytes += entry.bytes;
    ++entries;
    bytes += entry.bytes;
  }
  auto leftovers = [&](const char* dir) {
    std::uint64_t leftover_bytes = 0;
    const std::vector<cache::EntryInfo> items = cache::list_children(root / cache::k_layout_dir / dir);
    for (const cache::EntryInfo& item : items) leftover_bytes += item.bytes;
    return nlohmann::json{{"items", items.size()}, {"bytes", leftover_bytes}};
  };
  const std::optional<std::uint64_t> limit = cache::size_limit_from_environment();
  nlohmann::json targets = nlohmann::json::object();
  std::string text = fmt::format("cache {}\n", root.string());
  for (const auto& [target, totals] : per_target) {
    const auto [backend, arch] = split_target(target);
    targets[target] = {{"backend", backend}, {"arch", arch}, {"entries", totals.first}, {"bytes", totals.second}};
    text += fmt::format("  {:<16} {:>6} entries {:>12}\n", arch, totals.first, human_bytes(totals.second));
  }
  const nlohmann::json quarantine = leftovers(cache::k_quarantine_dir);
  const nlohmann::json tmp = leftovers(cache::k_tmp_dir);
  text += fmt::format("  {:<16} {:>6} entries {:>12}\n", "total", entries, human_bytes(bytes));
  text += fmt::format("  quarantined {} ({}), temporary {} ({}), size limit {}\n", quarantine["items"].get<std::size_t>(),
                      human_bytes(quarantine["bytes"]), tmp["items"].get<std::size_t>(), human_bytes(tmp["bytes"]),
                      limit ? human_bytes(*limit) : std::string("none (MLAJIT_CACHE_MAX_SIZE unset)"));
  print(json_,
        {{"root", root.string()}, {"targets", targets}, {"entries", entries}, {"bytes", bytes},
         {"quarantine", quarantine}, {"tmp", tmp}, {"size_limit", json_or_null(limit)}},
        text);
  return 0;
}

int CacheCommand::verify() const {
  const fs::path root = root_from(dir_);
  const std::vector<cache::EntryInfo> entries = cache::list_entries(root);
  nlohmann::json bad = nlohmann::json::array();
  for (const cache::EntryInfo& entry : entries) {
    if (std::optional<std::string> problem = cache::verify_entry(entry)) {
      bad.push_back({{"path", entry.relative.string()}, {"name", entry.name}, {"problem", *problem}});
    }
  }
  const std::string text = fmt::format("checked {} entries in {}: {}\n", entries.size(), root.string(),
                                       bad.empty() ? std::string("all good") : fmt::format("{} bad", bad.size())) +
                           problem_lines(bad);
  print(json_, {{"root", root.string()}, {"checked", entries.size()}, {"bad", bad}, {"ok", bad.empty()}}, text);
  return bad.empty() ? 0 : 1;
}

int CacheCommand::gc() const {
  const fs::path root = root_from(dir_);
  cache::GcOptions options;
  options.max_size = max_size_.empty() ? cache::size_limit_from_environment()
                                       : std::optional(cache::parse_size(max_size_, "--max-size"));
  const cache::GcReport report = cache::collect_garbage(cache::DiskStore(root), options);
  std::string text = fmt::format("{}: {} entries, {} -> {} entries, {}", root.string(), report.entries_before,
                                 human_bytes(report.bytes_before), report.entries_after, human_bytes(report.bytes_after));
  text += options.max_size ? fmt::format(" (budget {})\n", human_bytes(*options.max_size)) : " (no budget)\n";
  for (const cache::EntryInfo& entry : report.evicted) text += fmt::format("  evicted {}\n", entry.relative.string());
  for (const cache::EntryInfo& entry : report.skipped_in_use) {
    text += fmt::format("  kept {} (in use by a live process)\n", entry.relative.string());
  }
  text += fmt::format("  removed {} stale temporary and {} old quarantined items\n", report.removed_tmp.size(),
                      report.removed_quarantine.size());
  print(json_,
        {{"root", root.string()}, {"max_size", json_or_null(options.max_size)},
         {"entries_before", report.entries_before}, {"bytes_before", report.bytes_before},
         {"entries_after", report.entries_after}, {"bytes_after", report.bytes_after},
         {"evicted", paths_json(report.evicted)}, {"skipped_in_use", paths_json(report.skipped_in_use)},
         {"removed_tmp", paths_json(report.removed_tmp)}, {"removed_quarantine", paths_json(report.removed_quarantine)}},
        text);
  return 0;
}

int CacheCommand::export_bundle() const {
  const fs::path root = root_from(dir_);
  const cache::ExportReport report = cache::export_bundle(root, file_, MLAJIT_VERSION);
  nlohmann::json skipped = nlohmann::json::array();
  for (const auto& [entry, problem] : report.skipped) skipped.push_back({{"path", entry.relative.string()}, {"problem", problem}});
  const std::size_t count = report.manifest["entries"].size();
  std::string text = fmt::format("wrote {} entries ({}) from {} to {} ({})\n", count,
                                 fmt::join(report.manifest["archs"].get<std::vector<std::string>>(), ", "),
                                 root.string(), file_, human_bytes(report.file_bytes));
  if (!skipped.empty()) text += fmt::format("left out {} damaged entries:\n", skipped.size()) + problem_lines(skipped);
  print(json_,
        {{"file", file_}, {"root", root.string()}, {"entries", count}, {"file_bytes", report.file_bytes},
         {"archs", report.manifest["archs"]}, {"compilers", report.manifest["compilers"]}, {"skipped", skipped}},
        text);
  return skipped.empty() ? 0 : 1;
}

int CacheCommand::import_bundle() const {
  const fs::path root = root_from(dir_);
  cache::DiskStore store(root);
  store.set_size_limit(cache::size_limit_from_environment());
  const cache::ImportReport report = cache::import_bundle(store, file_);
  std::string text = fmt::format("{} into {}: installed {}, already present {}", file_, root.string(),
                                 report.installed.size(), report.present.size());
  text += report.not_stored.empty() ? "\n" : fmt::format(", could not store {}\n", report.not_stored.size());
  print(json_,
        {{"file", file_}, {"root", root.string()}, {"installed", report.installed}, {"present", report.present},
         {"not_stored", report.not_stored}, {"bundle", {{"mlajit_version", report.manifest.value("mlajit_version", "")},
                                                        {"created", report.manifest.value("created", "")},
                                                        {"archs", report.manifest.value("archs", nlohmann::json::array())}}}},
        text);
  return report.not_stored.empty() ? 0 : 1;
}

int CacheCommand::explain() const {
  const Spec spec = spec_flags_.spec();
  const Target target = resolve_target(arch_);
  const TileConfig tile = spec_flags_.tile(spec, target);
  const Source source = generate(spec, tile, target);
  const cache::KernelKey key = runtime::kernel_key(source, spec, tile, target, runtime::backend(target.backend));

  // Layers in search order; only the user layer can be --dir'ed.
  std::vector<std::pair<std::string, fs::path>> layers;
  if (dir_.empty()) {
    if (std::optional<fs::path> system = cache::default_system_root()) layers.emplace_back("system", *system);
  }
  layers.emplace_back("user", root_from(dir_));

  nlohmann::json result{{"name", key.readable_name}, {"arch", target.arch}, {"key", key.hash}, {"fields", key.fields},
                        {"status", "miss"}};
  std::string text = fmt::format("{} for {}\n  key {}\n", key.readable_name, target.arch, key.hash);
  for (const cache::FieldDifference& leaf : cache::diff_fields(key.fields, nlohmann::json::object())) {
    text += fmt::format("  {:<36} {}\n", leaf.field, leaf.wanted.dump());
  }
  const fs::path relative = cache::relative_entry_path(key);
  for (const auto& [layer, root] : layers) {
    cache::EntryInfo entry;
    entry.dir = root / cache::k_layout_dir / relative;
    entry.relative = relative;
    if (std::error_code error; !fs::exists(entry.dir, error)) continue;
    const std::optional<std::string> problem = cache::verify_entry(entry);
    result["status"] = problem ? "damaged" : "hit";
    result["layer"] = layer;
    result["entry"] = entry.dir.string();
    if (problem) result["problem"] = *problem;
    text += problem ? fmt::format("damaged entry in the {} layer: {} ({}); it would be quarantined and recompiled\n",
                                  layer, entry.dir.string(), *problem)
                    : fmt::format("hit in the {} layer: {}\n", layer, entry.dir.string());
    if (!problem) break;
  }
  if (result["status"] == "miss") {
    const fs::path user_root = layers.back().second;
    text += fmt::format("miss: {} has no entry {}\n", user_root.string(), relative.string());
    result["nearest"] = nullptr;
    if (const std::optional<cache::NearestKey> nearest = cache::nearest_key(user_root, key)) {
      nlohmann::json differences = nlohmann::json::array();
      text += fmt::format("nearest entry: {} ({} fields differ)\n", nearest->entry.relative.string(),
                          nearest->differences.size());
      for (const cache::FieldDifference& d : nearest->differences) {
        differences.push_back({{"field", d.field}, {"wanted", d.wanted}, {"found", d.found}});
        text += fmt::format("  {:<36} wanted {}, found {}\n", d.field, d.wanted.dump(), d.found.dump());
      }
      result["nearest"] = {{"path", nearest->entry.relative.string()}, {"key", nearest->key.hash},
                           {"differences", differences}};
    } else {
      text += fmt::format("no entries for {} at all\n", relative.begin()->string());
    }
  }
  print(json_, result, text);
  return 0;
}

}  // namespace mlajit::tools
