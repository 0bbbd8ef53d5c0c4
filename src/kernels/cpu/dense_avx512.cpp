// AVX-512 dense kernel for decode: four weight rows (four memory streams) per step times 1-4
// activation rows, 16 fp32 lanes per FMA; bf16 weights are widened in registers, so they cost
// half the bytes of fp32 and nothing in accuracy.
#include <immintrin.h>

#include "kernels/cpu/impl.h"

namespace loopq::kernels::detail {
namespace avx512 {
namespace {

template <bool BF16>
inline __m512 load_w(const void* base, int64_t idx, __mmask16 m) {
  if (BF16) {
    const __m256i h = _mm256_maskz_loadu_epi16(m, static_cast<const uint16_t*>(base) + idx);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  }
  return _mm512_maskz_loadu_ps(m, static_cast<const float*>(base) + idx);
}

// Lanes summed pairwise through memory: GCC 12's reduce, extract and cast intrinsics all trip
// -Wuninitialized in its own header (their _mm*_undefined_* operands).
inline float hsum(__m512 v) {
  alignas(64) float t[16];
  _mm512_store_ps(t, v);
  for (int n = 8; n > 0; n /= 2)
    for (int i = 0; i < n; ++i) t[i] += t[i + n];
  return t[0];
}

// Rows r0..r0+R-1, weight rows o..o+N-1.
template <int R, int N, bool BF16>
inline void block(const DenseJob& j, int64_t r0, int64_t o) {
  const int64_t in = j.w->in;
  const void* w = j.w->data;
  __m512 acc[R][N];
  for (int r = 0; r < R; ++r)
    for (int i = 0; i < N; ++i) acc[r][i] = _mm512_setzero_ps();
  for (int64_t k = 0; k < in; k += 16) {
    const __mmask16 m = in - k >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (in - k)) - 1);
    __m512 xv[R];
    for (int r = 0; r < R; ++r) xv[r] = _mm512_maskz_loadu_ps(m, j.x + (r0 + r) * j.ldx + k);
    for (int i = 0; i < N; ++i) {
      const __m512 wv = load_w<BF16>(w, (o + i) * in + k, m);
      for (int r = 0; r < R; ++r) acc[r][i] = _mm512_fmadd_ps(wv, xv[r], acc[r][i]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int i = 0; i < N; ++i) j.y[(r0 + r) * j.ldy + o + i] = hsum(acc[r][i]);
}

template <int R, bool BF16>
void rows(const DenseJob& j, int64_t r0, int64_t o0, int64_t o1) {
  int64_t o = o0;
  for (; o + 4 <= o1; o += 4) block<R, 4, BF16>(j, r0, o);
  for (; o < o1; ++o) block<R, 1, BF16>(j, r0, o);
}

template <bool BF16>
void all_rows(const DenseJob& j, int64_t o0, int64_t o1) {
  for (int64_t r = 0; r < j.rows;) {
    switch (j.rows - r) {
      case 1: rows<1, BF16>(j, r, o0, o1); r += 1; break;
      case 2: rows<2, BF16>(j, r, o0, o1); r += 2; break;
      case 3: rows<3, BF16>(j, r, o0, o1); r += 3; break;
      default: rows<4, BF16>(j, r, o0, o1); r += 4; break;
    }
  }
}

}  // namespace
}  // namespace avx512

void dense_avx512(const DenseJob& j, int64_t o0, int64_t o1) {
  if (j.w->bf16) avx512::all_rows<true>(j, o0, o1);
  else avx512::all_rows<false>(j, o0, o1);
}

}  // namespace loopq::kernels::detail
