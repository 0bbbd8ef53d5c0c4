#pragma once
// LoopQ A's shared smoothing vector (the smooth pass, loop-balanced). Per (layer, input group), a
// per-input-channel s is folded exactly into the FP model. Before a rotation s = (rms / colnorm)^a,
// whose a = 0.5 minimises the output error of rotated rounding (loop_smoothing.cpp); rms is the
// largest over loops. Unrotated, SmoothQuant's s = absmax^a / wmax^(1-a). It folds: attn_in into
// input_layernorm, mlp_in into post_attention_layernorm, down_in into up_proj's output rows, o_in
// into v_proj's output rows (per KV head, shared by the query heads that read it, so GQA stays
// exact). The strength a is chosen per site from {off, 0.25, 0.5, 0.75} by the worst case over
// loops of the relative output error of the site quantized as it will run (RTN weights, the mode's
// activation quantizer, the site's QuaRot rotation): one loop's outliers (loop 1 at layer 0's
// down_proj) cannot decide alone, and a site where smoothing hurts any loop keeps s = 1.
#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <cstdint>

#include "model/ouro_model.h"
#include "quant/act_calibration.h"
#include "quant/quantizer.h"

namespace loopq::quant {

// `samples` come from the dense FP model (raw basis). With `rotate` the errors are measured
// after QuaRot's online rotation with `rotation_seed`. Returns the per-site report.
nlohmann::json loop_balanced_smoothing(OuroModel& model, const ActivationSampler& samples, const Grid& w_grid,
                                       const ActQuant& act, bool rotate, uint64_t rotation_seed);

// Folds per-channel scales into a dense model (exact): `s` [in] for the input of `group` in
// `layer` (o_in: s over the q_dim channels, equal across the query heads of a KV head).
void fold_smoothing(OuroModel& model, int64_t layer, InputGroup group, const at::Tensor& s);

}  // namespace loopq::quant
