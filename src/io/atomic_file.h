#pragma once
// Crash-safe output: bytes go to the hidden "<dir>/.<name>.tmp.<pid>" beside the target, are
// fsync'ed, and the temp file is renamed over `path` only on commit(). Readers therefore see either
// the old file or the complete new one, never a partial write; on failure the temp file is
// removed. A process killed with SIGKILL cannot remove its temp file: the next AtomicFile for the
// same path deletes every ".<name>.tmp.<pid>" that no process holds. Liveness is an flock(2) the
// writer holds on its temp file or staging folder for as long as it lives; the kernel drops it
// when the process dies, so a reused pid (pid_max is often 32768) never keeps a stale temp alive.
#include <cstddef>
#include <memory>
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
  int lock_fd_ = -1;  // a dup of fd_ that keeps the flock until after the rename
  bool done_ = false;
};

// Writes `contents` to `path` atomically (see AtomicFile). Throws loopq::Error naming the path.
void write_file_atomic(const std::string& path, const std::string& contents);

// Hidden temp name for `path` owned by process `pid`: "<dir>/.<name>.tmp.<pid>".
std::string hidden_temp_path(const std::string& path, long pid);
// Removes the temp files and folders hidden_temp_path(path, pid) that no live writer holds (left
// by a kill -9). Best effort: errors are ignored. Returns how many were removed.
int remove_stale_temps(const std::string& path);

// Creates the staging folder `staging` (removing an old one of that name) and holds its owner
// lock until destroyed, so remove_stale_temps leaves it alone. Throws loopq::Error.
class StagingFolder {
 public:
  explicit StagingFolder(const std::string& staging);
  ~StagingFolder();  // releases the lock; the folder itself stays (rename or remove it first)
  StagingFolder(const StagingFolder&) = delete;
  StagingFolder& operator=(const StagingFolder&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  int fd_ = -1;
};

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
  std::unique_ptr<StagingFolder> lock_;
  bool done_ = false;
};

}  // namespace loopq::io
