// zstd streaming compression into an atomically published file, and whole-file decompression.
#include "cache/compressed_file.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <memory>
#include <string>

#include <fmt/format.h>
#include <zstd.h>

namespace mlajit::cache {

namespace fs = std::filesystem;

namespace {

constexpr int k_compression_level = 3;  // zstd's default: fast, and code objects compress well

void check_zstd(std::size_t result, const char* step, const fs::path& path) {
  if (ZSTD_isError(result)) throw IoFailure(fmt::format("{} {}: {}", step, path.string(), ZSTD_getErrorName(result)));
}

void write_all(int fd, const std::uint8_t* data, std::size_t size, const fs::path& path) {
  while (size > 0) {
    const ssize_t n = ::write(fd, data, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail("cannot write", path, errno);
    }
    data += n;
    size -= static_cast<std::size_t>(n);
  }
}

}  // namespace

CompressedFileWriter::CompressedFileWriter(fs::path path) : path_(std::move(path)), out_(ZSTD_CStreamOutSize()) {
  const fs::path dir = path_.has_parent_path() ? path_.parent_path() : fs::path(".");
  temp_path_ = dir / fmt::format(".{}.{}.{}.tmp", path_.filename().string(), ::getpid(), random_hex());
  file_ = FileDescriptor(::open(temp_path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (!file_.valid()) fail("cannot create", temp_path_, errno);
  context_ = ZSTD_createCCtx();
  if (context_ == nullptr) throw IoFailure("zstd: out of memory");
  check_zstd(ZSTD_CCtx_setParameter(context_, ZSTD_c_compressionLevel, k_compression_level), "zstd level", path_);
  // The frame carries a checksum of the content, so a damaged bundle fails as a whole on import.
  check_zstd(ZSTD_CCtx_setParameter(context_, ZSTD_c_checksumFlag, 1), "zstd checksum", path_);
}

CompressedFileWriter::~CompressedFileWriter() {
  ZSTD_freeCCtx(context_);
  if (file_.valid()) {
    file_.reset();
    ::unlink(temp_path_.c_str());
  }
}

void CompressedFileWriter::write(std::span<const std::uint8_t> bytes) { compress(bytes, false); }

void CompressedFileWriter::compress(std::span<const std::uint8_t> bytes, bool end) {
  ZSTD_inBuffer input{bytes.data(), bytes.size(), 0};
  for (;;) {
    ZSTD_outBuffer output{out_.data(), out_.size(), 0};
    const std::size_t remaining = ZSTD_compressStream2(context_, &output, &input, end ? ZSTD_e_end : ZSTD_e_continue);
    check_zstd(remaining, "cannot compress", path_);
    write_all(file_.get(), out_.data(), output.pos, temp_path_);
    written_ += output.pos;
    // e_continue is done when all input is consumed; e_end when the frame is fully flushed.
    if (end ? remaining == 0 : input.pos == input.size) return;
  }
}

std::uint64_t CompressedFileWriter::commit() {
  compress({}, true);
  if (::fsync(file_.get()) != 0) fail("cannot fsync", temp_path_, errno);
  if (const int error = file_.close_checked(); error != 0) {
    ::unlink(temp_path_.c_str());
    fail("cannot close", temp_path_, error);
  }
  // The publish point: rename() replaces `path_` atomically, so a reader (or a crash) sees the
  // old file or the complete new one.
  if (::rename(temp_path_.c_str(), path_.c_str()) != 0) {
    const int error = errno;
    ::unlink(temp_path_.c_str());
    fail("cannot rename into", path_, error);
  }
  return written_;
}

std::vector<std::uint8_t> read_compressed_file(const fs::path& path, std::uint64_t max_bytes) {
  const std::vector<std::uint8_t> compressed = read_file(path);
  std::unique_ptr<ZSTD_DCtx, decltype(&ZSTD_freeDCtx)> context(ZSTD_createDCtx(), &ZSTD_freeDCtx);
  if (!context) throw IoFailure("zstd: out of memory");
  std::vector<std::uint8_t> plain;
  std::vector<std::uint8_t> chunk(ZSTD_DStreamOutSize());
  ZSTD_inBuffer input{compressed.data(), compressed.size(), 0};
  std::size_t last = 1;  // 0 once a frame is complete and flushed
  while (input.pos < input.size || last != 0) {
    ZSTD_outBuffer output{chunk.data(), chunk.size(), 0};
    const std::size_t before = input.pos;
    last = ZSTD_decompressStream(context.get(), &output, &input);
    check_zstd(last, "cannot decompress", path);
    if (plain.size() + output.pos > max_bytes) {
      throw IoFailure(fmt::format("{} decompresses to more than {} bytes", path.string(), max_bytes));
    }
    plain.insert(plain.end(), chunk.data(), chunk.data() + output.pos);
    // No input consumed and no output made: the input ended inside a frame.
    if (last != 0 && input.pos == before && output.pos == 0) {
      throw IoFailure(fmt::format("{} is truncated (the compressed stream ends early)", path.string()));
    }
  }
  return plain;
}

}  // namespace mlajit::cache
