// The generate -> key -> cache -> compile path, and conversion of code objects to cache entries.
#include "runtime/jit.hpp"

#include <chrono>
#include <cstdio>

#include "cache/environment.hpp"
#include "cache/gc.hpp"
#include "codegen/error.hpp"

namespace mlajit::runtime {

namespace {

nlohmann::json resources_json(const KernelResources& r) {
  return nlohmann::json{{"registers", r.registers}, {"shared_bytes", r.shared_bytes},
                        {"local_bytes", r.local_bytes}, {"spill_stores", r.spill_stores},
                        {"spill_loads", r.spill_loads}, {"origin", r.origin}};
}

KernelResources resources_from_json(const nlohmann::json& j) {
  KernelResources r;
  r.registers = j.value("registers", -1);
  r.shared_bytes = j.value("shared_bytes", -1);
  r.local_bytes = j.value("local_bytes", -1);
  r.spill_stores = j.value("spill_stores", -1);
  r.spill_loads = j.value("spill_loads", -1);
  r.origin = j.value("origin", std::string());
  return r;
}

cache::Entry to_entry(const CodeObject& code) {
  cache::Entry entry;
  entry.code = code.binary;
  nlohmann::json resources = nlohmann::json::object();
  for (const auto& [name, r] : code.resources) resources[name] = resources_json(r);
  entry.manifest = nlohmann::json{{"format", code.format}, {"compile_ms", code.compile_ms},
                                  {"compiler_log", code.log}, {"resources", resources}};
  return entry;
}

CodeObject from_entry(const cache::Entry& entry) {
  CodeObject code;
  code.binary = entry.code;
  code.format = entry.manifest.value("format", std::string());
  code.compile_ms = entry.manifest.value("compile_ms", 0.0);
  code.log = entry.manifest.value("compiler_log", std::string());
  if (auto it = entry.manifest.find("resources"); it != entry.manifest.end() && it->is_object()) {
    for (auto r = it->begin(); r != it->end(); ++r) code.resources[r.key()] = resources_from_json(r.value());
  }
  return code;
}

// MLAJIT_DISABLE_JIT=1: production runs only what was warmed; a miss names the kernel.
[[noreturn]] void refuse_to_compile(const cache::KernelKey& key, const cache::DiskStore* store) {
  std::string searched = "the disk cache is disabled (MLAJIT_DISABLE_CACHE=1)";
  if (store != nullptr) {
    searched = "searched " + store->root().string();
    if (store->system_root()) searched += " and the system layer " + store->system_root()->string();
  }
  throw Error(ErrorCode::cache_error,
              "MLAJIT_DISABLE_JIT=1 and the kernel cache has no entry for " + key.readable_name + " (" +
                  key.fields.value("arch", std::string()) + ", key " + key.hash + "; " + searched +
                  "); warm it ahead of time with `mlajit warm` or import a bundle");
}

}  // namespace

const cache::DiskStore* default_store() {
  static const std::optional<cache::DiskStore> store = []() -> std::optional<cache::DiskStore> {
    if (read_environment("MLAJIT_DISABLE_CACHE") == "1") return std::nullopt;
    cache::DiskStore disk(cache::default_root(), cache::default_system_root());
    disk.set_size_limit(cache::size_limit_from_environment());
    return disk;
  }();
  return store ? &*store : nullptr;
}

cache::KernelKey kernel_key(const Source& source, const Spec& spec, const TileConfig& tile,
                            const Target& target, Backend& backend) {
  const CompilerInfo compiler = backend.compiler_info();
  cache::KeyFields fields;
  fields.spec = to_json(spec);
  fields.tile = kernel_json(tile);
  fields.backend = std::string(backend_name(target.backend));
  fields.arch = target.arch;
  fields.compiler = compiler.name;
  fields.compiler_version = compiler.version;
  fields.generator_version = kGeneratorVersion;
  // The templates' digests, and the rendered stub's: it carries every value the generator fills
  // in (threads, shared bytes, minimum CTAs an SM, ...), so a changed generator constant can never
  // find a kernel built with the old one.
  fields.template_digest =
      source.template_digest() + ";rendered=" + cache::sha256_hex(source.text.data(), source.text.size());
  fields.compile_options = backend.compile_options(target);
  return cache::make_key(fields, source.kernel_name);
}

namespace {

// MLAJIT_LOG=1: one stderr line per kernel that leaves the generate/cache/compile path.
void log_event(const JitResult& r, double ms) {
  static const bool enabled = read_environment("MLAJIT_LOG") == "1";
  if (!enabled) return;
  const char* what = r.outcome == cache::Outcome::compiled ? "compiled" : "loaded from cache";
  std::fprintf(stderr, "mlajit: %s %s (%s, %.1f ms)%s%s\n", what, r.key.entry_name().c_str(), r.code.format.c_str(), ms,
               r.quarantined.empty() ? "" : "; replaced a damaged entry: ", r.quarantined.c_str());
}

}  // namespace

JitResult jit_compile(const Spec& spec, const TileConfig& tile, const Target& target,
                      const cache::DiskStore* store) {
  JitResult result;
  result.source = generate(spec, tile, target);
  Backend& compiler = backend(target.backend);
  result.key = kernel_key(result.source, spec, tile, target, compiler);
  // Read only on a miss, so hits never look at the environment.
  const auto compile_code = [&] {
    if (read_environment("MLAJIT_DISABLE_JIT") == "1") refuse_to_compile(result.key, store);
    return compiler.compile(result.source, target);
  };
  if (store == nullptr) {
    const auto start = std::chrono::steady_clock::now();
    result.code = compile_code();
    result.outcome = cache::Outcome::compiled;
    log_event(result, std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
    return result;
  }
  const auto compile = [&] { return to_entry(compile_code()); };
  const auto start = std::chrono::steady_clock::now();
  result.code = from_entry(store->get_or_create(result.key, compile, &result.outcome, &result.quarantined));
  log_event(result, std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
  return result;
}

}  // namespace mlajit::runtime
