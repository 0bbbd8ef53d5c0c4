#pragma once
// Activation-parameter calibration (the calibrate_acts pass): sample each linear input per
// (layer, input group, loop) in the basis its linear quantizes, then choose per-tensor static
// scales or per-token clip ratios by the error they cause at the linear's output. Static
// baselines pool the samples over loops (one parameter per site); LoopQ A chooses one per loop.
#include <ATen/ATen.h>

#include <functional>
#include <vector>

#include "model/hooks.h"
#include "model/ouro_model.h"
#include "quant/calibration.h"
#include "quant/quant_linear.h"

namespace loopq::quant {

// Keeps a bounded, deterministic subsample of every linear input: `rows_per_call` evenly spaced
// rows of each forward's input (after the group's online rotation), so memory is
// O(layers x groups x loops x rows x in), independent of the calibration set's size.
class ActivationSampler final : public LoopHooks {
 public:
  ActivationSampler(const OuroModel& model, int64_t loops, int64_t rows_per_call);
  void on_linear_input(int loop, int layer, LinearSite site, at::Tensor& x) override;
  // [n, in] rows of loop `loop` (all loops concatenated when loop < 0).
  at::Tensor rows(int64_t loop, int64_t layer, InputGroup g) const;
  int64_t loops() const { return loops_; }

 private:
  const OuroModel& model_;
  int64_t loops_, rows_per_call_, calls_ = 0;
  std::vector<std::vector<at::Tensor>> chunks_;  // [(loop * layers + layer) * groups + g]
};

// Samples `windows` through `model` (no activation quantization is applied by the sampler; the
// model runs as it is).
ActivationSampler sample_activations(const OuroModel& model, const at::Tensor& windows, int64_t rows_per_site,
                                     int64_t batch_size);

// The error a quantizer causes at a linear output: ||(q(x) - x) Wᵀ||² summed over rows, with W
// the group's weight [out, in] in the quantized basis (undefined: plain input MSE).
double output_error(const at::Tensor& x, const at::Tensor& qx, const at::Tensor& weight);

struct RatioSearch {
  double ratio = 1;       // best ratio
  double error = 0;       // output error at the best ratio
  double error_at_1 = 0;  // output error at ratio 1 (no clipping)
};
// Minimises output_error over ratios r in (0, 1] of a quantizer q_r: a coarse geometric sweep
// (0.85^k) then a finer one around the best point. Deterministic. With `floor`, q_r is taken to
// clamp r to it, so the sweep stops at its first candidate below the floor (the rest would
// repeat that error).
RatioSearch search_ratio(const at::Tensor& x, const at::Tensor& weight,
                         const std::function<at::Tensor(const at::Tensor&, double)>& quantize, double floor = 0);

// Static per-tensor scale of x [n, in] on `grid`: absmax * r / qmax at the best ratio r.
double search_static_scale(const at::Tensor& x, const at::Tensor& weight, const Grid& grid, RatioSearch* info = nullptr);
// Dynamic per-token clip ratio of x on `grid` (candidates r >= 0.3).
double search_dynamic_clip(const at::Tensor& x, const at::Tensor& weight, const ActQuant& act, RatioSearch* info = nullptr);

// The dense weight a group's input feeds: q/k/v (or gate/up) stacked, [sum out, in].
at::Tensor group_weight(const LayerWeights& L, InputGroup g);

// ||q_a(v) wqᵀ - fp_out||² / ||fp_out||²: the relative output error of the activation quantizer
// `act` (static: with per-tensor scale `scale`) on rows `v` times the quantized weight `wq`.
double relative_site_error(const at::Tensor& v, const at::Tensor& wq, const at::Tensor& fp_out, const ActQuant& act,
                           double scale);

// One site quantized as it will run in two input bases, loop by loop: rows[t] with weight `w_a`,
// and to_b(rows[t]) with `w_b` (the same function in FP). Weights RTN at `w_grid` in each basis;
// static activations take the best per-tensor scale per loop if `per_loop`, else from all loops.
struct BasisErrors {
  std::vector<double> a, b;  // per-loop relative output errors
  double sum_a = 0, sum_b = 0;
};
BasisErrors compare_bases(const std::vector<at::Tensor>& rows, const std::function<at::Tensor(const at::Tensor&)>& to_b,
                          const at::Tensor& w_a, const at::Tensor& w_b, const Grid& w_grid, const ActQuant& act,
                          bool per_loop);

// Chooses and installs the activation parameters of every quantized linear: static scales (when
// act.static_scale) or clip ratios, with `per_loop` one per loop (P = T) or pooled (P = 1).
// Returns P.
int64_t calibrate_activations(OuroModel& model, const ActivationSampler& samples, const ActQuant& act, bool per_loop);

}  // namespace loopq::quant
