// AVX-512 VNNI GEMV for decode: 1-4 activation rows, four weight tiles (64 output rows, four
// memory streams) per step, so enough independent vpdpbusd chains and cache misses are in flight
// to keep up with memory.
#include "kernels/cpu/tile_avx512.h"

namespace loopq::kernels::detail {

void gemv_avx512(const Job& j, int64_t r0, int64_t r1, int64_t t0, int64_t t1) {
  for (int64_t r = r0; r < r1;) {
    switch (r1 - r) {
      case 1: avx512::tiles<1, 4>(j, r, t0, t1); r += 1; break;
      case 2: avx512::tiles<2, 4>(j, r, t0, t1); r += 2; break;
      case 3: avx512::tiles<3, 4>(j, r, t0, t1); r += 3; break;
      default: avx512::tiles<4, 4>(j, r, t0, t1); r += 4; break;
    }
  }
}

}  // namespace loopq::kernels::detail
