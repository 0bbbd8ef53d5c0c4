#pragma once
// The machine's read bandwidth, the yardstick of every GEMV and decode figure: a read-only sum
// over a buffer far larger than the last-level cache, split over the threads.
#include <cstdint>
#include <vector>

namespace loopq::cli {

struct BandwidthProbe {
  int64_t n;  // floats in the buffer
  std::vector<float> buf;
  int threads;
  BandwidthProbe(int threads, int64_t bytes = int64_t(1) << 30);
  void pass();                     // one read of the whole buffer (checks its sum)
  int64_t read_bytes() const;      // bytes one pass reads
};

}  // namespace loopq::cli
