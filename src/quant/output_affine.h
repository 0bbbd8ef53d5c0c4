#pragma once
// LoopQ A's epilogue correction (the fit_affine pass): per loop and output channel, y -> c*y + b
// with (c, b) the closed-form least-squares fit of the quantized linear's output y to the FP
// weight applied to the quantized model's own input (loopq-method.md §10: better than fitting to
// the FP model's outputs). Streams first and second moments; nothing stores activations.
#include <ATen/ATen.h>

#include <vector>

#include "model/hooks.h"
#include "model/ouro_model.h"

namespace loopq::quant {

// Per-channel least squares min_{c,b} Σ (c*y + b - t)² from the sums over n rows; channels with
// no variance in y keep c = 1 and take the mean offset. All inputs [out] fp64. Returns {c, b}.
std::pair<at::Tensor, at::Tensor> least_squares_affine(double n, const at::Tensor& sum_y, const at::Tensor& sum_t,
                                                       const at::Tensor& sum_yy, const at::Tensor& sum_yt);

// Fits and installs the output affine of every quantized layer linear of `model`. `fp_weights`
// [layer][site] are the FP weights in each linear's input basis (after rotations and folds, before
// weight quantization). per_loop: one (c, b) per loop (P = T), else pooled over loops (P = 1).
// Returns P.
int64_t fit_output_affine(OuroModel& model, const std::vector<std::vector<at::Tensor>>& fp_weights,
                          const at::Tensor& windows, int64_t batch_size, bool per_loop);

}  // namespace loopq::quant
