#pragma once
// Crash-safe output: bytes go to "<path>.tmp.<pid>" in the same directory, are fsync'ed, and the
// temp file is renamed over `path` only on commit(). Readers therefore see either the old file or
// the complete new one, never a partial write; on failure the temp file is removed.
#include <cstddef>
#include <string>

namespace loopq::io {

class AtomicFile {
 public:
  explicit AtomicFile(const std::string& path);  // creates the temp file; throws loopq::Error
  ~AtomicFile();                                 // discards the temp file unless committed
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void write(const void* data, size_t n);  // appends; throws loopq::Error (e.g. disk full)
  void commit();                           // fsync + rename over path + fsync of the directory
  void discard() noexcept;                 // removes the temp file; idempotent

  const std::string& path() const { return path_; }
  const std::string& temp_path() const { return temp_path_; }

 private:
  std::string path_;
  std::string temp_path_;
  int fd_ = -1;
  bool done_ = false;
};

// Writes `contents` to `path` atomically (see AtomicFile). Throws loopq::Error naming the path.
void write_file_atomic(const std::string& path, const std::string& contents);

}  // namespace loopq::io
