#pragma once
// LoopQ B (the selective half of the rotate pass): starting from the fully rotated FP model
// (quarot_rotate_model), keep each (layer, input group)'s online rotation only where it lowers
// the measured output error of the quantized linear on that site's inputs, loop by loop. A site
// whose rotation is dropped gets its weight mapped back to the plain basis (exact in FP).
#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <array>
#include <vector>

#include "model/ouro_model.h"
#include "quant/act_calibration.h"
#include "quant/quantizer.h"

namespace loopq::quant {

struct RotationChoice {
  std::vector<std::array<bool, 4>> rotate;  // [layer][group]
  nlohmann::json report;                    // per site: per-loop relative output errors with and without
};

// Measures, per site and loop, ||q_a(v) Ŵ_vᵀ - x Wᵀ||² / ||x Wᵀ||² for v = rotated and plain inputs,
// with Ŵ_v the RTN-quantized weight in that basis and q_a the activation quantizer of `act`
// (static: the best per-tensor scale, per loop if `per_loop`, else pooled), and keeps the
// rotation iff its mean over loops is lower. Modifies the model's dense linears accordingly.
RotationChoice select_rotations(OuroModel& model, const ActivationSampler& rotated_samples, const Grid& w_grid,
                                const ActQuant& act, bool per_loop);

}  // namespace loopq::quant
