#pragma once
// GPTQ weight quantization (quantization-reference.md §3.3; IST-DASLab/gptq `gptq.py`,
// `GPTQ.fasterquant`, as copied into QuaRot/SpinQuant): columns are quantized one at a time in
// (optionally act-order) sequence, and each column's rounding error is propagated onto the
// not-yet-quantized columns through the upper Cholesky factor of the damped inverse Hessian,
// with lazy block updates. Uses the QuaRot grids and MSE clip search of quantizer.h (§2).
#include <ATen/ATen.h>

#include "quant/quantizer.h"

namespace loopq::quant {

struct GptqOptions {
  Grid grid;
  int64_t group_size = 0;     // 0: one scale per output row; > 0 must divide in_features
  int64_t block_size = 128;   // lazy-update block width (result is the same up to rounding)
  double percdamp = 0.01;     // diagonal damping as a fraction of mean(diag H)
  bool act_order = true;      // quantize columns in order of descending diag(H)
  bool static_groups = false; // group params from the original weight; required with act_order
  bool mse_search = true;     // QuaRot --w_clip search for the params (§2.3)
};

struct GptqResult {
  at::Tensor codes;        // [out, in] float holding integers in [qmin, qmax], original column order
  QParams params;          // [out, groups, 1]; group g covers original columns g*gs .. (g+1)*gs-1
  at::Tensor dequantized;  // [out, in] fp32, == dequantize(codes, params) bit for bit
  double hessian_error;    // sum of the reference's losses (w - q)^2 / d^2 / 2, for logging
};

// weight [out, in]; hessian [in, in] (e.g. 2/n X^T X of the layer inputs), any float dtype.
// Throws loopq::Error on bad shapes/options or a Hessian that is not positive definite after
// damping.
GptqResult gptq_quantize(const at::Tensor& weight, const at::Tensor& hessian, const GptqOptions& options);

}  // namespace loopq::quant
