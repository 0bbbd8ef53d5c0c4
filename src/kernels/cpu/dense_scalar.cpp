// Scalar dense kernel: plain fp32 dot products, the path every CPU has.
#include <cstring>

#include "kernels/cpu/impl.h"

namespace loopq::kernels::detail {

namespace {
float weight_at(const DenseWeight& w, int64_t o, int64_t k) {
  if (!w.bf16) return static_cast<const float*>(w.data)[o * w.in + k];
  const uint32_t bits = uint32_t(static_cast<const uint16_t*>(w.data)[o * w.in + k]) << 16;
  float v;
  std::memcpy(&v, &bits, sizeof v);
  return v;
}
}  // namespace

void dense_scalar(const DenseJob& j, int64_t o0, int64_t o1) {
  for (int64_t o = o0; o < o1; ++o)
    for (int64_t r = 0; r < j.rows; ++r) {
      const float* x = j.x + r * j.ldx;
      float acc = 0.0f;
      for (int64_t k = 0; k < j.w->in; ++k) acc += x[k] * weight_at(*j.w, o, k);
      j.y[r * j.ldy + o] = acc;
    }
}

}  // namespace loopq::kernels::detail
