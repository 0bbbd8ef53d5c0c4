#pragma once
// SmoothQuant (quantization-reference.md §3.2): migrate activation outliers into the weights with
// per-input-channel scales s_j = max|X_j|^α / max|W_:,j|^(1-α), folded into the preceding RMSNorm
// (input_layernorm -> q/k/v, post_attention_layernorm -> gate/up), so the FP model is unchanged.
// Ouro's *_2 post-norms and model.norm feed no linear and are left alone.
#include <ATen/ATen.h>

#include "model/ouro_model.h"
#include "quant/calibration.h"

namespace loopq::quant {

// Per-channel smoothing scales from an activation absmax [in] and the linears' weights (max over
// rows of all linears sharing the input). Clamped at 1e-5 as the reference does.
at::Tensor smoothing_scales(const at::Tensor& act_absmax, const std::vector<at::Tensor>& weights, double alpha);

// Folds scales computed from loop-pooled absmax statistics into every layer (one parameter set
// per physical layer: the static way). The model's linears must be dense.
void apply_smoothquant(OuroModel& model, const CalibrationCollector& stats, double alpha);

}  // namespace loopq::quant
