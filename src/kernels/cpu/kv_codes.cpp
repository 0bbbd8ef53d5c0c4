// Packed KV-cache rows: see kv_codes.h. Plain loops (the compiler vectorizes them); built with
// -ffp-contract=off like the rest of the kernels, so s * (c - z) stays two rounded operations.
#include "kernels/cpu/kv_codes.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "util/error.h"

namespace loopq::kernels {

void check_kv_format(const KVRowFormat& f) {
  if (f.bits != 4 && f.bits != 8)
    throw Error("kv codes: " + std::to_string(f.bits) + " bits; packed KV rows take 4 or 8");
  if (f.n < 1 || f.group < 1 || f.n % f.group != 0)
    throw Error("kv codes: group " + std::to_string(f.group) + " does not divide a row of " + std::to_string(f.n));
}

void kv_pack_codes(int bits, const uint8_t* u, int64_t n, uint8_t* out) {
  if (bits == 8) {
    std::memcpy(out, u, size_t(n));
    return;
  }
  const int64_t pairs = n / 2;
  for (int64_t i = 0; i < pairs; ++i) out[i] = uint8_t((u[2 * i] & 0xF) | ((u[2 * i + 1] & 0xF) << 4));
  if (n % 2) out[pairs] = uint8_t(u[n - 1] & 0xF);
}

void kv_unpack_codes(int bits, const uint8_t* in, int64_t n, uint8_t* u) {
  if (bits == 8) {
    std::memcpy(u, in, size_t(n));
    return;
  }
  const int64_t pairs = n / 2;
  for (int64_t i = 0; i < pairs; ++i) {
    u[2 * i] = in[i] & 0xF;
    u[2 * i + 1] = in[i] >> 4;
  }
  if (n % 2) u[n - 1] = in[pairs] & 0xF;
}

void kv_quantize_rows(const KVRowFormat& f, const float* x, int64_t rows, float clip, bool widen,
                      uint8_t* codes, float* scales, float* zeros) {
  const int64_t n = f.n, G = f.groups(), cb = f.code_bytes(), gs = f.group;
  const bool sym = !f.has_zero;
  const float qmin = float(f.code_offset);
  const float qmax = float(f.code_offset + (1 << f.bits) - 1);
  std::vector<uint8_t> u(static_cast<size_t>(n));
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * n;
    for (int64_t g = 0; g < G; ++g) {
      const float* xg = xr + g * gs;
      float lo = xg[0], hi = xg[0];
      for (int64_t j = 1; j < gs; ++j) lo = std::min(lo, xg[j]), hi = std::max(hi, xg[j]);
      if (widen) lo = std::min(lo, 0.0f), hi = std::max(hi, 0.0f);
      lo = lo * clip, hi = hi * clip;
      float scale, zero;
      if (sym) {
        float absmax = std::max(std::fabs(lo), hi);
        if (absmax == 0.0f) absmax = qmax;
        scale = absmax / qmax;
        zero = 0.0f;
      } else {
        float range = hi - lo;
        if (range == 0.0f) lo = -1.0f, range = 2.0f;
        scale = range / qmax;
        zero = std::nearbyint(-lo / scale);
      }
      scales[r * G + g] = scale;
      if (!sym) zeros[r * G + g] = zero;
      uint8_t* ug = u.data() + g * gs;
      for (int64_t j = 0; j < gs; ++j) {
        const float c = std::min(std::max(std::nearbyint(xg[j] / scale) + zero, qmin), qmax);
        ug[j] = uint8_t(int32_t(c) - f.code_offset);
      }
    }
    kv_pack_codes(f.bits, u.data(), n, codes + r * cb);
  }
}

void kv_dequant_rows(const KVRowFormat& f, const uint8_t* codes, const float* scales,
                     const float* zeros, int64_t rows, float* out, int64_t row_stride, int64_t seg,
                     int64_t seg_stride) {
  const int64_t n = f.n, G = f.groups(), cb = f.code_bytes();
  std::vector<uint8_t> u(static_cast<size_t>(n));
  std::vector<float> row(static_cast<size_t>(n));
  for (int64_t r = 0; r < rows; ++r) {
    kv_unpack_codes(f.bits, codes + r * cb, n, u.data());
    const float* s = scales + r * G;
    const float* z = zeros ? zeros + r * G : nullptr;
    for (int64_t g = 0; g < G; ++g) {
      const float sg = s[g], zg = z ? z[g] : 0.0f;
      const uint8_t* ug = u.data() + g * f.group;
      float* dst = row.data() + g * f.group;
      for (int64_t j = 0; j < f.group; ++j) {
        const float c = float(int32_t(ug[j]) + f.code_offset);
        dst[j] = sg * (c - zg);
      }
    }
    float* o = out + r * row_stride;
    for (int64_t j0 = 0; j0 < n; j0 += seg)
      std::memcpy(o + (j0 / seg) * seg_stride, row.data() + j0, size_t(std::min(seg, n - j0)) * sizeof(float));
  }
}

}  // namespace loopq::kernels
