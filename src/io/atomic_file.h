#pragma once
// Crash-safe output: bytes go to the hidden "<dir>/.<name>.tmp.<pid>" beside the target, are
// fsync'ed, and the temp file is renamed over `path` only on commit(). Readers therefore see either
// the old file or the complete new one, never a partial write; on failure the temp file is
// removed. A process killed with SIGKILL cannot remove its temp file: the next AtomicFile for the
// same path deletes every ".<name>.tmp.<pid>" whose process no longer exists.
#include <cstddef>
#include <string>
#include <vector>

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

// Hidden temp name for `path` owned by process `pid`: "<dir>/.<name>.tmp.<pid>".
std::string hidden_temp_path(const std::string& path, long pid);
// Removes the temp files and folders hidden_temp_path(path, pid) of processes that are gone (left
// by a kill -9). Best effort: errors are ignored. Returns how many were removed.
int remove_stale_temps(const std::string& path);

}  // namespace loopq::io

namespace loopq::io {

// A folder of output files that appears whole or not at all. Files are written into the hidden
// staging folder hidden_temp_path(path, pid) beside `path`; commit() renames the staging folder
// to `path` when `path` does not exist or is an empty folder (one atomic rename). Into an existing
// non-empty folder each staged file is renamed in turn (each file atomic), the names in
// `commit_last` after all others, so a marker file such as config.json appears only once the
// files it describes are complete. Stale staging folders of killed processes are removed.
class AtomicDir {
 public:
  explicit AtomicDir(const std::string& path);  // creates the staging folder; throws loopq::Error
  ~AtomicDir();                                 // removes the staging folder unless committed
  AtomicDir(const AtomicDir&) = delete;
  AtomicDir& operator=(const AtomicDir&) = delete;

  const std::string& staging() const { return staging_; }
  std::string file(const std::string& name) const { return staging_ + "/" + name; }
  void commit(const std::vector<std::string>& commit_last = {});

 private:
  std::string path_;
  std::string staging_;
  bool done_ = false;
};

}  // namespace loopq::io
