#pragma once
// The AVX-512 VNNI register-tile microkernel shared by gemv_avx512.cpp and gemm_avx512.cpp (only
// included by files compiled with -mavx512f -mavx512bw -mavx512vnni -mavx512vl).
//
// MR activation rows x NT weight tiles of 16 output rows. Per 4 input columns, vpdpbusd adds
// u[o][k..k+3] . x[r][k..k+3] into lane o: the weight vector (u8, 16 rows x 4 columns = one zmm)
// is the unsigned operand and the broadcast activation dword the signed one. Int4 chunks hold 8
// columns: low nibbles are columns 0-3, high nibbles 4-7, so one load serves two vpdpbusd.
#include <immintrin.h>

#include <cstring>

#include "kernels/cpu/impl.h"

namespace loopq::kernels::detail::avx512 {

constexpr int64_t kPrefetch = 2048;  // bytes ahead per stream

inline __m512i bcast_dword(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm512_set1_epi32(v);
}

// ONE_GROUP: one scale per row, so int32 accumulators convert once at the end. Otherwise every
// group's int32 sums are scaled into fp32 accumulators kept in a small L1 buffer.
template <int MR, int NT, int BITS, bool ONE_GROUP>
inline void tile_kernel(const Job& j, int64_t r, int64_t t) {
  const PackedWeight& w = *j.w;
  const int64_t cpg = w.group / (BITS == 4 ? 8 : 4);  // chunks per group
  const int64_t cols_per_chunk = BITS == 4 ? 8 : 4;
  const uint8_t* tile[NT];
  for (int n = 0; n < NT; ++n) tile[n] = w.tile(t + n);
  const int8_t* x[MR];
  for (int m = 0; m < MR; ++m) x[m] = j.x + (r + m) * j.ldx;
  alignas(64) float fbuf[ONE_GROUP ? 1 : MR * NT * 16];
  if (!ONE_GROUP) std::memset(fbuf, 0, sizeof(fbuf));
  __m512 facc[ONE_GROUP ? MR : 1][ONE_GROUP ? NT : 1];
  for (auto& row : facc)
    for (auto& v : row) v = _mm512_setzero_ps();
  const __m512i mask4 = _mm512_set1_epi8(0x0F);

  for (int64_t g = 0; g < w.groups; ++g) {
    __m512i acc[MR][NT];
    for (int m = 0; m < MR; ++m)
      for (int n = 0; n < NT; ++n) acc[m][n] = _mm512_setzero_si512();
    for (int64_t c = g * cpg; c < (g + 1) * cpg; ++c) {
      const int64_t k = c * cols_per_chunk;
      // Decode streams each weight byte once from DRAM: prefetch kPrefetch bytes ahead in every
      // tile stream (the hardware prefetcher alone left the int4 GEMV short of the bandwidth).
      // Near a tile's end the address runs on into the same stream of the next NT tiles (tiles
      // are contiguous), so no stream restarts cold.
      if (MR <= 4) {
        const int64_t off = c * 64 + kPrefetch, skip = off >= w.tile_bytes() ? (NT - 1) * w.tile_bytes() : 0;
        for (int n = 0; n < NT; ++n) _mm_prefetch(reinterpret_cast<const char*>(tile[n] + off + skip), _MM_HINT_T0);
      }
      if (BITS == 4) {
        __m512i lo[NT], hi[NT];
        for (int n = 0; n < NT; ++n) {
          const __m512i v = _mm512_load_si512(tile[n] + c * 64);
          lo[n] = _mm512_and_si512(v, mask4);
          hi[n] = _mm512_and_si512(_mm512_srli_epi16(v, 4), mask4);
        }
        for (int m = 0; m < MR; ++m) {
          const __m512i xa = bcast_dword(x[m] + k), xb = bcast_dword(x[m] + k + 4);
          for (int n = 0; n < NT; ++n) {
            acc[m][n] = _mm512_dpbusd_epi32(acc[m][n], lo[n], xa);
            acc[m][n] = _mm512_dpbusd_epi32(acc[m][n], hi[n], xb);
          }
        }
      } else {
        __m512i v[NT];
        for (int n = 0; n < NT; ++n) v[n] = _mm512_load_si512(tile[n] + c * 64);
        for (int m = 0; m < MR; ++m) {
          const __m512i xa = bcast_dword(x[m] + k);
          for (int n = 0; n < NT; ++n) acc[m][n] = _mm512_dpbusd_epi32(acc[m][n], v[n], xa);
        }
      }
    }
    // acc - z * sum(x) is the exact integer group dot product; then times the weight scale.
    for (int n = 0; n < NT; ++n) {
      const int64_t off = ((t + n) * w.groups + g) * kTileRows;
      const __m512 s = _mm512_loadu_ps(w.scales.data() + off);
      __m512i zv = _mm512_set1_epi32(w.sym_zero());
      if (!w.symmetric)
        zv = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w.zeros.data() + off)));
      for (int m = 0; m < MR; ++m) {
        const __m512i xs = _mm512_set1_epi32(j.xsum[(r + m) * w.groups + g]);
        const __m512i corr = _mm512_mullo_epi32(zv, xs);
        const __m512 d = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(acc[m][n], corr)), s);
        if (ONE_GROUP) {
          facc[m][n] = d;  // 0 + d == d: the same rounding as the reference's first group
        } else {
          float* f = fbuf + (m * NT + n) * 16;
          _mm512_store_ps(f, _mm512_add_ps(_mm512_load_ps(f), d));
        }
      }
    }
  }

  const Epilogue& ep = *j.ep;
  for (int n = 0; n < NT; ++n) {
    const int64_t o = (t + n) * kTileRows;
    const int64_t valid = w.out - o < kTileRows ? w.out - o : kTileRows;
    const __mmask16 mask = __mmask16((1u << valid) - 1u);
    const __m512 bias = ep.bias ? _mm512_maskz_loadu_ps(mask, ep.bias + o) : _mm512_setzero_ps();
    const __m512 cs = ep.out_scale ? _mm512_maskz_loadu_ps(mask, ep.out_scale + o) : _mm512_setzero_ps();
    const __m512 cb = ep.out_bias ? _mm512_maskz_loadu_ps(mask, ep.out_bias + o) : _mm512_setzero_ps();
    for (int m = 0; m < MR; ++m) {
      __m512 y = ONE_GROUP ? facc[m][n] : _mm512_load_ps(fbuf + (m * NT + n) * 16);
      y = _mm512_mul_ps(y, _mm512_set1_ps(j.xscale[r + m]));
      if (ep.bias) y = _mm512_add_ps(y, bias);
      if (ep.out_scale) y = _mm512_mul_ps(y, cs);
      if (ep.out_bias) y = _mm512_add_ps(y, cb);
      _mm512_mask_storeu_ps(j.y + (r + m) * j.ldy + o, mask, y);
    }
  }
}

// Runtime format -> template instance.
template <int MR, int NT>
inline void tile(const Job& j, int64_t r, int64_t t) {
  const PackedWeight& w = *j.w;
  const bool one = w.groups == 1;
  if (w.bits == 4) {
    one ? tile_kernel<MR, NT, 4, true>(j, r, t) : tile_kernel<MR, NT, 4, false>(j, r, t);
  } else {
    one ? tile_kernel<MR, NT, 8, true>(j, r, t) : tile_kernel<MR, NT, 8, false>(j, r, t);
  }
}

// Rows [r, r + MR) over tiles [t0, t1), NT tiles at a time, then one at a time.
template <int MR, int NT>
inline void tiles(const Job& j, int64_t r, int64_t t0, int64_t t1) {
  int64_t t = t0;
  for (; t + NT <= t1; t += NT) tile<MR, NT>(j, r, t);
  for (; t < t1; ++t) tile<MR, 1>(j, r, t);
}

}  // namespace loopq::kernels::detail::avx512
