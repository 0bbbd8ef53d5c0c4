#pragma once
// GPTQ toward the FP model's outputs (LoopQ D's trajectory GPTQ, `--gptq-target fp`).
//
// Plain GPTQ minimises ||X̃ (W - Ŵ)ᵀ||² over the inputs X̃ a linear is fed. In a quantized looped
// model those inputs carry every earlier layer's and loop's error, and the linear's own
// activation rounding; what the model needs is the error against the FP model's output on its FP
// input X:  ||X Wᵀ - X̃ Ŵᵀ||².  With the least-squares target
//     V = argmin_V ||X Wᵀ - X̃ Vᵀ||²,   Vᵀ = Wᵀ + H̃⁻¹ (C - H̃) Wᵀ,   H̃ = X̃ᵀX̃,  C = X̃ᵀX,
// the two objectives differ by a constant (the residual of V is orthogonal to X̃'s columns), so
// plain GPTQ on (V, H̃) minimises the FP-target error exactly (the asymmetric calibration of
// GPTAQ, Li et al. 2025). H̃ is the same damped Hessian GPTQ uses, so V = W when X̃ = X.
#include <ATen/ATen.h>

#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <utility>
#include <vector>

#include "model/ouro_model.h"
#include "quant/calibration.h"
#include "quant/quant_linear.h"

namespace loopq::quant {

using LayerGroup = std::pair<int64_t, InputGroup>;

// H̃ = 2/n Σ_t w_t ãᵀã and C = 2/n Σ_t w_t ãᵀa (fp64) for one linear input, in the basis the
// linear multiplies: ã is the quantized model's input after the linear's rotation and activation
// quantizer, a the FP model's input after the same rotation; n counts rows over loops.
struct PairedInputStats {
  at::Tensor hessian, cross;
  int64_t rows = 0;
};

// Runs `windows` through `fp` (recording the wanted inputs) and through `quantized`, batch by
// batch, and collects the paired statistics of every (layer, group) in `wanted`. Both models must
// share rotations and layout (fp: the rotated FP model before any weight was quantized). `act`
// quantizes the wanted groups' inputs (disabled: rotation only); `loop_weights` are w_t (empty:
// 1). `progress(done, total)` after each batch.
std::map<LayerGroup, PairedInputStats> paired_calibration(
    const OuroModel& quantized, const OuroModel& fp, const at::Tensor& windows, const std::set<LayerGroup>& wanted,
    const ActQuant& act, const std::vector<double>& loop_weights, int64_t batch_size,
    const std::function<void(int64_t, int64_t)>& progress = {});

// V above for weight [out, in] (the linear's basis), with H̃ damped as GPTQ damps it
// (percdamp x mean diag). fp32 result.
at::Tensor fp_target_weight(const at::Tensor& weight, const PairedInputStats& stats, double percdamp);

}  // namespace loopq::quant
