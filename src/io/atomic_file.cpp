#include "io/atomic_file.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <vector>

#include "util/error.h"

namespace loopq::io {
namespace {

std::string errno_text() { return std::strerror(errno); }

std::string parent_dir(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

std::string base_name(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

// Locks `fd` (opened on `path`) as its owner. Between creating `path` and locking it, another
// process's remove_stale_temps may have removed it; false tells the caller to create it anew.
bool lock_owned(int fd, const std::string& path) {
  if (::flock(fd, LOCK_EX) != 0) return false;
  struct stat a {}, b {};
  return ::fstat(fd, &a) == 0 && ::stat(path.c_str(), &b) == 0 && a.st_dev == b.st_dev &&
         a.st_ino == b.st_ino;
}

// True when nobody holds the owner lock of the temp file or folder at `path`.
bool unowned(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return false;
  const bool free = ::flock(fd, LOCK_EX | LOCK_NB) == 0;
  ::close(fd);  // also drops the lock just taken
  return free;
}

}  // namespace

std::string hidden_temp_path(const std::string& path, long pid) {
  const size_t slash = path.find_last_of('/');
  const std::string dir = slash == std::string::npos ? "" : path.substr(0, slash + 1);
  return dir + "." + base_name(path) + ".tmp." + std::to_string(pid);
}

int remove_stale_temps(const std::string& path) {
  const std::string prefix = "." + base_name(path) + ".tmp.";
  const std::string dir = parent_dir(path);
  DIR* d = ::opendir(dir.c_str());
  if (!d) return 0;
  std::vector<std::string> stale;
  while (const dirent* e = ::readdir(d)) {
    const std::string name = e->d_name;
    if (name.compare(0, prefix.size(), prefix) != 0 || name.size() == prefix.size()) continue;
    const std::string digits = name.substr(prefix.size());
    if (digits.find_first_not_of("0123456789") != std::string::npos || digits.size() > 9) continue;
    // Our own pid's temps are ours to manage; any other one is stale once its owner lock is free
    // (its writer is gone, whatever process now has that pid).
    if (std::stol(digits) != ::getpid() && unowned(dir + "/" + name)) stale.push_back(dir + "/" + name);
  }
  ::closedir(d);
  int removed = 0;
  for (const auto& p : stale) {
    std::error_code ec;
    if (std::filesystem::remove_all(p, ec) > 0 && !ec) ++removed;
  }
  return removed;
}

AtomicFile::AtomicFile(const std::string& path)
    : path_(path), temp_path_(hidden_temp_path(path, ::getpid())) {
  if (path.empty()) throw Error("cannot write a file with an empty path");
  remove_stale_temps(path);
  for (int attempt = 0;; ++attempt) {
    // O_TRUNC: a stale temp file left by a crashed process with the same pid is simply reused.
    fd_ = ::open(temp_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (fd_ < 0) throw Error(path_ + ": cannot create temp file " + temp_path_ + ": " + errno_text());
    if (lock_owned(fd_, temp_path_)) break;
    ::close(fd_);
    fd_ = -1;
    if (attempt == 8) throw Error(path_ + ": cannot lock temp file " + temp_path_);
  }
  lock_fd_ = ::dup(fd_);  // shares the lock: it outlives close(fd_) until the rename is done
}

AtomicFile::~AtomicFile() { discard(); }

void AtomicFile::write(const void* data, size_t n) {
  if (done_) throw Error(path_ + ": write after commit/discard");
  const auto* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t w = ::write(fd_, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      const std::string why = errno_text();
      discard();
      throw Error(path_ + ": write failed: " + why);
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
}

void AtomicFile::commit() {
  if (done_) throw Error(path_ + ": commit after commit/discard");
  auto fail = [&](const std::string& what) {
    const std::string why = errno_text();
    discard();
    throw Error(path_ + ": " + what + ": " + why);
  };
  if (::fsync(fd_) != 0) fail("fsync failed");
  const int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) fail("close failed");  // NFS and friends report write errors here
  if (::rename(temp_path_.c_str(), path_.c_str()) != 0) fail("cannot rename temp file into place");
  done_ = true;
  if (lock_fd_ >= 0) ::close(lock_fd_);
  lock_fd_ = -1;
  // Make the rename itself durable; failure here cannot un-write the file, so it is ignored.
  const int dir = ::open(parent_dir(path_).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir >= 0) {
    ::fsync(dir);
    ::close(dir);
  }
}

void AtomicFile::discard() noexcept {
  if (done_) return;
  done_ = true;
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  ::unlink(temp_path_.c_str());  // before the lock goes, so nobody else removes a reused name
  if (lock_fd_ >= 0) ::close(lock_fd_);
  lock_fd_ = -1;
}

void write_file_atomic(const std::string& path, const std::string& contents) {
  AtomicFile out(path);
  out.write(contents.data(), contents.size());
  out.commit();
}

AtomicDir::AtomicDir(const std::string& path) : path_(path) {
  if (path.empty()) throw Error("cannot write a folder with an empty path");
  std::string p = path;
  while (p.size() > 1 && p.back() == '/') p.pop_back();  // "out/" names the folder "out"
  path_ = p;
  staging_ = hidden_temp_path(path_, ::getpid());
  remove_stale_temps(path_);
  lock_ = std::make_unique<StagingFolder>(staging_);
}

AtomicDir::~AtomicDir() {
  if (done_) return;
  std::error_code ec;
  std::filesystem::remove_all(staging_, ec);
}

StagingFolder::StagingFolder(const std::string& staging) : path_(staging) {
  for (int attempt = 0;; ++attempt) {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);  // ours from an earlier process with this pid
    if (::mkdir(path_.c_str(), 0777) != 0)
      throw Error(path_ + ": cannot create staging folder: " + errno_text());
    fd_ = ::open(path_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd_ < 0) throw Error(path_ + ": cannot open staging folder: " + errno_text());
    if (lock_owned(fd_, path_)) return;
    ::close(fd_);
    fd_ = -1;
    if (attempt == 8) throw Error(path_ + ": cannot lock staging folder");
  }
}

StagingFolder::~StagingFolder() {
  if (fd_ >= 0) ::close(fd_);
}

void AtomicDir::commit(const std::vector<std::string>& commit_last) {
  namespace fs = std::filesystem;
  if (done_) throw Error(path_ + ": commit after commit");
  std::error_code ec;
  const bool exists = fs::exists(path_, ec);
  if (exists && !fs::is_directory(path_, ec)) throw Error(path_ + ": exists and is not a folder");
  // rename(2) replaces an empty folder atomically; "not empty" means another writer won a race.
  if (!exists || fs::is_empty(path_, ec)) {
    if (::rename(staging_.c_str(), path_.c_str()) == 0) {
      done_ = true;
      return;
    }
    if (errno != ENOTEMPTY && errno != EEXIST)
      throw Error(path_ + ": cannot rename staging folder into place: " + errno_text());
  }
  std::vector<std::string> first, last;
  for (const auto& e : fs::directory_iterator(staging_)) {
    const std::string name = e.path().filename().string();
    bool late = false;
    for (const auto& l : commit_last) late = late || l == name;
    (late ? last : first).push_back(name);
  }
  for (const auto& l : commit_last)
    for (const auto& n : last)
      if (n == l) first.push_back(n);
  for (const auto& name : first) {
    const std::string from = staging_ + "/" + name, to = path_ + "/" + name;
    if (::rename(from.c_str(), to.c_str()) != 0)
      throw Error(to + ": cannot move output into place: " + errno_text());
  }
  done_ = true;
  fs::remove_all(staging_, ec);
}

}  // namespace loopq::io
