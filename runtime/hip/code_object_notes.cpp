// Reads per-kernel resources from the AMDGPU metadata note of an hsaco (LLVM Object + msgpack);
// without LLVM at build time it reports that nothing can be read.
#include "runtime/hip/code_object_notes.hpp"

#include <cstring>
#include <limits>
#include <string_view>

#ifdef MLAJIT_HAVE_LLVM
#include <llvm/BinaryFormat/ELF.h>
#include <llvm/BinaryFormat/MsgPackDocument.h>
#include <llvm/Config/llvm-config.h>
#include <llvm/Object/ELF.h>
#include <llvm/Support/Error.h>
#endif

namespace mlajit::runtime::hip {

namespace {

// ---- clang offload bundle -------------------------------------------------------------------
// Some hipRTC versions return a bundle instead of a bare ELF. Layout (clang-offload-bundler):
// magic, u64 entry count, then per entry u64 offset, u64 size, u64 id length, id bytes.
constexpr std::string_view k_bundle_magic = "__CLANG_OFFLOAD_BUNDLE__";
constexpr std::string_view k_elf_magic = "\177ELF";

bool starts_with(std::span<const std::uint8_t> bytes, std::string_view prefix) {
  return bytes.size() >= prefix.size() && std::memcmp(bytes.data(), prefix.data(), prefix.size()) == 0;
}

bool read_u64(std::span<const std::uint8_t> bytes, std::size_t& at, std::uint64_t& value) {
  if (at + sizeof(value) > bytes.size()) return false;
  std::memcpy(&value, bytes.data() + at, sizeof(value));  // little-endian, as on every host we build
  at += sizeof(value);
  return true;
}

// The first amdgcn ELF of the bundle; empty when there is none.
std::span<const std::uint8_t> amdgcn_entry(std::span<const std::uint8_t> bundle) {
  std::size_t at = k_bundle_magic.size();
  std::uint64_t count = 0;
  if (!read_u64(bundle, at, count)) return {};
  for (std::uint64_t i = 0; i < count; ++i) {
    std::uint64_t offset = 0, size = 0, id_length = 0;
    if (!read_u64(bundle, at, offset) || !read_u64(bundle, at, size) || !read_u64(bundle, at, id_length) ||
        id_length > bundle.size() - at) {
      return {};
    }
    const std::string_view id(reinterpret_cast<const char*>(bundle.data() + at), id_length);
    at += id_length;
    if (id.find("amdgcn") == std::string_view::npos || offset > bundle.size() ||
        size > bundle.size() - offset) {
      continue;
    }
    const std::span<const std::uint8_t> entry = bundle.subspan(offset, size);
    if (starts_with(entry, k_elf_magic)) return entry;
  }
  return {};
}

// The hsaco ELF inside `binary`, or empty with `failure` set.
std::span<const std::uint8_t> elf_image(std::span<const std::uint8_t> binary, std::string& failure) {
  if (starts_with(binary, k_elf_magic)) return binary;
  if (starts_with(binary, k_bundle_magic)) {
    std::span<const std::uint8_t> entry = amdgcn_entry(binary);
    if (entry.empty()) failure = "offload bundle without an amdgcn code object";
    return entry;
  }
  failure = "not an ELF code object or an uncompressed offload bundle";
  return {};
}

#ifdef MLAJIT_HAVE_LLVM

using llvm::msgpack::DocNode;
using llvm::msgpack::Type;

constexpr std::string_view k_origin = "code-object notes";
// Largest field value kept: spilled VGPRs are multiplied by 4 bytes and must still fit an int.
constexpr std::uint64_t k_max_field = std::numeric_limits<int>::max() / 4;

// An integer field of a kernel's metadata map; -1 when absent or not an integer.
int int_field(llvm::msgpack::MapDocNode& kernel, llvm::StringRef key) {
  auto it = kernel.find(key);
  if (it == kernel.end()) return -1;
  const DocNode& node = it->second;
  // Values beyond int (only in a damaged note) count as unknown.
  if (node.getKind() == Type::UInt && node.getUInt() <= k_max_field) return static_cast<int>(node.getUInt());
  if (node.getKind() == Type::Int && node.getInt() >= 0 && node.getInt() <= std::int64_t(k_max_field)) {
    return static_cast<int>(node.getInt());
  }
  return -1;
}

// One entry of amdhsa.kernels, named by its ".name".
void add_kernel(DocNode& node, CodeObjectNotes& notes) {
  if (!node.isMap()) return;
  llvm::msgpack::MapDocNode& kernel = node.getMap();
  auto name = kernel.find(".name");
  if (name == kernel.end() || !name->second.isString()) return;
  KernelResources r;
  r.origin = std::string(k_origin);
  r.registers = int_field(kernel, ".vgpr_count");  // includes AGPRs on gfx90a / gfx94x
  r.shared_bytes = int_field(kernel, ".group_segment_fixed_size");
  r.local_bytes = int_field(kernel, ".private_segment_fixed_size");
  // The note counts spilled VGPRs; each costs 4 bytes of scratch per lane, written and read
  // back, so stores and loads both get that size. SGPR spills go to VGPR lanes, not memory.
  const int vgpr_spills = int_field(kernel, ".vgpr_spill_count");
  r.spill_stores = r.spill_loads = vgpr_spills < 0 ? -1 : vgpr_spills * 4;
  notes.kernels[name->second.getString().str()] = r;
}

// Code object v3+ metadata: a msgpack map whose "amdhsa.kernels" (top-level keys carry no dot,
// per-kernel keys do) is an array of kernel maps.
void parse_metadata(llvm::StringRef blob, CodeObjectNotes& notes) {
  llvm::msgpack::Document document;
  if (!document.readFromBlob(blob, /*Multi=*/false) || !document.getRoot().isMap()) {
    notes.failure = "AMDGPU metadata note is not a msgpack map";
    return;
  }
  llvm::msgpack::MapDocNode& root = document.getRoot().getMap();
  auto kernels = root.find("amdhsa.kernels");
  if (kernels == root.end() || !kernels->second.isArray()) {
    notes.failure = "AMDGPU metadata has no amdhsa.kernels array";
    return;
  }
  for (DocNode& kernel : kernels->second.getArray()) add_kernel(kernel, notes);
}

template <class Note, class Section>
llvm::ArrayRef<std::uint8_t> note_description(const Note& note, const Section& section) {
#if LLVM_VERSION_MAJOR >= 17
  return note.getDesc(section.sh_addralign);
#else
  (void)section;
  return note.getDesc();
#endif
}

// Finds the NT_AMDGPU_METADATA note among the ELF's note sections and parses it.
void read_elf(std::span<const std::uint8_t> image, CodeObjectNotes& notes) {
  const llvm::StringRef bytes(reinterpret_cast<const char*>(image.data()), image.size());
  auto object = llvm::object::ELF64LEFile::create(bytes);
  if (!object) {
    notes.failure = "not a 64-bit little-endian ELF: " + llvm::toString(object.takeError());
    return;
  }
  auto sections = object->sections();
  if (!sections) {
    notes.failure = "unreadable ELF sections: " + llvm::toString(sections.takeError());
    return;
  }
  for (const auto& section : *sections) {
    if (section.sh_type != llvm::ELF::SHT_NOTE) continue;
    llvm::Error error = llvm::Error::success();
    for (const auto& note : object->notes(section, error)) {
      if (note.getName() != "AMDGPU" || note.getType() != llvm::ELF::NT_AMDGPU_METADATA) continue;
      const auto description = note_description(note, section);
      parse_metadata(llvm::StringRef(reinterpret_cast<const char*>(description.data()), description.size()),
                     notes);
      llvm::consumeError(std::move(error));
      return;
    }
    if (error) {
      notes.failure = "unreadable ELF note: " + llvm::toString(std::move(error));
      return;
    }
  }
  notes.failure = "no NT_AMDGPU_METADATA note in the code object";
}

#endif  // MLAJIT_HAVE_LLVM

}  // namespace

CodeObjectNotes read_code_object_notes(std::span<const std::uint8_t> binary) {
  CodeObjectNotes notes;
  const std::span<const std::uint8_t> image = elf_image(binary, notes.failure);
  if (image.empty()) return notes;
#ifdef MLAJIT_HAVE_LLVM
  read_elf(image, notes);
#else
  notes.failure = "built without LLVM";
#endif
  return notes;
}

}  // namespace mlajit::runtime::hip
