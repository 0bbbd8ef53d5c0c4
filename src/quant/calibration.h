#pragma once
// Calibration: run windows of text through the looped model with hooks and stream, per physical
// linear input, the statistics the PTQ methods need: channel absmax, second and fourth moments and
// the Hessian XᵀX. Each is kept per loop and pooled over loops, so the static baselines (pooled)
// and loop-aware methods (per loop) share one pass. Nothing stores activations: memory is
// O(layers x loops x in²) for Hessians, O(layers x loops x in) otherwise.
#include <ATen/ATen.h>

#include <cstdint>
#include <functional>
#include <set>
#include <vector>

#include "model/hooks.h"
#include "model/ouro_model.h"

namespace loopq::quant {

// The four distinct linear inputs of an Ouro layer (q/k/v and gate/up share theirs).
enum class InputGroup { AttnIn = 0, OIn = 1, MlpIn = 2, DownIn = 3 };
constexpr int kNumInputGroups = 4;
InputGroup input_group_of(LinearSite site);
const char* input_group_name(InputGroup g);  // "attn_in", "o_in", "mlp_in", "down_in"
std::vector<LinearSite> sites_of(InputGroup g);

struct InputStats {
  int64_t rows = 0;     // tokens seen
  at::Tensor absmax;    // [in] fp32
  at::Tensor sum_sq;    // [in] fp64: Σ x²
  at::Tensor sum_4;     // [in] fp64: Σ x⁴
  at::Tensor xtx;       // [in, in] fp64: Σ xᵀx (only when Hessians are collected)

  void add(const at::Tensor& x2d, bool hessian);
  void merge(const InputStats& other);
  // GPTQ's Hessian 2/n Σ xᵀx (quantization-reference.md §3.3; the reference's running average
  // over sequences differs only by a constant factor, which GPTQ is invariant to).
  at::Tensor hessian() const;
  at::Tensor kurtosis() const;  // [in] E[x⁴] / E[x²]², fp64
};

struct CalibrationOptions {
  bool hessian = true;             // pooled Hessians (one per input, accumulated directly)
  bool per_loop_hessian = false;   // one Hessian per loop instead, pooled by summing (T x memory)
  // Weight w_t of loop t's rows in the pooled Hessian, Σ_t w_t X_tᵀX_t (empty: all 1).
  std::vector<double> loop_weights;
  // Restrict to these (layer, group) pairs; empty = every layer and group.
  std::set<std::pair<int64_t, InputGroup>> only;
};

class CalibrationCollector final : public LoopHooks {
 public:
  CalibrationCollector(int64_t num_layers, int64_t loops, CalibrationOptions options);
  void on_linear_input(int loop, int layer, LinearSite site, at::Tensor& x) override;

  const InputStats& pooled(int64_t layer, InputGroup g) const;
  const InputStats& per_loop(int64_t loop, int64_t layer, InputGroup g) const;
  int64_t loops() const { return loops_; }
  int64_t num_layers() const { return num_layers_; }

 private:
  bool wanted(int64_t layer, InputGroup g) const;
  int64_t num_layers_, loops_;
  CalibrationOptions options_;
  std::vector<InputStats> per_loop_;  // [loop][layer][group]
  std::vector<at::Tensor> pooled_xtx_;  // [layer][group]: Σ xᵀx over all loops
  mutable std::vector<InputStats> pooled_;  // merged lazily
  mutable bool pooled_ready_ = false;
};

// `n` windows of `seqlen` tokens at random offsets (seeded) from one long token stream, as the
// GPTQ family samples calibration data (§4.3). Returns [n, seqlen] int64.
at::Tensor calibration_windows(const std::vector<int32_t>& ids, int64_t n, int64_t seqlen, uint64_t seed);

// Runs `windows` through the model (all loops, no logits) in batches with `collector` attached.
// `progress(done, total)` is called after each batch.
void run_calibration(const OuroModel& model, const at::Tensor& windows, int64_t loops,
                     CalibrationCollector& collector, int64_t batch_size,
                     const std::function<void(int64_t, int64_t)>& progress = {});

}  // namespace loopq::quant
