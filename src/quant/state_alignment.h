#pragma once
// LoopQ C (the align_states pass): a per-loop affine correction of the loop state,
// s'_t = a_t * s_t + b_t per channel, carried as a per-loop model.norm weight and bias
// (OuroWeights::state_weight / state_bias). Initialised in closed form, loop after loop, so that
// on the calibration windows the quantized trajectory's per-channel mean and standard deviation
// equal the FP trajectory's (loop t is fitted with loops < t already corrected).
#include <ATen/ATen.h>

#include <vector>

#include "model/ouro_model.h"

namespace loopq::quant {

struct ChannelMoments {
  at::Tensor mean, std;  // [d] fp64
};

// Per-loop, per-channel moments of the states of the first `loops` loops over `windows`.
std::vector<ChannelMoments> state_moments(const OuroModel& model, const at::Tensor& windows, int64_t loops,
                                          int64_t batch_size);

// Gives `model` state parameters (identity if it has none) and fits them to `reference`: one set
// per loop (loop after loop, in one forward of all `windows` as one batch), or with per_loop =
// false one set for all loops from the moments pooled over loops.
void align_states(OuroModel& model, const OuroModel& reference, const at::Tensor& windows, int64_t batch_size,
                  bool per_loop = true);

}  // namespace loopq::quant
