#include "quant/gptq_fp_target.h"

#include <ATen/core/grad_mode.h>

#include <cmath>

#include "model/hooks.h"
#include "quant/ptq.h"
#include "util/error.h"

namespace loopq::quant {
namespace {

// The first linear of each group sees the group's input (q/k/v and gate/up share it).
bool group_head(LinearSite site, int layer) {
  return site != LinearSite::LMHead && layer >= 0 && sites_of(input_group_of(site)).front() == site;
}

// The FP model's wanted inputs of one batch, per (loop, layer, group).
class InputRecorder final : public LoopHooks {
 public:
  explicit InputRecorder(const std::set<LayerGroup>& wanted) : wanted_(wanted) {}
  void on_linear_input(int loop, int layer, LinearSite site, at::Tensor& x) override {
    if (!group_head(site, layer)) return;
    const LayerGroup key{layer, input_group_of(site)};
    if (wanted_.count(key)) inputs[{loop, key}] = x.detach();
  }
  std::map<std::pair<int, LayerGroup>, at::Tensor> inputs;

 private:
  const std::set<LayerGroup>& wanted_;
};

class PairedCollector final : public LoopHooks {
 public:
  PairedCollector(const OuroModel& model, const std::set<LayerGroup>& wanted, const ActQuant& act,
                  const std::vector<double>& loop_weights)
      : wanted_(wanted), act_(act), loop_weights_(loop_weights) {
    for (const LayerGroup& key : wanted) {
      const LinearPtr& op = model.weights().layers.at(size_t(key.first)).linear(sites_of(key.second).front());
      rotation_[key] = linear_parts(op).rotation;
    }
  }
  void on_linear_input(int loop, int layer, LinearSite site, at::Tensor& x) override {
    if (!group_head(site, layer)) return;
    const LayerGroup key{layer, input_group_of(site)};
    if (!wanted_.count(key)) return;
    auto fp = fp_->inputs.find({loop, key});
    if (fp == fp_->inputs.end()) throw Error("paired calibration: the FP model did not produce this input");
    const InputRotation& rot = rotation_.at(key);
    const int64_t in = x.size(-1);
    at::Tensor q = prepare_input(x.detach(), rot, act_).reshape({-1, in}).to(at::kDouble);
    const at::Tensor a = rot.apply(fp->second).reshape({-1, in}).to(at::kDouble);
    if (a.size(0) != q.size(0)) throw Error("paired calibration: the two models' inputs differ in shape");
    const double w = size_t(loop) < loop_weights_.size() ? loop_weights_[size_t(loop)] : 1.0;
    PairedInputStats& s = stats[key];
    const at::Tensor qw = w == 1.0 ? q : q * w;
    const at::Tensor qt = qw.t();
    s.hessian = s.hessian.defined() ? s.hessian.addmm_(qt, q) : at::matmul(qt, q);
    s.cross = s.cross.defined() ? s.cross.addmm_(qt, a) : at::matmul(qt, a);
    s.rows += q.size(0);
  }
  void use(const InputRecorder* fp) { fp_ = fp; }
  std::map<LayerGroup, PairedInputStats> stats;

 private:
  const std::set<LayerGroup>& wanted_;
  ActQuant act_;
  std::vector<double> loop_weights_;
  std::map<LayerGroup, InputRotation> rotation_;
  const InputRecorder* fp_ = nullptr;
};

}  // namespace

std::map<LayerGroup, PairedInputStats> paired_calibration(
    const OuroModel& quantized, const OuroModel& fp, const at::Tensor& windows, const std::set<LayerGroup>& wanted,
    const ActQuant& act, const std::vector<double>& loop_weights, int64_t batch_size,
    const std::function<void(int64_t, int64_t)>& progress) {
  if (!windows.defined() || windows.dim() != 2 || windows.size(0) == 0)
    throw Error("paired calibration: no calibration windows");
  if (batch_size < 1) throw Error("paired calibration: batch size must be >= 1");
  at::NoGradGuard no_grad;
  ForwardOptions fo;
  fo.loops = quantized.config().total_ut_steps;
  fo.compute_logits = false;
  PairedCollector collector(quantized, wanted, act, loop_weights);
  const int64_t n = windows.size(0);
  for (int64_t i = 0; i < n; i += batch_size) {
    const at::Tensor ids = windows.narrow(0, i, std::min(batch_size, n - i));
    InputRecorder rec(wanted);
    fo.hooks = &rec;
    fp.forward(ids, fo);
    collector.use(&rec);
    fo.hooks = &collector;
    quantized.forward(ids, fo);
    if (progress) progress(i + ids.size(0), n);
  }
  for (auto& [key, s] : collector.stats) {
    s.hessian.mul_(2.0 / double(s.rows));
    s.cross.mul_(2.0 / double(s.rows));
  }
  for (const LayerGroup& key : wanted)
    if (!collector.stats.count(key)) throw Error("paired calibration: an input was never seen");
  return std::move(collector.stats);
}

at::Tensor fp_target_weight(const at::Tensor& weight, const PairedInputStats& s, double percdamp) {
  const int64_t in = weight.size(1);
  if (weight.dim() != 2 || s.hessian.sizes() != at::IntArrayRef({in, in}) || s.cross.sizes() != s.hessian.sizes())
    throw Error("fp-target GPTQ: the statistics do not match the weight's input size");
  at::Tensor H = s.hessian.clone();
  H.diagonal().add_(percdamp * H.diagonal().mean().item<double>());
  const at::Tensor Wt = weight.to(at::kDouble).t();
  // Vᵀ = Wᵀ + H⁻¹ (C - H̃) Wᵀ, with the undamped H̃ in the difference so that V = W when X̃ = X.
  at::Tensor L = at::linalg_cholesky(H);
  const at::Tensor rhs = at::matmul(s.cross - s.hessian, Wt);
  const at::Tensor delta = at::cholesky_solve(rhs, L, /*upper=*/false);
  const at::Tensor V = (Wt + delta).t().contiguous().to(at::kFloat);
  if (!at::isfinite(V).all().item<bool>()) throw Error("fp-target GPTQ: the target weight is not finite");
  return V;
}

}  // namespace loopq::quant
