// Activation quantization to int8 lanes, per row (dynamic) or with a given scale (static).
// Baseline SSE2 only (every x86-64 has it), so no per-ISA dispatch is needed here; prefill
// quantizes 512 x 5632 values per linear, which must stay small next to the GEMM.
#include <emmintrin.h>

#include <algorithm>
#include <cmath>
#include <string>

#include "kernels/cpu/kernels.h"
#include "util/thread_pool.h"
#include "util/error.h"

namespace loopq::kernels {
namespace {

// x / scale, clamped to [qmin, qmax] and rounded half to even. Clamping before rounding equals
// clamping after (the bounds are integers) and keeps huge values out of the int32 conversion.
// _mm_cvtps_epi32 rounds with MXCSR's default, round-to-nearest-even, like torch.round.
void quantize_row(const float* x, int64_t in, float scale, float qmin, float qmax, int8_t* q) {
  const __m128 s = _mm_set1_ps(scale), lo = _mm_set1_ps(qmin), hi = _mm_set1_ps(qmax);
  int64_t k = 0;
  for (; k + 8 <= in; k += 8) {
    // True division as quantizer.cpp does (x / scale), not a reciprocal multiply.
    __m128 a = _mm_div_ps(_mm_loadu_ps(x + k), s), b = _mm_div_ps(_mm_loadu_ps(x + k + 4), s);
    a = _mm_min_ps(_mm_max_ps(a, lo), hi);
    b = _mm_min_ps(_mm_max_ps(b, lo), hi);
    const __m128i w = _mm_packs_epi32(_mm_cvtps_epi32(a), _mm_cvtps_epi32(b));
    _mm_storel_epi64(reinterpret_cast<__m128i*>(q + k), _mm_packs_epi16(w, w));
  }
  for (; k < in; ++k) q[k] = int8_t(std::nearbyint(std::min(std::max(x[k] / scale, qmin), qmax)));
}

// Scale of quantizer.cpp row_params(weight = false, widen = true) for a symmetric grid.
float dynamic_scale(const float* x, int64_t in, float clip, float qmax) {
  __m128 mn = _mm_setzero_ps(), mx = _mm_setzero_ps();  // widened to include 0
  int64_t k = 0;
  for (; k + 4 <= in; k += 4) {
    const __m128 v = _mm_loadu_ps(x + k);
    mn = _mm_min_ps(mn, v);
    mx = _mm_max_ps(mx, v);
  }
  float lo[4], hi[4];
  _mm_storeu_ps(lo, mn);
  _mm_storeu_ps(hi, mx);
  float xmin = std::min(std::min(lo[0], lo[1]), std::min(lo[2], lo[3]));
  float xmax = std::max(std::max(hi[0], hi[1]), std::max(hi[2], hi[3]));
  for (; k < in; ++k) xmin = std::min(xmin, x[k]), xmax = std::max(xmax, x[k]);
  xmin *= clip, xmax *= clip;
  float absmax = std::max(std::fabs(xmin), xmax);
  if (absmax == 0.0f) absmax = qmax;  // zero-range row: scale 1
  return absmax / qmax;
}

}  // namespace

void quantize_act(const float* x, int64_t rows, int64_t in, int64_t ld, const ActParams& p,
                  int64_t in_pad, QuantAct& out, int threads) {
  if (p.bits != 8 && p.bits != 4)
    throw Error("kernels: activation bits must be 8 or 4 (int4 grid in int8 lanes), got " + std::to_string(p.bits));
  if (rows < 0 || in < 1 || in_pad < in || ld < in)
    throw Error("kernels: bad activation shape [" + std::to_string(rows) + ", " + std::to_string(in) + "]");
  if (p.dynamic && !(p.clip > 0.0f && p.clip <= 1.0f))
    throw Error("kernels: activation clip ratio must be in (0, 1]");
  if (!p.dynamic && !(p.static_scale > 0.0f && std::isfinite(p.static_scale)))
    throw Error("kernels: static activation scale must be positive and finite");
  const float qmax = p.bits == 8 ? 127.0f : 7.0f, qmin = -qmax - 1.0f;
  out.rows = rows;
  out.in = in;
  out.in_pad = in_pad;
  out.bits = p.bits;
  out.q.assign(size_t(rows * in_pad), 0);
  out.scale.resize(size_t(rows));
  // Rows are independent; blocks of 16 rows per task keep the pool's overhead small.
  const int64_t per = 16;
  parallel_for(threads, int((rows + per - 1) / per), [&](int i) {
    for (int64_t r = i * per; r < std::min(rows, (i + 1) * per); ++r) {
      const float* xr = x + r * ld;
      const float s = p.dynamic ? dynamic_scale(xr, in, p.clip, qmax) : p.static_scale;
      out.scale[size_t(r)] = s;
      quantize_row(xr, in, s, qmin, qmax, out.q.data() + r * in_pad);
    }
  });
}

}  // namespace loopq::kernels
