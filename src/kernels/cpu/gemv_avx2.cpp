// AVX2 GEMV for decode (CPUs without AVX-512, e.g. AMD Zen 3): 1-4 activation rows.
#include "kernels/cpu/tile_avx2.h"

namespace loopq::kernels::detail {

void gemv_avx2(const Job& j, int64_t r0, int64_t r1, int64_t t0, int64_t t1) {
  for (int64_t r = r0; r < r1;) {
    switch (r1 - r) {
      case 1: avx2::tiles<1, 2>(j, r, t0, t1); r += 1; break;
      case 2: avx2::tiles<2, 2>(j, r, t0, t1); r += 2; break;
      case 3: avx2::tiles<3, 1>(j, r, t0, t1); r += 3; break;
      default: avx2::tiles<4, 1>(j, r, t0, t1); r += 4; break;
    }
  }
}

}  // namespace loopq::kernels::detail
