#pragma once
// The static PTQ pipeline on a looped model: one parameter set per physical linear, statistics
// pooled over all loops (quantization-reference.md §3.12). Method order:
//   QuaRot rotation (FP, exact) -> SmoothQuant folding (FP, exact) -> weight quantizer (RTN or
//   GPTQ, sequential over layers) -> activation quantizers -> KV-cache quantizer.
#include <ATen/ATen.h>

#include <functional>
#include <string>

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
};

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
