// AVX-512 VNNI variant of the same per-row dot product: two blocks per zmm, |x| times sign-moved
// y through vpdpbusd, one fp32 FMA per pair of blocks with both blocks' scale products.
#include <immintrin.h>

#include "cli/bench/q4_0_ref.h"

namespace loopq::cli::q40 {

float dot_avx512(const BlockQ4* w, const BlockQ8* x, int64_t nb) {
  __m512 acc = _mm512_setzero_ps();
  const __m512i low = _mm512_set1_epi8(0x0F), off = _mm512_set1_epi8(8);
  int64_t b = 0;
  for (; b + 2 <= nb; b += 2) {
    const __m128i q0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(w[b].qs));
    const __m128i q1 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(w[b + 1].qs));
    const __m256i n0 = _mm256_set_m128i(_mm_srli_epi16(q0, 4), q0), n1 = _mm256_set_m128i(_mm_srli_epi16(q1, 4), q1);
    __m512i qx = _mm512_and_si512(_mm512_inserti64x4(_mm512_castsi256_si512(n0), n1, 1), low);
    qx = _mm512_sub_epi8(qx, off);
    const __m512i qy = _mm512_inserti64x4(
        _mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[b].qs))),
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[b + 1].qs)), 1);
    const __mmask64 neg = _mm512_movepi8_mask(qx);
    const __m512i ax = _mm512_abs_epi8(qx), sy = _mm512_mask_sub_epi8(qy, neg, _mm512_setzero_si512(), qy);
    const __m512i dot = _mm512_dpbusd_epi32(_mm512_setzero_si512(), ax, sy);
    const __m512 d = _mm512_castpd_ps(_mm512_insertf64x4(
        _mm512_castps_pd(_mm512_set1_ps(_cvtsh_ss(w[b].d) * _cvtsh_ss(x[b].d))),
        _mm256_castps_pd(_mm256_set1_ps(_cvtsh_ss(w[b + 1].d) * _cvtsh_ss(x[b + 1].d))), 1));
    acc = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(dot), acc);
  }
  float sum = _mm512_reduce_add_ps(acc);
  if (b < nb) sum += dot_scalar(w + b, x + b, nb - b);
  return sum;
}

}  // namespace loopq::cli::q40
