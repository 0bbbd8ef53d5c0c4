#pragma once
// Integer quantizer primitives, following the QuaRot/GPTQ-family conventions in
// ../shared/docs/quantization-reference.md §2: round half to even, symmetric grid
// [-(maxq+1), maxq] with maxq = 2^(b-1) - 1 (int4: -8..7, scale absmax/7), asymmetric grid
// 0..2^b - 1 with an integer zero point. Scales are per row ([rows, 1]) or per (row, group).
#include <ATen/ATen.h>

namespace loopq::quant {

struct Grid {
  int bits = 4;
  bool symmetric = true;
  int64_t qmin() const { return symmetric ? -(int64_t(1) << (bits - 1)) : 0; }
  int64_t qmax() const { return symmetric ? (int64_t(1) << (bits - 1)) - 1 : (int64_t(1) << bits) - 1; }
};

struct QParams {
  at::Tensor scale;  // broadcastable against the quantized tensor
  at::Tensor zero;   // same shape; zeros for symmetric grids
};

// Parameters from the row-wise range of x [rows, cols] scaled by clip (§2.3/§2.4). Weights
// clamp the range at 1e-5 (weight = true); activations give zero-range rows scale 1. `widen`
// includes 0 in the range first, as every path does except QuaRot's per-token-group one.
QParams row_params(const at::Tensor& x, const Grid& grid, double clip = 1.0, bool weight = true,
                   bool widen = true);
// Integer codes (as float tensors holding integers) and their dequantization.
at::Tensor quantize_codes(const at::Tensor& x, const QParams& p, const Grid& grid);
at::Tensor dequantize(const at::Tensor& codes, const QParams& p);
// quantize then dequantize.
at::Tensor fake_quant(const at::Tensor& x, const QParams& p, const Grid& grid);

// Weight quantization with the MSE clip search of QuaRot's WeightQuantizer (§2.3): shrink
// p = 1 - i/100 for i < 80, error sum |q(x) - x|^2.4 per row, best p per row. group_size > 0
// gives one scale per (row, group of input columns). Parameters are shaped [rows, groups, 1]
// (groups = 1 without grouping), for w viewed as [rows, groups, cols / groups].
QParams weight_params(const at::Tensor& w, const Grid& grid, int64_t group_size = 0,
                      bool mse_search = true);
at::Tensor fake_quant_weight(const at::Tensor& w, const Grid& grid, int64_t group_size = 0,
                             bool mse_search = true);

// Dynamic per-token activation fake quantization (§2.4) over the last dimension, optionally in
// groups of the last dimension (find_params_per_token_groupwise: group min/max, no widening to 0).
at::Tensor fake_quant_activation(const at::Tensor& x, const Grid& grid, double clip = 1.0,
                                 int64_t group_size = 0);
// The codes and parameters behind fake_quant_activation: x viewed as [rows, groups, g] (one group
// of the whole last dimension for group_size <= 0), codes as float integers of that shape, scale
// and zero [rows, groups, 1]. dequantize(codes, params) reshaped to x is fake_quant_activation(x).
struct ActCodes {
  at::Tensor codes;
  QParams params;
};
ActCodes quantize_activation(const at::Tensor& x, const Grid& grid, double clip = 1.0,
                             int64_t group_size = 0);

// Static (offline-calibrated) per-tensor activation fake quantization on a symmetric grid:
// clamp(round(x / scale), qmin, qmax) * scale with one fixed scale (a 0-dim or 1-element tensor,
// so a learned scale stays differentiable). No run-time reduction over the tensor.
at::Tensor fake_quant_static(const at::Tensor& x, const Grid& grid, const at::Tensor& scale);

// Round with a straight-through gradient: forward round(x), backward identity (for learning
// scales and clipping factors through a quantizer).
at::Tensor ste_round(const at::Tensor& x);

// Signed int4 codes in [-8, 7], [rows, cols] with even cols, packed two per byte: even column
// in the low nibble, odd column in the high nibble, two's complement (QuaRot pack_i4).
at::Tensor pack_int4(const at::Tensor& codes);
at::Tensor unpack_int4(const at::Tensor& packed);  // -> int8 [rows, cols]

}  // namespace loopq::quant
