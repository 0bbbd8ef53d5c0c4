#pragma once
// The static PTQ pipeline on a looped model: one parameter set per physical linear, statistics
// pooled over all loops (quantization-reference.md §3.12). Method order:
//   QuaRot rotation (FP, exact) -> SmoothQuant folding (FP, exact) -> weight quantizer (RTN or
//   GPTQ, sequential over layers) -> activation quantizers -> KV-cache quantizer.
#include <ATen/ATen.h>

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "model/ouro_model.h"
#include "quant/quant_config.h"

namespace loopq::quant {

struct PtqRunOptions {
  int64_t batch_size = 8;  // calibration windows per forward
  bool progress = true;    // progress lines on stderr
};

struct PtqReport {
  double calibration_seconds = 0;  // model forwards with statistics hooks
  double quantize_seconds = 0;     // everything, including calibration
  int64_t calibration_passes = 0;
  double gptq_hessian_error = 0;   // sum over linears (GPTQ only)
  std::vector<std::pair<std::string, double>> pass_seconds;  // the timed passes, in order
};

// Which passes a method runs (design-notes §1): the static baselines, every LoopQ ablation row
// and learned-static differ only here, in this order:
//   loop_smooth (A, opt-in) -> rotate -> select_rotations (B) -> shape_kv (--kv-transform) -> shape_inputs (--input-transform) -> smooth -> quantize weights (RTN | GPTQ | trajectory GPTQ)
//   -> calibrate_acts
//   -> fit_affine -> align_states -> optimize (trajectory or layer-local loss)
// per_loop: the activation parameters, output affines and state alignment get one set per loop
// (LoopQ) instead of one set for all loops (learned-static, and static scales of the baselines).
struct Recipe {
  bool loop_smooth = false;  // LoopQ A's loop-balanced shared smoothing vector (before rotate)
  bool rotate = false, select_rotations = false, smooth = false, gptq = false;
  bool shape_kv = false;      // KV-cache shaping transforms (kv_transform.h)
  bool shape_inputs = false;  // input-shaping transforms (input_transform.h), loop-balanced when per_loop
  // GPTQ Hessians from the quantized trajectory: earlier layers run with their activations
  // quantized too, each loop's rows weighted by QuantConfig::gptq_loop_weights (LoopQ D).
  bool trajectory_gptq = false;
  // ... and toward the FP model's outputs (gptq_fp_target.h): GPTQ on the least-squares target of
  // the FP inputs' outputs, with Hessians that include each linear's own activation rounding.
  bool gptq_fp_target = false;
  bool calibrate_acts = false, per_loop = false;
  bool fit_affine = false, align_states = false, optimize = false, trajectory_loss = false;
};
Recipe recipe_of(const QuantConfig& cfg);

// Rounds every output affine to fp16, the precision the quantized format stores them in (they are
// O(out) per loop and site, the largest adaptation; fp16 halves them, at 0.2-0.4% valid perplexity
// on ouro-tiny, RESULTS section 7).
void round_output_affines(OuroModel& model);
// Removes every adaptation tensor that is at its no-op value when the optimization's guard kept
// the bare backbone (output affines, clip ratios, state alignment; static scales stay), and the
// config's counts with them, so the file holds exactly the backbone.
void drop_noop_adaptations(OuroModel& model, QuantConfig& cfg);

// Whether `cfg` needs calibration windows (SmoothQuant, GPTQ, static activations, LoopQ).
bool needs_calibration(const QuantConfig& cfg);

// Quantizes `model` in place. `windows` [n, seqlen] are the calibration token windows (unused by
// RTN). The model must be dense (as loaded). cfg.quantize_seconds is filled in.
PtqReport quantize_model(OuroModel& model, QuantConfig& cfg, const at::Tensor& windows,
                         const PtqRunOptions& options = {});

// Installs the configured activation and KV quantizers on an already weight-quantized model (also
// used by the loader).
void install_runtime_quantizers(OuroModel& model, const QuantConfig& cfg);

// The weight and input rotation of a layer linear, whatever its current implementation.
struct LinearParts {
  at::Tensor weight;       // dense fp32 [out, in] in the rotated basis
  InputRotation rotation;
};
LinearParts linear_parts(const LinearPtr& op);

}  // namespace loopq::quant
