#pragma once
// The fp32 math of one decode step (one token row) as plain loops: the sandwich-norm layer's
// RMSNorms, half-split RoPE, SiLU gating and single-query attention over a cache slot. A decode
// step runs ~60 tiny ATen ops per (loop, layer) otherwise, and at the Ouro-1.4B shape their
// dispatch and allocations cost as much as a third of the weight streaming. Same formulas as the
// ATen path in ouro_model.cpp; reductions run in fp64, so results agree to fp32 rounding, not bit
// for bit. Model math only: no low-bit kernels here (the packed linear is their only bridge).
#include <cstdint>
#include <functional>

namespace loopq::decode {

// out = w * (x * rsqrt(mean(x^2) + eps)) over n elements (out may alias x).
void rms_norm(const float* x, const float* w, int64_t n, double eps, float* out);
// out = res + rms_norm(x, w) (out may alias res or x).
void add_rms_norm(const float* res, const float* x, const float* w, int64_t n, double eps, float* out);
// out = x * cos + rotate_half(x) * sin on `heads` rows of hd, with cos/sin [hd] (out != x).
void rope(const float* x, int64_t heads, int64_t hd, const float* cos, const float* sin, float* out);
// out = silu(g) * u.
void silu_mul(const float* g, const float* u, int64_t n, float* out);

// Where single-query attention reads one kv head's keys (kv = 0) or values (kv = 1): a pointer
// to the rows of tokens [t0, t0 + count), hd floats each, either in place or decoded into
// `scratch` (room for count * hd floats). Called with count <= kAttendBlock.
using HeadRows = std::function<const float*(int kv, int64_t head, int64_t t0, int64_t count, float* scratch)>;
constexpr int64_t kAttendBlock = 32;

// Single-query attention for one sequence. q [kv_heads * group, hd]: the `group` query heads of
// kv head h are rows h*group ... h*group + group - 1. allowed[j] false masks key j with the same
// finite fill as the ATen path (a fully masked row becomes uniform, not NaN). scores = q.k *
// scale, softmax over j < len. out [kv_heads * group, hd]. Query heads are split over `threads`
// threads; every head's arithmetic is the same for any thread count and any HeadRows.
void attend_one(const float* q, int64_t kv_heads, int64_t group, int64_t hd, int64_t len,
                const bool* allowed, float scale, const HeadRows& rows, float* out, int threads);
// The same over fp32 K/V: row j of kv head h at k + h * head_stride + j * hd (likewise v).
void attend_one(const float* q, int64_t kv_heads, int64_t group, int64_t hd, const float* k,
                const float* v, int64_t head_stride, int64_t len, const bool* allowed, float scale,
                float* out, int threads);

}  // namespace loopq::decode
