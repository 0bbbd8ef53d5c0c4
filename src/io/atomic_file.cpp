#include "io/atomic_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

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

}  // namespace

AtomicFile::AtomicFile(const std::string& path)
    : path_(path), temp_path_(path + ".tmp." + std::to_string(::getpid())) {
  if (path.empty()) throw Error("cannot write a file with an empty path");
  // O_TRUNC: a stale temp file left by a crashed process with the same pid is simply reused.
  fd_ = ::open(temp_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
  if (fd_ < 0) throw Error(path_ + ": cannot create temp file " + temp_path_ + ": " + errno_text());
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
  ::unlink(temp_path_.c_str());
}

void write_file_atomic(const std::string& path, const std::string& contents) {
  AtomicFile out(path);
  out.write(contents.data(), contents.size());
  out.commit();
}

}  // namespace loopq::io
