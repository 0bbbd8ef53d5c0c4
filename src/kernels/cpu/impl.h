#pragma once
// Internal interface between dispatch.cpp and the per-ISA kernel files. Each ISA file is compiled
// with its own flags (CMakeLists.txt) and only entered after a cpuid check. Rule for those files:
// intrinsics, their own namespace (detail::avx2 / detail::avx512) and trivial accessors only. An
// out-of-line copy of a shared inline function (std:: containers, helpers below) compiled there
// with AVX-512 flags could be the copy the linker keeps for the whole program.
#include <cstdint>

#include "kernels/cpu/format.h"

namespace loopq::kernels::detail {

// One matmul call: y[r][o] for rows [0, rows) of quantized activations x (row stride ldx).
struct Job {
  const PackedWeight* w = nullptr;
  const int8_t* x = nullptr;
  int64_t ldx = 0;
  int64_t rows = 0;
  const float* xscale = nullptr;  // [rows]
  const int32_t* xsum = nullptr;  // [rows][groups]: sum of the row's codes over each group
  const Epilogue* ep = nullptr;
  float* y = nullptr;
  int64_t ldy = 0;
};

// Output rows [r0, r1) (at most 4 for the GEMV kernels) times weight tiles [t0, t1).
using KernelFn = void (*)(const Job&, int64_t r0, int64_t r1, int64_t t0, int64_t t1);

void gemv_scalar(const Job&, int64_t, int64_t, int64_t, int64_t);
void gemv_avx2(const Job&, int64_t, int64_t, int64_t, int64_t);
void gemv_avx512(const Job&, int64_t, int64_t, int64_t, int64_t);
void gemm_avx2(const Job&, int64_t, int64_t, int64_t, int64_t);
void gemm_avx512(const Job&, int64_t, int64_t, int64_t, int64_t);

// One dense matmul call (dense_linear): rows (1-4) of fp32 x times a DenseWeight.
struct DenseJob {
  const DenseWeight* w = nullptr;
  const float* x = nullptr;
  int64_t ldx = 0;
  int64_t rows = 0;
  float* y = nullptr;
  int64_t ldy = 0;
};
// Every row of the job times output rows [o0, o1) of the weight.
using DenseFn = void (*)(const DenseJob&, int64_t o0, int64_t o1);
void dense_scalar(const DenseJob&, int64_t, int64_t);
void dense_avx2(const DenseJob&, int64_t, int64_t);
void dense_avx512(const DenseJob&, int64_t, int64_t);

// The epilogue of format.h for one value, in the operation order every path uses (the kernel
// files are compiled with -ffp-contract=off, so vector paths round like this one).
inline float epilogue(float acc, float xscale, const Epilogue& ep, int64_t o) {
  float y = acc * xscale;
  if (ep.bias) y = y + ep.bias[o];
  if (ep.out_scale) y = y * ep.out_scale[o];
  if (ep.out_bias) y = y + ep.out_bias[o];
  return y;
}

}  // namespace loopq::kernels::detail
