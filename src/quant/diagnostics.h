#pragma once
// Per-loop diagnostics of a quantized looped model against its FP reference (loopq diagnose):
// for every loop t, on the same text windows,
//   relative_state_error = sqrt(Σ ||s̃_t - s_t||²) / sqrt(Σ ||s_t||²)  (normed loop states)
//   kl                   = mean over scored tokens of KL(p_fp,t || p_q,t), loop t's readouts
//   ppl                  = exp(mean NLL) of loop t's readout (next token), and the reference's
//   top1_agreement       = fraction of positions where both readouts have the same argmax
// and, per quantized linear and loop, the SQNR of its activation quantization,
//   10 log10(Σ x² / Σ (q(x) - x)²) on the input in the basis the linear quantizes.
#include <ATen/ATen.h>

#include <cstdint>
#include <vector>

#include "model/ouro_model.h"

namespace loopq::quant {

struct LoopDiagnostics {
  double relative_state_error = 0, kl = 0, ppl = 0, ppl_reference = 0, top1_agreement = 0;
};

struct SiteSqnr {
  int64_t layer = 0;
  LinearSite site = LinearSite::Q;
  std::vector<double> sqnr_db;  // per loop; +inf when the input is not quantized
};

struct Diagnostics {
  int64_t windows = 0, seqlen = 0, tokens = 0;
  std::vector<LoopDiagnostics> per_loop;
  std::vector<SiteSqnr> sites;
};

// windows: [n, seqlen] token ids. Both models run the same loop count (model's total_ut_steps).
Diagnostics diagnose(const OuroModel& model, const OuroModel& reference, const at::Tensor& windows);

}  // namespace loopq::quant
