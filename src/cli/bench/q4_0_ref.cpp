// Q4_0 / Q8_0 quantizers, fp16 conversion and the scalar dot product of the benchmark's peer.
#include "cli/bench/q4_0_ref.h"

#include <cmath>
#include <cstring>

#include "kernels/cpu/kernels.h"

namespace loopq::cli::q40 {

uint16_t fp32_to_fp16(float f) {
  // Round to nearest even; the scales here are normal, finite and small.
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint32_t sign = (x >> 16) & 0x8000u;
  int32_t exp = int32_t((x >> 23) & 0xFF) - 127 + 15;
  uint32_t mant = x & 0x7FFFFFu;
  if (exp <= 0) {  // subnormal half
    if (exp < -10) return uint16_t(sign);
    mant |= 0x800000u;
    const int shift = 14 - exp;
    uint32_t h = mant >> shift;
    const uint32_t rem = mant & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (h & 1))) ++h;
    return uint16_t(sign | h);
  }
  if (exp >= 31) return uint16_t(sign | 0x7C00u);
  uint32_t h = (uint32_t(exp) << 10) | (mant >> 13);
  const uint32_t rem = mant & 0x1FFFu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1))) ++h;
  return uint16_t(sign | h);
}

float fp16_to_fp32(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1F, mant = h & 0x3FFu;
  float f;
  if (exp == 0) {
    f = std::ldexp(float(mant), -24);
  } else if (exp == 31) {
    f = mant ? NAN : INFINITY;
  } else {
    const uint32_t bits = ((exp - 15 + 127) << 23) | (mant << 13);
    std::memcpy(&f, &bits, 4);
  }
  return sign ? -f : f;
}

void quantize_q4_0(const float* x, int64_t k, BlockQ4* out) {
  for (int64_t b = 0; b < k / 32; ++b) {
    const float* v = x + 32 * b;
    float amax = 0, max = 0;
    for (int j = 0; j < 32; ++j)
      if (std::fabs(v[j]) > amax) amax = std::fabs(v[j]), max = v[j];
    const float d = max / -8, id = d ? 1.0f / d : 0.0f;
    out[b].d = fp32_to_fp16(d);
    for (int j = 0; j < 16; ++j) {
      const int a = std::min(15, int(int8_t(v[j] * id + 8.5f))), c = std::min(15, int(int8_t(v[j + 16] * id + 8.5f)));
      out[b].qs[j] = uint8_t(a | (c << 4));
    }
  }
}

void quantize_q8_0(const float* x, int64_t k, BlockQ8* out) {
  for (int64_t b = 0; b < k / 32; ++b) {
    const float* v = x + 32 * b;
    float amax = 0;
    for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(v[j]));
    const float d = amax / 127, id = d ? 1.0f / d : 0.0f;
    out[b].d = fp32_to_fp16(d);
    for (int j = 0; j < 32; ++j) out[b].qs[j] = int8_t(std::nearbyint(v[j] * id));
  }
}

float dot_scalar(const BlockQ4* w, const BlockQ8* x, int64_t nb) {
  float sum = 0;
  for (int64_t b = 0; b < nb; ++b) {
    int s = 0;
    for (int j = 0; j < 16; ++j)
      s += ((w[b].qs[j] & 0xF) - 8) * x[b].qs[j] + ((w[b].qs[j] >> 4) - 8) * x[b].qs[j + 16];
    sum += float(s) * fp16_to_fp32(w[b].d) * fp16_to_fp32(x[b].d);
  }
  return sum;
}

void gemv(const BlockQ4* w, const BlockQ8* x, int64_t k, float* y, int64_t r0, int64_t r1) {
  const int64_t nb = k / 32;
  float (*dot)(const BlockQ4*, const BlockQ8*, int64_t) = dot_scalar;
  switch (kernels::active_path()) {
    case kernels::Path::Avx512: dot = dot_avx512; break;
    case kernels::Path::Avx2: dot = dot_avx2; break;
    default: break;
  }
  for (int64_t r = r0; r < r1; ++r) y[r] = dot(w + r * nb, x, nb);
}

}  // namespace loopq::cli::q40
