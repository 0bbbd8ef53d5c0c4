// O(n (log2 n + K)) per row: the butterfly for the 2^m factor inside each block of 2^m, then the
// small dense K x K factor across blocks.
#include "kernels/cpu/fwht.h"

#include <cmath>
#include <string>
#include <vector>

#include "util/error.h"

namespace loopq::kernels {

void fwht(float* x, int64_t rows, int64_t n, int64_t ld, const float* hk, int64_t k, const float* signs,
          bool inverse) {
  if (n < 1 || k < 1 || n % k != 0 || ((n / k) & (n / k - 1)) != 0)
    throw Error("fwht: size " + std::to_string(n) + " is not " + std::to_string(k) + " x a power of 2");
  if (ld < n) throw Error("fwht: row stride smaller than n");
  if (k > 1 && !hk) throw Error("fwht: missing the " + std::to_string(k) + " x " + std::to_string(k) + " core");
  for (int64_t i = 0; k > 1 && i < k * k; ++i)
    if (hk[i] != 1.0f && hk[i] != -1.0f) throw Error("fwht: core matrix entries must be ±1");
  const int64_t b = n / k;
  // HadamardTransform::run multiplies by the double 1/sqrt(n), rounded to float, at the end.
  const float norm = float(1.0 / std::sqrt(double(n)));
  std::vector<float> out(k > 1 ? static_cast<size_t>(n) : 0);
  // Every loop below has independent, contiguous inner iterations, so the compiler vectorizes
  // them without changing any single rounding: the result does not depend on the ISA.
  for (int64_t r = 0; r < rows; ++r) {
    float* v = x + r * ld;
    if (signs && !inverse)
      for (int64_t i = 0; i < n; ++i) v[i] *= signs[i];
    // x (A ⊗ S) on the [k, b] view: each row of the view times S (symmetric), then each column
    // times A (Aᵀ for the inverse).
    for (int64_t blk = 0; blk < k; ++blk) {
      float* u = v + blk * b;
      for (int64_t h = 1; h < b; h *= 2)
        for (int64_t i = 0; i < b; i += 2 * h)
          for (int64_t j = i; j < i + h; ++j) {
            const float a = u[j], c = u[j + h];
            u[j] = a + c;
            u[j + h] = a - c;
          }
    }
    if (k > 1) {
      // out[i, :] = sum over a, in order, of ±v[a, :]: a sign flip and an add, no multiply.
      for (int64_t i = 0; i < k; ++i) {
        float* o = out.data() + i * b;
        for (int64_t j = 0; j < b; ++j) o[j] = 0.0f;
        for (int64_t a = 0; a < k; ++a) {
          const float* src = v + a * b;
          if ((inverse ? hk[i * k + a] : hk[a * k + i]) > 0)
            for (int64_t j = 0; j < b; ++j) o[j] += src[j];
          else
            for (int64_t j = 0; j < b; ++j) o[j] -= src[j];
        }
      }
      for (int64_t i = 0; i < n; ++i) v[i] = out[size_t(i)] * norm;
    } else {
      for (int64_t i = 0; i < n; ++i) v[i] *= norm;
    }
    if (signs && inverse)
      for (int64_t i = 0; i < n; ++i) v[i] *= signs[i];
  }
}

}  // namespace loopq::kernels
