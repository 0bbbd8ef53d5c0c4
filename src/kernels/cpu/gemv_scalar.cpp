// Scalar kernel over the packed layout: the path every CPU has, and the one the SIMD paths'
// layout logic is easiest to read from. Handles any number of rows (dispatch blocks it by 4).
#include "kernels/cpu/impl.h"

namespace loopq::kernels::detail {

void gemv_scalar(const Job& j, int64_t r0, int64_t r1, int64_t t0, int64_t t1) {
  const PackedWeight& w = *j.w;
  const int64_t chunks_per_group = w.group / w.chunk_cols();
  for (int64_t t = t0; t < t1; ++t) {
    const uint8_t* tile = w.tile(t);
    for (int64_t r = r0; r < r1; ++r) {
      const int8_t* x = j.x + r * j.ldx;
      float acc[kTileRows] = {};
      for (int64_t g = 0; g < w.groups; ++g) {
        int32_t dot[kTileRows] = {};
        for (int64_t c = g * chunks_per_group; c < (g + 1) * chunks_per_group; ++c) {
          const uint8_t* b = tile + c * 64;
          for (int64_t i = 0; i < kTileRows; ++i)
            for (int q = 0; q < 4; ++q) {
              const uint8_t v = b[4 * i + q];
              if (w.bits == 8) {
                dot[i] += int32_t(v) * x[4 * c + q];
              } else {
                dot[i] += int32_t(v & 0xF) * x[8 * c + q] + int32_t(v >> 4) * x[8 * c + 4 + q];
              }
            }
        }
        const int32_t xs = j.xsum[r * w.groups + g];
        const float* s = w.scales.data() + (t * w.groups + g) * kTileRows;
        const uint8_t* z = w.symmetric ? nullptr : w.zeros.data() + (t * w.groups + g) * kTileRows;
        for (int64_t i = 0; i < kTileRows; ++i) {
          const int32_t zi = z ? int32_t(z[i]) : w.sym_zero();
          acc[i] = acc[i] + float(dot[i] - zi * xs) * s[i];
        }
      }
      for (int64_t i = 0; i < kTileRows && t * kTileRows + i < w.out; ++i) {
        const int64_t o = t * kTileRows + i;
        j.y[r * j.ldy + o] = epilogue(acc[i], j.xscale[r], *j.ep, o);
      }
    }
  }
}

}  // namespace loopq::kernels::detail
