// zstd-compressed files for cache bundles: a streaming writer that publishes its file atomically,
// and a reader that insists on one complete, checksummed frame.
#pragma once

#include <cstdint>
#include <filesystem>
#include <span>
#include <vector>

#include "cache/file_io.hpp"

struct ZSTD_CCtx_s;

namespace mlajit::cache {

// Compresses everything write() is given into a temporary file beside `path`; commit() ends the
// frame, fsyncs and renames it into place, so `path` is either absent/old or complete. Without
// commit() (an exception) the temporary file is removed. Throws IoFailure.
class CompressedFileWriter {
 public:
  explicit CompressedFileWriter(std::filesystem::path path);
  ~CompressedFileWriter();
  CompressedFileWriter(const CompressedFileWriter&) = delete;
  CompressedFileWriter& operator=(const CompressedFileWriter&) = delete;

  void write(std::span<const std::uint8_t> bytes);
  // Returns the size of the compressed file.
  std::uint64_t commit();

 private:
  void compress(std::span<const std::uint8_t> bytes, bool end);

  std::filesystem::path path_;
  std::filesystem::path temp_path_;
  FileDescriptor file_;
  ZSTD_CCtx_s* context_ = nullptr;
  std::vector<std::uint8_t> out_;
  std::uint64_t written_ = 0;
};

// The decompressed contents of a file written by CompressedFileWriter. Throws IoFailure when it
// is not zstd, is truncated, fails its checksum, or would exceed `max_bytes`.
std::vector<std::uint8_t> read_compressed_file(const std::filesystem::path& path, std::uint64_t max_bytes);

}  // namespace mlajit::cache
