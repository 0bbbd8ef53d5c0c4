// AVX2 GEMM for prefill: 4 activation rows x 2 tiles per register tile (16 ymm accumulators for
// int4), sweeping the L2-sized tile range the caller gives this thread.
#include "kernels/cpu/tile_avx2.h"

namespace loopq::kernels::detail {

void gemm_avx2(const Job& j, int64_t r0, int64_t r1, int64_t t0, int64_t t1) {
  int64_t r = r0;
  for (; r + 4 <= r1; r += 4) avx2::tiles<4, 2>(j, r, t0, t1);
  if (r < r1) gemv_avx2(j, r, r1, t0, t1);
}

}  // namespace loopq::kernels::detail
