// Field-level differences between kernel keys, and the nearest stored key of a target.
#include "cache/explain.hpp"

#include <algorithm>
#include <set>

#include "cache/entry_files.hpp"
#include "cache/file_io.hpp"

namespace mlajit::cache {

namespace fs = std::filesystem;

namespace {

bool object_or_null(const nlohmann::json& value) { return value.is_object() || value.is_null(); }

// "name=hash;name=hash" (Source::template_digest()) as an object, so a difference names the
// template that changed instead of printing two long strings.
nlohmann::json split_digest(const nlohmann::json& digest) {
  if (!digest.is_string()) return digest;
  const std::string text = digest.get<std::string>();
  nlohmann::json parts = nlohmann::json::object();
  for (std::size_t start = 0; start < text.size();) {
    const std::size_t end = std::min(text.find(';', start), text.size());
    const std::string part = text.substr(start, end - start);
    const std::size_t equals = part.find('=');
    if (equals == std::string::npos) return digest;  // not the name=hash form: compare whole
    parts[part.substr(0, equals)] = part.substr(equals + 1);
    start = end + 1;
  }
  return parts;
}

void diff_into(const std::string& prefix, const nlohmann::json& wanted, const nlohmann::json& found,
               std::vector<FieldDifference>* out) {
  if (prefix == "template_digest") {
    const nlohmann::json wanted_parts = split_digest(wanted), found_parts = split_digest(found);
    if (wanted_parts != wanted || found_parts != found) return diff_into(prefix, wanted_parts, found_parts, out);
  }
  // Walk objects, also against a missing side, so listing a key against {} yields every leaf.
  if ((wanted.is_object() || found.is_object()) && object_or_null(wanted) && object_or_null(found)) {
    const nlohmann::json empty = nlohmann::json::object();
    const nlohmann::json& w = wanted.is_object() ? wanted : empty;
    const nlohmann::json& f = found.is_object() ? found : empty;
    std::set<std::string> names;
    for (auto it = w.begin(); it != w.end(); ++it) names.insert(it.key());
    for (auto it = f.begin(); it != f.end(); ++it) names.insert(it.key());
    for (const std::string& name : names) {
      const std::string field = prefix.empty() ? name : prefix + "." + name;
      diff_into(field, w.value(name, nlohmann::json()), f.value(name, nlohmann::json()), out);
    }
    return;
  }
  if (wanted != found) out->push_back({prefix, wanted, found});
}

}  // namespace

std::vector<FieldDifference> diff_fields(const nlohmann::json& wanted, const nlohmann::json& found) {
  std::vector<FieldDifference> out;
  diff_into("", wanted, found, &out);
  return out;
}

std::optional<NearestKey> nearest_key(const fs::path& root, const KernelKey& key) {
  const fs::path target = *relative_entry_path(key).begin();
  std::optional<NearestKey> best;
  for (const EntryInfo& entry : list_entries(root)) {
    if (entry.target != target.string() || !entry.is_directory) continue;
    NearestKey candidate;
    try {
      candidate.key = key_from_document(read_json(entry.dir / k_key_file));
    } catch (const IoFailure&) {
      continue;  // damaged: `verify` reports it
    }
    candidate.entry = entry;
    candidate.differences = diff_fields(key.fields, candidate.key.fields);
    const bool better =
        !best || candidate.differences.size() < best->differences.size() ||
        (candidate.differences.size() == best->differences.size() &&
         candidate.entry.last_use.tv_sec > best->entry.last_use.tv_sec);
    if (better) best = std::move(candidate);
  }
  return best;
}

}  // namespace mlajit::cache
