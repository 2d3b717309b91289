// Cache bundles: a length-prefixed container of entry files inside one zstd frame.
#include "cache/bundle.hpp"

#include <algorithm>
#include <array>
#include <cstring>
#include <map>
#include <set>

#include <fmt/format.h>

#include "cache/compressed_file.hpp"
#include "cache/entry_files.hpp"
#include "cache/file_io.hpp"
#include "codegen/error.hpp"

namespace mlajit::cache {

namespace fs = std::filesystem;

namespace {

constexpr char k_magic[8] = {'M', 'L', 'J', 'B', 'N', 'D', 'L', '1'};
constexpr const char* k_bundle_manifest = "bundle.json";
constexpr int k_bundle_version = 1;
// Refuse to inflate a bundle past this (a corrupt or hostile length must not exhaust memory).
constexpr std::uint64_t k_max_bundle_bytes = std::uint64_t(16) << 30;
constexpr std::uint32_t k_max_name_bytes = 4096;

std::span<const std::uint8_t> as_bytes(std::string_view text) {
  return {reinterpret_cast<const std::uint8_t*>(text.data()), text.size()};
}

// `value` as `Bytes` little-endian bytes.
template <std::size_t Bytes>
std::array<std::uint8_t, Bytes> little_endian(std::uint64_t value) {
  std::array<std::uint8_t, Bytes> out{};
  for (std::size_t i = 0; i < Bytes; ++i) out[i] = static_cast<std::uint8_t>(value >> (8 * i));
  return out;
}

void write_record(CompressedFileWriter& writer, const std::string& name, std::span<const std::uint8_t> data) {
  writer.write(little_endian<4>(name.size()));
  writer.write(as_bytes(name));
  writer.write(little_endian<8>(data.size()));
  writer.write(data);
}

// Walks the records of a decompressed bundle, checking every length against what is left.
class RecordReader {
 public:
  explicit RecordReader(std::span<const std::uint8_t> bytes) : bytes_(bytes) {
    if (bytes_.size() < sizeof k_magic || std::memcmp(bytes_.data(), k_magic, sizeof k_magic) != 0) {
      throw IoFailure("not an mlajit cache bundle (bad magic)");
    }
    at_ = sizeof k_magic;
  }

  bool done() const { return at_ == bytes_.size(); }

  std::pair<std::string, std::span<const std::uint8_t>> next() {
    const std::uint64_t name_size = take_le(4);
    if (name_size == 0 || name_size > k_max_name_bytes) throw IoFailure(fmt::format("record name of {} bytes", name_size));
    const std::span<const std::uint8_t> name = take(name_size);
    const std::uint64_t data_size = take_le(8);
    return {std::string(name.begin(), name.end()), take(data_size)};
  }

 private:
  std::span<const std::uint8_t> take(std::uint64_t size) {
    if (size > bytes_.size() - at_) throw IoFailure("the bundle ends inside a record");
    const std::span<const std::uint8_t> part = bytes_.subspan(at_, size);
    at_ += size;
    return part;
  }
  std::uint64_t take_le(int bytes) {
    const std::span<const std::uint8_t> raw = take(static_cast<std::uint64_t>(bytes));
    std::uint64_t value = 0;
    for (int i = bytes - 1; i >= 0; --i) value = (value << 8) | raw[static_cast<std::size_t>(i)];
    return value;
  }

  std::span<const std::uint8_t> bytes_;
  std::size_t at_ = 0;
};

nlohmann::json bundle_manifest(const std::vector<std::pair<EntryInfo, EntryFiles>>& entries,
                               const std::string& tool_version) {
  std::set<std::string> targets, compilers;
  std::set<int> generators;
  nlohmann::json listed = nlohmann::json::array();
  for (const auto& [info, files] : entries) {
    const nlohmann::json& fields = files.key_document.at("fields");
    targets.insert(info.target);
    compilers.insert(fmt::format("{} {} {}", fields.value("backend", "?"), fields.value("compiler", "?"),
                                 fields.value("compiler_version", "?")));
    generators.insert(fields.value("generator_version", 0));
    listed.push_back({{"path", info.relative.string()}, {"hash", files.key_document.at("hash")},
                      {"code_bytes", files.code.size()}});
  }
  return {{"format", "mlajit-cache-bundle"}, {"bundle_version", k_bundle_version}, {"layout", k_layout_dir},
          {"mlajit_version", tool_version}, {"created", utc_time(false)}, {"archs", targets},
          {"compilers", compilers}, {"generator_versions", generators}, {"entries", listed}};
}

// An entry's files as found in a bundle, before validation.
struct BundledEntry {
  std::map<std::string, std::span<const std::uint8_t>> files;  // by file name
};

// Splits "<target>/<shard>/<entry>/<file>" into the entry's place and the file name.
std::pair<fs::path, std::string> split_record_name(const std::string& name) {
  const fs::path path(name);
  std::vector<std::string> parts;
  for (const fs::path& part : path) parts.push_back(part.string());
  for (const std::string& part : parts) {
    if (part.empty() || part == "." || part == ".." || part == "/") {
      throw IoFailure(fmt::format("record '{}' is not <target>/<shard>/<entry>/<file>", name));
    }
  }
  if (parts.size() != 4) throw IoFailure(fmt::format("record '{}' is not <target>/<shard>/<entry>/<file>", name));
  return {fs::path(parts[0]) / parts[1] / parts[2], parts[3]};
}

// Checks one bundled entry as verify checks a stored one, and builds what get_or_create needs.
std::pair<KernelKey, Entry> validate_entry(const fs::path& place, const BundledEntry& bundled) {
  auto file = [&](const std::string& name) {
    const auto it = bundled.files.find(name);
    if (it == bundled.files.end()) throw IoFailure(fmt::format("{} is missing", name));
    return it->second;
  };
  EntryFiles files;
  files.key_document = parse_json(file(k_key_file), k_key_file);
  files.manifest = parse_json(file(k_manifest_file), k_manifest_file);
  const std::string code_name = code_file_name(files.manifest);
  const std::span<const std::uint8_t> code = file(code_name);
  files.code.assign(code.begin(), code.end());
  if (bundled.files.size() != 3) throw IoFailure("holds files other than key.json, manifest.json and " + code_name);
  check_entry(files, place, nullptr);
  return {key_from_document(files.key_document), Entry{std::move(files.code), std::move(files.manifest)}};
}

}  // namespace

ExportReport export_bundle(const fs::path& root, const fs::path& file, const std::string& tool_version) {
  ExportReport report;
  // Read and check everything first: only verified entries are shipped, and bundle.json (the
  // first record) lists exactly what follows.
  std::vector<std::pair<EntryInfo, EntryFiles>> entries;
  for (const EntryInfo& info : list_entries(root)) {
    if (std::optional<std::string> problem = verify_entry(info)) {
      report.skipped.emplace_back(info, *problem);
      continue;
    }
    try {
      entries.emplace_back(info, read_entry_files(info.dir));
    } catch (const IoFailure& e) {
      report.skipped.emplace_back(info, e.what());  // changed since verify (evicted, damaged)
    }
  }
  report.manifest = bundle_manifest(entries, tool_version);
  try {
    CompressedFileWriter writer(file);
    writer.write(as_bytes(std::string_view(k_magic, sizeof k_magic)));
    write_record(writer, k_bundle_manifest, as_bytes(to_file_text(report.manifest)));
    for (const auto& [info, files] : entries) {
      const std::string base = info.relative.string() + "/";
      write_record(writer, base + k_key_file, as_bytes(to_file_text(files.key_document)));
      write_record(writer, base + k_manifest_file, as_bytes(to_file_text(files.manifest)));
      write_record(writer, base + code_file_name(files.manifest), files.code);
    }
    report.file_bytes = writer.commit();
  } catch (const IoFailure& e) {
    throw Error(ErrorCode::cache_error, fmt::format("cannot write bundle {}: {}", file.string(), e.what()));
  }
  return report;
}

ImportReport import_bundle(const DiskStore& store, const fs::path& file) {
  ImportReport report;
  std::vector<std::uint8_t> bytes;
  std::map<fs::path, BundledEntry> bundled;
  std::vector<std::pair<KernelKey, Entry>> entries;
  std::string where = "the container";
  try {
    bytes = read_compressed_file(file, k_max_bundle_bytes);
    RecordReader records(bytes);
    if (records.done()) throw IoFailure("it is empty");
    const auto [first_name, first_data] = records.next();
    if (first_name != k_bundle_manifest) throw IoFailure("the first record is not bundle.json");
    report.manifest = parse_json(first_data, k_bundle_manifest);
    if (!report.manifest.is_object() || report.manifest.value("format", "") != "mlajit-cache-bundle" ||
        report.manifest.value("bundle_version", 0) != k_bundle_version ||
        report.manifest.value("layout", "") != k_layout_dir || !report.manifest.contains("entries") ||
        !report.manifest["entries"].is_array()) {
      throw IoFailure(fmt::format("bundle.json is not a version {} bundle of layout {}", k_bundle_version, k_layout_dir));
    }
    while (!records.done()) {
      const auto [name, data] = records.next();
      where = "record " + name;
      auto [place, file_name] = split_record_name(name);
      if (!bundled[place].files.emplace(file_name, data).second) throw IoFailure("appears twice");
    }
    std::set<std::string> listed;
    for (const nlohmann::json& entry : report.manifest["entries"]) listed.insert(entry.value("path", ""));
    for (const auto& [place, entry] : bundled) {
      where = "entry " + place.string();
      if (listed.erase(place.string()) == 0) throw IoFailure("is not listed in bundle.json");
      entries.push_back(validate_entry(place, entry));
    }
    where = "bundle.json";
    if (!listed.empty()) throw IoFailure(fmt::format("lists {} which the bundle does not hold", *listed.begin()));
  } catch (const std::exception& e) {
    // Anything wrong anywhere (container, JSON shape, checksum, key) refuses the whole bundle.
    throw Error(ErrorCode::cache_error,
                fmt::format("refusing bundle {}: {}: {} (nothing was installed)", file.string(), where, e.what()));
  }

  // Installing is publishing: the same key lock and atomic rename as a compile, so an import
  // racing warm processes (or another import) installs each entry exactly once.
  for (const auto& [key, entry] : entries) {
    const std::string place = relative_entry_path(key).string();
    Outcome outcome = Outcome::compiled;
    store.get_or_create(key, [&] { return entry; }, &outcome);
    if (outcome == Outcome::disk_hit) {
      report.present.push_back(place);
    } else if (std::error_code error; fs::is_directory(store.entry_dir(key), error)) {
      report.installed.push_back(place);
    } else {
      report.not_stored.push_back(place);
    }
  }
  return report;
}

}  // namespace mlajit::cache
