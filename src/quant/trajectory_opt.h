#pragma once
// The optimize pass: learn a quantized model's lightweight parameters (static activation scales
// or clip ratios, output affines, state alignment) together with LWC weight-clipping factors
// (shared over loops) through straight-through rounding, against an FP reference.
//
//   trajectory loss (LoopQ D):   the quantized model runs its own states through every loop;
//     L = Σ_t w_t ||s̃_t - s_t||² / ||s_t||²  +  λ KL(p_fp || p_q)  (final readout, mean per token)
//   layer-local loss (learned-static, OmniQuant-style): each layer of each loop is fed the FP
//     model's input to it (teacher forced);  L = Σ_{t,l} ||ỹ_{t,l} - y_{t,l}||² / ||y_{t,l}||²
//
// Which parameters are per loop is decided by the shapes the earlier passes gave them; this pass
// only learns what is there. Deterministic for a seed (batch order); Adam without weight decay,
// step sizes relative to each tensor's initial magnitude.
#include <ATen/ATen.h>

#include <cstdint>
#include <vector>

#include "model/ouro_model.h"

namespace loopq::quant {

struct TrajectoryOptions {
  bool trajectory = true;      // false: layer-local teacher-forced loss
  int64_t steps = 60;
  int64_t batch = 4;           // windows per step
  int64_t seqlen = 256;        // windows are cropped to this many tokens
  double lr = 2e-3;            // relative step size
  double kl_weight = 1.0;      // λ
  std::vector<double> loop_weights;  // w_t (empty: all 1)
  bool learn_weight_clipping = true;
  bool rtn_backbone = false;   // re-round codes under learned clipping (else codes fixed)
  uint64_t seed = 0;
  bool progress = true;
};

struct TrajectoryReport {
  std::vector<double> loss;  // per step (before the update)
  int64_t parameters = 0;    // learned scalars
};

// Optimizes `model` (already quantized, adaptations installed) in place. `fp_weights` are the
// FP weights ([layer][site], final basis) the RTN backbone re-rounds from (ignored otherwise).
TrajectoryReport optimize_adaptations(OuroModel& model, const OuroModel& reference, const at::Tensor& windows,
                                      const std::vector<std::vector<at::Tensor>>& fp_weights,
                                      const TrajectoryOptions& options);

// The loss of `model` against `reference` on `ids` [B, S], without gradients (for tests and
// reports): the trajectory or layer-local objective above.
double adaptation_loss(const OuroModel& model, const OuroModel& reference, const at::Tensor& ids,
                       const TrajectoryOptions& options);

}  // namespace loopq::quant
