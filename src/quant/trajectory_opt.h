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
//
// Validation guard (optional, the same for both losses): with `valid_ids` set, the pass
// measures the real target on those held-out windows -- the mean next-token NLL of the quantized
// model's exit readout (what `eval ppl` scores), the looped model running all loops on its own
// states, output affines rounded to fp16 as the file stores them -- first for the backbone with
// every parameter at its no-op value (output affines and state alignment off, clip ratios at the
// quantizer's, LWC at 1; static scales keep their calibrated values), then before the first update
// (step 0, the closed-form parameters) and after every `valid_every` updates and the last one,
// and ends with the parameters of the candidate with the lowest valid NLL (the earliest on ties).
// With `patience` P > 0 it stops after P checkpoints in a row that beat no earlier candidate.
// Checkpoints are scored on the packed kernels where they run the model (packed_snapshot.h):
// the same NLL bit for bit as the reference path, in about two thirds of the time.
// So the result is never worse on valid than its own unlearned backbone, nor than the
// closed-form start. With the guard, a non-finite training loss stops the pass (the best
// checkpoint is kept) instead of failing it.
#include <ATen/ATen.h>

#include <cstdint>
#include <string>
#include <vector>

#include "model/ouro_model.h"

namespace loopq::quant {

struct TrajectoryOptions {
  bool trajectory = true;      // false: layer-local teacher-forced loss
  int64_t steps = 15;          // chosen on valid (RESULTS section 7, session 9)
  int64_t batch = 4;           // windows per step
  int64_t seqlen = 256;        // windows are cut into pieces of this many tokens
  double lr = 5e-3;            // relative step size (chosen on valid)
  double kl_weight = 1.0;      // λ
  std::vector<double> loop_weights;  // w_t (empty: all 1)
  bool learn_weight_clipping = true;
  bool rtn_backbone = false;   // re-round codes under learned clipping (else codes fixed)
  // Learn the shared weight behind the codes too (straight-through rounding; the codes may move,
  // one integer tensor per linear stays), with Adam steps of weight_lr quantization steps.
  bool learn_weights = false;
  double weight_lr = 0.05;
  uint64_t seed = 0;
  bool progress = true;
  // Validation guard: held-out token windows, valid_ids.size() / valid_seqlen of them, row after
  // row (empty: no guard), checked every `valid_every` steps. `valid_file` is only recorded
  // (config.json). Plain ids, not a tensor: QuantConfig holds these options and stays linkable
  // without libtorch (test_io, the fuzz targets).
  std::vector<int64_t> valid_ids;
  int64_t valid_seqlen = 0;
  int64_t valid_every = 5;
  // Early stop: end the pass after this many checkpoints in a row (after updates) that do not
  // beat the best candidate so far; 0 (the default) runs every step. Measured in RESULTS
  // section 7 (session 11): cheaper, never better on valid, so not the default.
  int64_t patience = 0;
  std::string valid_file;
};

struct TrajectoryReport {
  std::vector<double> loss;  // per step (before the update)
  int64_t parameters = 0;    // learned scalars
  int64_t steps_run = 0;     // updates made (< steps when the guard stopped a diverging run)
  // Validation guard (empty without it): the checkpoints' update counts and valid NLLs, in order,
  // and the checkpoint whose parameters the model ends with.
  std::vector<int64_t> valid_steps;
  std::vector<double> valid_loss;
  int64_t chosen_step = -1;        // -1 with chosen_backbone
  double chosen_valid_loss = 0;
  // The unlearned backbone (every parameter at its no-op value) is the first candidate.
  double backbone_valid_loss = 0;
  bool chosen_backbone = false;
  std::string stopped;       // why the pass stopped early (empty: it ran every step)
};

// Optimizes `model` (already quantized, adaptations installed) in place. `fp_weights` are the
// FP weights ([layer][site], final basis) the RTN backbone re-rounds from (ignored otherwise).
TrajectoryReport optimize_adaptations(OuroModel& model, const OuroModel& reference, const at::Tensor& windows,
                                      const std::vector<std::vector<at::Tensor>>& fp_weights,
                                      const TrajectoryOptions& options);

// The validation guard's criterion: mean next-token NLL (nats) of `model`'s exit readout over the
// windows [n, S] (token 0 of each window unscored), all loops, one window at a time, no gradients.
double readout_nll(const OuroModel& model, const at::Tensor& windows);

// The loss of `model` against `reference` on `ids` [B, S], without gradients (for tests and
// reports): the trajectory or layer-local objective above.
double adaptation_loss(const OuroModel& model, const OuroModel& reference, const at::Tensor& ids,
                       const TrajectoryOptions& options);

}  // namespace loopq::quant
