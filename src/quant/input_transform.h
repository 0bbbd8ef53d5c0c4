#pragma once
// The shaping transform of a rotated linear input (LoopQ B's transform side; opt-in for
// learned-static as its pooled control). A site quantizes its input after an orthonormal rotation,
// where rounding noise is close to white with a power that follows E||x T||² (T applied before
// the rotation), and reaches the output through T⁻¹Wᵀ. So the output error follows
// tr(P C) · tr(P⁻¹ G), with P = T Tᵀ, C the input's second moment and G = WᵀW. Its minimum is the
// closed form P = C^-1/2 (C^1/2 G C^1/2)^1/2 C^-1/2, which makes the noise avoid the directions
// the weight amplifies (the diagonal case is rotation-aware smoothing). T = P^1/2 is symmetric;
// in the site's rotated basis the online map becomes M T (dense) and the weight W T⁻¹, so the FP
// function is unchanged. Shared by all loops: it is part of the backbone, not an adaptation.
#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <array>
#include <vector>

#include "model/ouro_model.h"
#include "quant/act_calibration.h"
#include "quant/quantizer.h"

namespace loopq::quant {

struct TransformChoice {
  std::vector<std::array<bool, 4>> groups;  // [layer][attn_in, o_in, mlp_in, down_in]: transformed
  nlohmann::json report;                    // per site: predicted noise ratio, per-loop errors with and without
};

// T minimising tr(P C) tr(P⁻¹ G) (P = T²), both symmetric PSD [n, n]; `damp` adds that fraction of
// each matrix's mean diagonal to it first. float64 [n, n], symmetric positive definite.
at::Tensor shaping_transform(const at::Tensor& C, const at::Tensor& G, double damp);

// For every (layer, group) with `which[group]`: C from the sampled rows (already in the site's
// rotated basis), per loop divided by that loop's output energy and summed when `loop_balanced`
// (each loop's relative error counts once: LoopQ), else pooled over all rows (learned-static).
// The site keeps T only if the mean over loops of its relative output error (RTN weights at
// `w_grid`, the activation quantizer of `act`; static: the best per-tensor scale) is lower with
// it. Expects every linear of a transformed group to be dense (before weight quantization).
TransformChoice shape_input_transforms(OuroModel& model, const ActivationSampler& rotated_samples, const Grid& w_grid,
                                       const ActQuant& act, const std::array<bool, 4>& which, bool loop_balanced,
                                       double damp = 0.01);

}  // namespace loopq::quant
