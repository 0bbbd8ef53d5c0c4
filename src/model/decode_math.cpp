#include "model/decode_math.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "util/thread_pool.h"

namespace loopq::decode {
namespace {

// Sum of squares with 8 independent fp64 lanes, so the compiler vectorizes it without
// reassociating a single accumulator.
double sum_squares(const float* x, int64_t n) {
  double lane[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int l = 0; l < 8; ++l) lane[l] += double(x[i + l]) * double(x[i + l]);
  double s = 0;
  for (; i < n; ++i) s += double(x[i]) * double(x[i]);
  for (double v : lane) s += v;
  return s;
}

float dot(const float* a, const float* b, int64_t n) {
  float lane[16] = {};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int l = 0; l < 16; ++l) lane[l] += a[i + l] * b[i + l];
  double s = 0;
  for (; i < n; ++i) s += double(a[i]) * double(b[i]);
  for (float v : lane) s += v;
  return float(s);
}

float inv_rms(const float* x, int64_t n, double eps) {
  const float mean = float(sum_squares(x, n) / double(n));
  return 1.0f / std::sqrt(mean + float(eps));
}

}  // namespace

void rms_norm(const float* x, const float* w, int64_t n, double eps, float* out) {
  const float r = inv_rms(x, n, eps);
  for (int64_t i = 0; i < n; ++i) out[i] = w[i] * (x[i] * r);
}

void add_rms_norm(const float* res, const float* x, const float* w, int64_t n, double eps, float* out) {
  const float r = inv_rms(x, n, eps);
  for (int64_t i = 0; i < n; ++i) out[i] = res[i] + w[i] * (x[i] * r);
}

void rope(const float* x, int64_t heads, int64_t hd, const float* cos, const float* sin, float* out) {
  const int64_t half = hd / 2;
  for (int64_t h = 0; h < heads; ++h) {
    const float* r = x + h * hd;
    float* o = out + h * hd;
    for (int64_t i = 0; i < half; ++i) {
      o[i] = r[i] * cos[i] + (-r[i + half]) * sin[i];
      o[i + half] = r[i + half] * cos[i + half] + r[i] * sin[i + half];
    }
  }
}

void silu_mul(const float* g, const float* u, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
}

void attend_one(const float* q, int64_t kv_heads, int64_t group, int64_t hd, int64_t len,
                const bool* allowed, float scale, const HeadRows& rows, float* out, int threads) {
  const int64_t heads = kv_heads * group;
  const int tasks = int(std::min<int64_t>(std::max(threads, 1), heads));
  parallel_for(tasks, tasks, [&](int task) {
    std::vector<float> p(static_cast<size_t>(len)), scratch(static_cast<size_t>(kAttendBlock * hd));
    for (int64_t qh = heads * task / tasks; qh < heads * (task + 1) / tasks; ++qh) {
      const int64_t h = qh / group;
      const float* qr = q + qh * hd;
      float* o = out + qh * hd;
      float m = -INFINITY;
      for (int64_t t0 = 0; t0 < len; t0 += kAttendBlock) {
        const int64_t cnt = std::min(kAttendBlock, len - t0);
        const float* kr = rows(0, h, t0, cnt, scratch.data());
        for (int64_t j = 0; j < cnt; ++j) {
          float& pj = p[t0 + j];
          pj = allowed[t0 + j] ? dot(qr, kr + j * hd, hd) * scale : -1e30f;
          m = std::max(m, pj);
        }
      }
      double sum = 0;
      for (int64_t j = 0; j < len; ++j) sum += (p[j] = std::exp(p[j] - m));
      const float inv = float(1.0 / sum);
      std::fill(o, o + hd, 0.0f);
      for (int64_t t0 = 0; t0 < len; t0 += kAttendBlock) {
        const int64_t cnt = std::min(kAttendBlock, len - t0);
        bool any = false;
        for (int64_t j = 0; j < cnt && !any; ++j) any = p[t0 + j] != 0.0f;
        if (!any) continue;  // a block of masked keys (exp underflows to exactly 0)
        const float* vr = rows(1, h, t0, cnt, scratch.data());
        for (int64_t j = 0; j < cnt; ++j) {
          const float pj = p[t0 + j] * inv;
          if (pj == 0.0f) continue;
          for (int64_t d = 0; d < hd; ++d) o[d] += pj * vr[j * hd + d];
        }
      }
    }
  });
}

void attend_one(const float* q, int64_t kv_heads, int64_t group, int64_t hd, const float* k,
                const float* v, int64_t head_stride, int64_t len, const bool* allowed, float scale,
                float* out, int threads) {
  const HeadRows in_place = [&](int kv, int64_t head, int64_t t0, int64_t, float*) {
    return (kv == 0 ? k : v) + head * head_stride + t0 * hd;
  };
  attend_one(q, kv_heads, group, hd, len, allowed, scale, in_place, out, threads);
}

}  // namespace loopq::decode
