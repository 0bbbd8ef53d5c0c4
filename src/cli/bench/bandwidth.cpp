#include "cli/bench/bandwidth.h"

#include <emmintrin.h>

#include <cmath>

#include "util/thread_pool.h"
#include "util/error.h"

namespace loopq::cli {

BandwidthProbe::BandwidthProbe(int t, int64_t bytes) : n(bytes / 4), buf(size_t(n), 1.0f), threads(t) {}

void BandwidthProbe::pass() {
  std::vector<float> sums(static_cast<size_t>(threads));
  parallel_for(threads, threads, [&](int i) {
    // Each thread reads its quarter-ranges as 4 streams in lockstep, as a GEMV reads 4 weight
    // tiles: one sequential stream per core left this VM's memory well short (9-11 GB/s
    // against 14-19 GB/s with 4 streams, same run).
    constexpr int kStreams = 4;
    const int64_t len = n / threads / kStreams / 16 * 16;
    const float* p = buf.data() + n / threads * i;
    __m128 a[kStreams];
    for (auto& v : a) v = _mm_setzero_ps();
    for (int64_t j = 0; j < len; j += 16)
      for (int st = 0; st < kStreams; ++st) {
        const float* q = p + st * len + j;
        a[st] = _mm_add_ps(a[st], _mm_add_ps(_mm_add_ps(_mm_loadu_ps(q), _mm_loadu_ps(q + 4)),
                                             _mm_add_ps(_mm_loadu_ps(q + 8), _mm_loadu_ps(q + 12))));
      }
    float v[4];
    _mm_storeu_ps(v, _mm_add_ps(_mm_add_ps(a[0], a[1]), _mm_add_ps(a[2], a[3])));
    sums[size_t(i)] = v[0] + v[1] + v[2] + v[3];
  });
  double total = 0;
  for (float v : sums) total += v;
  if (std::fabs(total - double(read_bytes()) / 4) > 0.01 * double(n)) throw Error("bench: bandwidth probe summed wrong");
}

// n rounded down to whole 16-float steps per stream.
int64_t BandwidthProbe::read_bytes() const { return int64_t(threads) * 4 * (n / threads / 4 / 16 * 16) * 4; }

}  // namespace loopq::cli
