// ggml's AVX2 Q4_0 x Q8_0 dot product (ggml_vec_dot_q4_0_q8_0): nibbles to 32 bytes, minus 8,
// the maddubs sign trick, one fp32 FMA per block with the product of the two fp16 scales.
#include <immintrin.h>

#include "cli/bench/q4_0_ref.h"

namespace loopq::cli::q40 {

float dot_avx2(const BlockQ4* w, const BlockQ8* x, int64_t nb) {
  __m256 acc = _mm256_setzero_ps();
  const __m256i low = _mm256_set1_epi8(0x0F), off = _mm256_set1_epi8(8), ones = _mm256_set1_epi16(1);
  for (int64_t b = 0; b < nb; ++b) {
    const __m256 d = _mm256_set1_ps(_cvtsh_ss(w[b].d) * _cvtsh_ss(x[b].d));
    const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(w[b].qs));
    __m256i qx = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(q, 4), q), low);  // low | high lane
    qx = _mm256_sub_epi8(qx, off);
    const __m256i qy = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[b].qs));
    const __m256i ax = _mm256_sign_epi8(qx, qx), sy = _mm256_sign_epi8(qy, qx);
    const __m256i dot = _mm256_madd_epi16(_mm256_maddubs_epi16(ax, sy), ones);
    acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(dot), acc);
  }
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

}  // namespace loopq::cli::q40
