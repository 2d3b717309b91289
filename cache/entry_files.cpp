// One cache entry's files, its place in the layout, and the integrity check shared by load,
// verify, export and import.
#include "cache/entry_files.hpp"

#include <fmt/format.h>

#include "cache/file_io.hpp"
#include "codegen/error.hpp"

namespace mlajit::cache {

namespace fs = std::filesystem;

namespace {

// One directory name taken from a key; refuses anything that could step outside the root.
std::string path_component(const std::string& value, std::string_view what) {
  if (value.empty() || value == "." || value == ".." || value.find('/') != std::string::npos ||
      value.find('\0') != std::string::npos) {
    throw Error(ErrorCode::internal, fmt::format("kernel key has an unusable {} '{}'", what, value));
  }
  return value;
}

std::string key_string_field(const KernelKey& key, const char* name) {
  const auto it = key.fields.find(name);
  if (it == key.fields.end() || !it->is_string()) {
    throw Error(ErrorCode::internal, fmt::format("kernel key {} has no string field '{}'", key.entry_name(), name));
  }
  return it->get<std::string>();
}

bool is_hash(std::string_view text) {
  return text.size() == 64 && text.find_first_not_of("0123456789abcdef") == std::string_view::npos;
}

}  // namespace

std::string code_file_name(const nlohmann::json& manifest) {
  const std::string format = manifest.is_object() ? manifest.value("format", std::string()) : std::string();
  // Only known formats name the file, so a manifest can never choose a path.
  if (format == "cubin" || format == "hsaco") return "code." + format;
  return "code.bin";
}

fs::path relative_entry_path(const KernelKey& key) {
  if (!is_hash(key.hash)) {
    throw Error(ErrorCode::internal, fmt::format("kernel key {} has a malformed hash '{}'", key.readable_name, key.hash));
  }
  const std::string target = path_component(key_string_field(key, "backend"), "backend") + "-" +
                             path_component(key_string_field(key, "arch"), "arch");
  return fs::path(target) / key.hash.substr(0, 2) / path_component(key.entry_name(), "entry name");
}

nlohmann::json key_document(const KernelKey& key) {
  return {{"fields", key.fields}, {"hash", key.hash}, {"readable_name", key.readable_name}};
}

KernelKey key_from_document(const nlohmann::json& document) {
  if (!document.is_object() || !document.contains("hash") || !document["hash"].is_string() ||
      !document.contains("fields") || !document["fields"].is_object() || !document.contains("readable_name") ||
      !document["readable_name"].is_string()) {
    throw IoFailure("key.json lacks hash, fields or readable_name");
  }
  KernelKey key;
  key.hash = document["hash"].get<std::string>();
  key.fields = document["fields"];
  key.readable_name = document["readable_name"].get<std::string>();
  return key;
}

EntryFiles read_entry_files(const fs::path& dir) {
  EntryFiles files;
  files.key_document = read_json(dir / k_key_file);
  files.manifest = read_json(dir / k_manifest_file);
  files.code = read_file(dir / code_file_name(files.manifest));
  return files;
}

void check_entry(const EntryFiles& files, const fs::path& relative_path, const std::string* expected_hash) {
  const KernelKey key = key_from_document(files.key_document);
  if (expected_hash != nullptr && key.hash != *expected_hash) {
    throw IoFailure(fmt::format("key.json does not name hash {}", *expected_hash));
  }
  const std::string canonical = key.canonical();
  if (sha256_hex(canonical.data(), canonical.size()) != key.hash) {
    throw IoFailure("key.json fields do not hash to the key");
  }
  fs::path expected_path;
  try {
    expected_path = relative_entry_path(key);
  } catch (const Error& e) {
    throw IoFailure(e.what());
  }
  if (expected_path != relative_path) {
    throw IoFailure(fmt::format("key.json belongs at {}, not {}", expected_path.string(), relative_path.string()));
  }

  const nlohmann::json& manifest = files.manifest;
  if (!manifest.is_object() || !manifest.contains("size") || !manifest["size"].is_number_unsigned() ||
      !manifest.contains("sha256") || !manifest["sha256"].is_string()) {
    throw IoFailure("manifest.json lacks size or sha256");
  }
  const std::string code_file = code_file_name(manifest);
  if (manifest["size"].get<std::uint64_t>() != files.code.size()) {
    throw IoFailure(fmt::format("{} has {} bytes, manifest says {}", code_file, files.code.size(),
                                manifest["size"].get<std::uint64_t>()));
  }
  if (manifest["sha256"].get<std::string>() != sha256_hex(files.code.data(), files.code.size())) {
    throw IoFailure(fmt::format("{} does not match its sha256 in manifest.json", code_file));
  }
}

}  // namespace mlajit::cache
