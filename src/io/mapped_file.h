#pragma once
// Read-only memory map of a whole file (RAII). The map base is page aligned; the pages stay valid
// until the object is destroyed. If another process truncates the file meanwhile, reads past the
// new end raise SIGBUS — a property of mmap that callers accept for zero-copy loading.
#include <cstddef>
#include <cstdint>
#include <string>

namespace loopq::io {

// Drops the whole pages inside [p, p + n) of a read-only file mapping from this process's
// resident set (madvise MADV_DONTNEED): the bytes stay readable and fault in again from the file
// on the next access. For loaders that copy a tensor out and will not read it again, so the peak
// RSS is the model, not the model plus the mapped file. Best effort.
void release_pages(const void* p, size_t n);

class MappedFile {
 public:
  // Throws loopq::Error naming the path if it cannot be opened, is not a regular file, or cannot
  // be mapped. An empty file gives size() == 0 and data() == nullptr.
  explicit MappedFile(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  void release() noexcept;

  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace loopq::io
