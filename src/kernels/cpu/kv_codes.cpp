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

namespace {

// dst[k] = s * (float(u_k + off) - z) over one run of values inside one group and one head:
// int8 codes from `c`, or int4 codes from the nibbles of `c` starting at value `j0` (even j0 and
// count take whole bytes). Written so the compiler vectorizes the loops.
inline void dequant_run8(const uint8_t* __restrict c, int64_t count, float s, float z, int32_t off,
                         float* __restrict dst) {
  for (int64_t k = 0; k < count; ++k) dst[k] = s * (float(int32_t(c[k]) + off) - z);
}

inline void dequant_run4(const uint8_t* __restrict c, int64_t j0, int64_t count, float s, float z,
                         int32_t off, float* __restrict dst) {
  if (j0 % 2 == 0 && count % 2 == 0) {
    const uint8_t* b = c + j0 / 2;
    for (int64_t p = 0; p < count / 2; ++p) {
      dst[2 * p] = s * (float(int32_t(b[p] & 0xF) + off) - z);
      dst[2 * p + 1] = s * (float(int32_t(b[p] >> 4) + off) - z);
    }
    return;
  }
  for (int64_t k = 0; k < count; ++k) {
    const int64_t j = j0 + k;
    const int32_t u = (j % 2) ? c[j / 2] >> 4 : c[j / 2] & 0xF;
    dst[k] = s * (float(u + off) - z);
  }
}

}  // namespace

namespace {

// Dequantizes values [j0, j1) of one row to dst, split into runs that stay inside one group and
// one segment of `seg` values (value j goes to dst_of(j)).
template <class Dst>
inline void dequant_span(const KVRowFormat& f, const uint8_t* c, const float* s, const float* z,
                         int64_t j0, int64_t j1, int64_t seg, Dst dst_of) {
  const int64_t gs = f.group;
  while (j0 < j1) {
    const int64_t g = j0 / gs, h = j0 / seg;
    const int64_t end = std::min({(g + 1) * gs, (h + 1) * seg, j1});
    const float zg = z ? z[g] : 0.0f;
    if (f.bits == 8) dequant_run8(c + j0, end - j0, s[g], zg, f.code_offset, dst_of(j0));
    else dequant_run4(c, j0, end - j0, s[g], zg, f.code_offset, dst_of(j0));
    j0 = end;
  }
}

}  // namespace

// -O3 for these functions alone: GCC's -O2 cost model leaves the loops scalar (5x slower).
__attribute__((optimize("O3"))) void kv_dequant_rows(const KVRowFormat& f, const uint8_t* codes,
                                                     const float* scales, const float* zeros,
                                                     int64_t rows, float* out, int64_t row_stride,
                                                     int64_t seg, int64_t seg_stride) {
  const int64_t n = f.n, G = f.groups(), cb = f.code_bytes();
  for (int64_t r = 0; r < rows; ++r) {
    float* o = out + r * row_stride;
    dequant_span(f, codes + r * cb, scales + r * G, zeros ? zeros + r * G : nullptr, 0, n, seg,
                 [&](int64_t j) { return o + (j / seg) * seg_stride + j % seg; });
  }
}

__attribute__((optimize("O3"))) void kv_dequant_segment(const KVRowFormat& f, const uint8_t* codes,
                                                        const float* scales, const float* zeros,
                                                        int64_t begin, int64_t count, float* out) {
  if (begin < 0 || count < 0 || begin + count > f.n) throw Error("kv codes: segment outside the row");
  dequant_span(f, codes, scales, zeros, begin, begin + count, f.n,
               [&](int64_t j) { return out + (j - begin); });
}

}  // namespace loopq::kernels
