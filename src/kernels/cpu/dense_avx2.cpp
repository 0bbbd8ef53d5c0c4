// AVX2 dense kernel for decode: the AVX-512 kernel's plan on 8 fp32 lanes (four weight rows per
// step times 1-4 activation rows), with a scalar loop for the last in % 8 columns.
#include <immintrin.h>

#include <cstring>

#include "kernels/cpu/impl.h"

namespace loopq::kernels::detail {
namespace avx2 {
namespace {

template <bool BF16>
inline __m256 load_w(const void* base, int64_t idx) {
  if (BF16) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(base) + idx));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  }
  return _mm256_loadu_ps(static_cast<const float*>(base) + idx);
}

template <bool BF16>
inline float weight_at(const void* base, int64_t idx) {
  if (!BF16) return static_cast<const float*>(base)[idx];
  const uint32_t bits = uint32_t(static_cast<const uint16_t*>(base)[idx]) << 16;
  float v;
  std::memcpy(&v, &bits, sizeof v);
  return v;
}

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

template <int R, int N, bool BF16>
inline void block(const DenseJob& j, int64_t r0, int64_t o) {
  const int64_t in = j.w->in, main = in / 8 * 8;
  const void* w = j.w->data;
  __m256 acc[R][N];
  for (int r = 0; r < R; ++r)
    for (int i = 0; i < N; ++i) acc[r][i] = _mm256_setzero_ps();
  for (int64_t k = 0; k < main; k += 8) {
    __m256 xv[R];
    for (int r = 0; r < R; ++r) xv[r] = _mm256_loadu_ps(j.x + (r0 + r) * j.ldx + k);
    for (int i = 0; i < N; ++i) {
      const __m256 wv = load_w<BF16>(w, (o + i) * in + k);
      for (int r = 0; r < R; ++r) acc[r][i] = _mm256_fmadd_ps(wv, xv[r], acc[r][i]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int i = 0; i < N; ++i) {
      float s = hsum(acc[r][i]);
      for (int64_t k = main; k < in; ++k) s += j.x[(r0 + r) * j.ldx + k] * weight_at<BF16>(w, (o + i) * in + k);
      j.y[(r0 + r) * j.ldy + o + i] = s;
    }
}

template <int R, bool BF16>
void rows(const DenseJob& j, int64_t r0, int64_t o0, int64_t o1) {
  int64_t o = o0;
  for (; o + 4 <= o1; o += 4) block<R, 4, BF16>(j, r0, o);
  for (; o < o1; ++o) block<R, 1, BF16>(j, r0, o);
}

template <bool BF16>
void all_rows(const DenseJob& j, int64_t o0, int64_t o1) {
  // 2 rows at most per pass: 4 x 2 accumulators, 2 activations and a weight fill 11 of the 16
  // ymm registers.
  for (int64_t r = 0; r < j.rows;) {
    if (j.rows - r == 1) {
      rows<1, BF16>(j, r, o0, o1);
      r += 1;
    } else {
      rows<2, BF16>(j, r, o0, o1);
      r += 2;
    }
  }
}

}  // namespace
}  // namespace avx2

void dense_avx2(const DenseJob& j, int64_t o0, int64_t o1) {
  if (j.w->bf16) avx2::all_rows<true>(j, o0, o1);
  else avx2::all_rows<false>(j, o0, o1);
}

}  // namespace loopq::kernels::detail
