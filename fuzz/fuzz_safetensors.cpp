// safetensors: header length, JSON header, dtypes, shapes, offsets, overlaps. The bytes are put in
// a memfd so the real open path (fstat + mmap + parse) runs, then every tensor is read whole, so a
// range that escaped validation faults instead of passing silently.
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <vector>

#include "io/dtype.h"
#include "io/safetensors.h"
#include "util/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const int fd = memfd_create("fuzz.safetensors", MFD_CLOEXEC);
  if (fd < 0) __builtin_trap();
  for (size_t done = 0; done < size;) {
    const ssize_t w = ::write(fd, data + done, size - done);
    if (w <= 0) __builtin_trap();
    done += static_cast<size_t>(w);
  }
  const std::string path = "/proc/self/fd/" + std::to_string(fd);
  try {
    auto file = loopq::io::SafetensorsFile::open(path);
    uint64_t total = 0;
    for (const auto& name : file->names()) {
      const auto& t = file->get(name);
      const int64_t n = t.numel();
      if (static_cast<uint64_t>(n) * loopq::io::dtype_size(t.dtype) != t.nbytes) __builtin_trap();
      total += t.nbytes;
      if (loopq::io::dtype_is_float(t.dtype)) {
        std::vector<float> out(static_cast<size_t>(n));
        loopq::io::convert_to_f32(t.dtype, t.data, out.data(), out.size());
      } else {
        volatile uint8_t sink = 0;
        for (size_t i = 0; i < t.nbytes; ++i) sink ^= t.data[i];
      }
    }
    // Validated, non-overlapping tensors cannot hold more bytes than the file has.
    if (total > size) __builtin_trap();
  } catch (const loopq::Error&) {
  }
  ::close(fd);
  return 0;
}
