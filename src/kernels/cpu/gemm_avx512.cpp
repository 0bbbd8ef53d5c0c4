// AVX-512 VNNI GEMM for prefill: 8 activation rows x 2 weight tiles (32 output rows) per
// register tile, so each unpacked weight vector feeds 8 vpdpbusd and each broadcast 2 (int8) or
// 4 (int4). The caller gives this thread a range of tiles small enough for L2; every block of 8
// rows sweeps it. Leftover rows (fewer than 8) go through the GEMV kernel.
#include "kernels/cpu/tile_avx512.h"

namespace loopq::kernels::detail {

void gemm_avx512(const Job& j, int64_t r0, int64_t r1, int64_t t0, int64_t t1) {
  int64_t r = r0;
  for (; r + 8 <= r1; r += 8) avx512::tiles<8, 2>(j, r, t0, t1);
  if (r < r1) gemv_avx512(j, r, r1, t0, t1);
}

}  // namespace loopq::kernels::detail
