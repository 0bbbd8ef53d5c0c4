// The scalar reference: plain loops over logical codes, no packing, no SIMD. Every kernel path is
// tested against it, and it is tested against a double-precision dequant(W) x dequant(x).
#include <string>
#include <vector>

#include "kernels/cpu/impl.h"
#include "kernels/cpu/kernels.h"
#include "util/error.h"

namespace loopq::kernels {

void reference_linear(const LogicalWeight& w, const QuantAct& x, const Epilogue& ep, float* y,
                      int64_t ldy) {
  if (x.in != w.in) throw Error("kernels: activation width " + std::to_string(x.in) + " != weight in " + std::to_string(w.in));
  const int64_t gs = w.group(), groups = w.groups();
  for (int64_t r = 0; r < x.rows; ++r) {
    const int8_t* xr = x.row(r);
    for (int64_t o = 0; o < w.out; ++o) {
      float acc = 0.0f;
      for (int64_t g = 0; g < groups; ++g) {
        const int32_t z = w.zero.empty() ? 0 : w.zero[size_t(o * groups + g)];
        int32_t dot = 0;  // exact: |(code - zero) * x| <= 255 * 128 per term
        for (int64_t k = g * gs; k < (g + 1) * gs; ++k) dot += (w.code[size_t(o * w.in + k)] - z) * int32_t(xr[k]);
        acc = acc + float(dot) * w.scale[size_t(o * groups + g)];
      }
      y[r * ldy + o] = detail::epilogue(acc, x.scale[size_t(r)], ep, o);
    }
  }
}

}  // namespace loopq::kernels
