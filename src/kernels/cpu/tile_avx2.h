#pragma once
// The AVX2 (+FMA, no VNNI) register-tile microkernel shared by gemv_avx2.cpp and gemm_avx2.cpp
// (only included by files compiled with -mavx2 -mfma). A 16-row tile is two ymm halves.
//  int4: maddubs(u, x) multiplies u8 codes by s8 activations into int16 pair sums, exact since
//        |u * x| <= 15 * 128; madd with ones widens the pairs to one int32 per row.
//  int8: u in [0, 255] times x would overflow maddubs' saturating int16, so codes are widened
//        to int16 and multiplied with madd (exact int32 pair sums, two per row, folded by hadd
//        at the end of each group).
#include <immintrin.h>

#include <cstring>

#include "kernels/cpu/impl.h"

namespace loopq::kernels::detail::avx2 {

inline __m256i bcast_dword(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm256_set1_epi32(v);
}

// Four int8 activations widened to int16 and repeated: x0 x1 x2 x3 x0 x1 ...
inline __m256i bcast_4x16(const int8_t* p) {
  const __m128i v = _mm_cvtepi8_epi16(_mm_cvtsi32_si128([&] {
    int32_t d;
    std::memcpy(&d, p, 4);
    return d;
  }()));
  return _mm256_set1_epi64x(_mm_cvtsi128_si64(v));
}

template <int MR, int NT, int BITS, bool ONE_GROUP>
inline void tile_kernel(const Job& j, int64_t r, int64_t t) {
  constexpr int H = BITS == 4 ? 2 : 4;  // int32 accumulator vectors per tile
  const PackedWeight& w = *j.w;
  const int64_t cpg = w.group / (BITS == 4 ? 8 : 4);
  const int64_t cols_per_chunk = BITS == 4 ? 8 : 4;
  const uint8_t* tile[NT];
  for (int n = 0; n < NT; ++n) tile[n] = w.tile(t + n);
  const int8_t* x[MR];
  for (int m = 0; m < MR; ++m) x[m] = j.x + (r + m) * j.ldx;
  alignas(32) float fbuf[MR * NT * 16];
  std::memset(fbuf, 0, sizeof(fbuf));
  const __m256i mask4 = _mm256_set1_epi8(0x0F), ones = _mm256_set1_epi16(1);

  for (int64_t g = 0; g < w.groups; ++g) {
    __m256i acc[MR][NT][H];
    for (int m = 0; m < MR; ++m)
      for (int n = 0; n < NT; ++n)
        for (int h = 0; h < H; ++h) acc[m][n][h] = _mm256_setzero_si256();
    for (int64_t c = g * cpg; c < (g + 1) * cpg; ++c) {
      const int64_t k = c * cols_per_chunk;
      if (MR <= 4) {  // decode: software prefetch ahead in every tile stream, as the AVX-512 path
        const int64_t off = c * 64 + 2048, skip = off >= w.tile_bytes() ? (NT - 1) * w.tile_bytes() : 0;
        for (int n = 0; n < NT; ++n) _mm_prefetch(reinterpret_cast<const char*>(tile[n] + off + skip), _MM_HINT_T0);
      }
      if (BITS == 4) {
        __m256i lo[NT][2], hi[NT][2];
        for (int n = 0; n < NT; ++n)
          for (int h = 0; h < 2; ++h) {
            const __m256i v = _mm256_load_si256(reinterpret_cast<const __m256i*>(tile[n] + c * 64 + 32 * h));
            lo[n][h] = _mm256_and_si256(v, mask4);
            hi[n][h] = _mm256_and_si256(_mm256_srli_epi16(v, 4), mask4);
          }
        for (int m = 0; m < MR; ++m) {
          const __m256i xa = bcast_dword(x[m] + k), xb = bcast_dword(x[m] + k + 4);
          for (int n = 0; n < NT; ++n)
            for (int h = 0; h < 2; ++h) {
              const __m256i p = _mm256_add_epi16(_mm256_maddubs_epi16(lo[n][h], xa), _mm256_maddubs_epi16(hi[n][h], xb));
              acc[m][n][h] = _mm256_add_epi32(acc[m][n][h], _mm256_madd_epi16(p, ones));
            }
        }
      } else {
        __m256i v[NT][4];
        for (int n = 0; n < NT; ++n)
          for (int h = 0; h < 4; ++h)
            v[n][h] = _mm256_cvtepu8_epi16(_mm_load_si128(reinterpret_cast<const __m128i*>(tile[n] + c * 64 + 16 * h)));
        for (int m = 0; m < MR; ++m) {
          const __m256i xa = bcast_4x16(x[m] + k);
          for (int n = 0; n < NT; ++n)
            for (int h = 0; h < 4; ++h) acc[m][n][h] = _mm256_add_epi32(acc[m][n][h], _mm256_madd_epi16(v[n][h], xa));
        }
      }
    }
    for (int n = 0; n < NT; ++n) {
      const int64_t off = ((t + n) * w.groups + g) * kTileRows;
      for (int half = 0; half < 2; ++half) {
        const __m256 s = _mm256_loadu_ps(w.scales.data() + off + 8 * half);
        __m256i zv = _mm256_set1_epi32(w.sym_zero());
        if (!w.symmetric)
          zv = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(w.zeros.data() + off + 8 * half)));
        for (int m = 0; m < MR; ++m) {
          __m256i dot;
          if (BITS == 4) {
            dot = acc[m][n][half];
          } else {  // two pair sums per row over rows 0-3 and 4-7 of this half: fold and reorder
            const __m256i hs = _mm256_hadd_epi32(acc[m][n][2 * half], acc[m][n][2 * half + 1]);
            dot = _mm256_permute4x64_epi64(hs, 0xD8);
          }
          const __m256i xs = _mm256_set1_epi32(j.xsum[(r + m) * w.groups + g]);
          const __m256i corr = _mm256_mullo_epi32(zv, xs);
          const __m256 d = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(dot, corr)), s);
          float* f = fbuf + (m * NT + n) * 16 + 8 * half;
          _mm256_store_ps(f, ONE_GROUP ? d : _mm256_add_ps(_mm256_load_ps(f), d));
        }
      }
    }
  }

  const Epilogue& ep = *j.ep;
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  for (int n = 0; n < NT; ++n)
    for (int half = 0; half < 2; ++half) {
      const int64_t o = (t + n) * kTileRows + 8 * half;
      const int64_t valid = w.out - o;
      if (valid <= 0) continue;
      const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(int(valid < 8 ? valid : 8)), lane);
      for (int m = 0; m < MR; ++m) {
        __m256 y = _mm256_load_ps(fbuf + (m * NT + n) * 16 + 8 * half);
        y = _mm256_mul_ps(y, _mm256_set1_ps(j.xscale[r + m]));
        if (ep.bias) y = _mm256_add_ps(y, _mm256_maskload_ps(ep.bias + o, mask));
        if (ep.out_scale) y = _mm256_mul_ps(y, _mm256_maskload_ps(ep.out_scale + o, mask));
        if (ep.out_bias) y = _mm256_add_ps(y, _mm256_maskload_ps(ep.out_bias + o, mask));
        _mm256_maskstore_ps(j.y + (r + m) * j.ldy + o, mask, y);
      }
    }
}

template <int MR, int NT>
inline void tile(const Job& j, int64_t r, int64_t t) {
  const PackedWeight& w = *j.w;
  const bool one = w.groups == 1;
  if (w.bits == 4) {
    one ? tile_kernel<MR, NT, 4, true>(j, r, t) : tile_kernel<MR, NT, 4, false>(j, r, t);
  } else {  // four accumulators per tile: one tile at a time keeps them in registers
    for (int n = 0; n < NT; ++n) one ? tile_kernel<MR, 1, 8, true>(j, r, t + n) : tile_kernel<MR, 1, 8, false>(j, r, t + n);
  }
}

template <int MR, int NT>
inline void tiles(const Job& j, int64_t r, int64_t t0, int64_t t1) {
  int64_t t = t0;
  for (; t + NT <= t1; t += NT) tile<MR, NT>(j, r, t);
  for (; t < t1; ++t) tile<MR, 1>(j, r, t);
}

}  // namespace loopq::kernels::detail::avx2
