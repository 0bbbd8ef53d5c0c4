#include "quant/state_alignment.h"

#include <ATen/core/grad_mode.h>

#include "model/hooks.h"
#include "util/error.h"

namespace loopq::quant {
namespace {

class StateStats final : public LoopHooks {
 public:
  explicit StateStats(int64_t loops) : sum_(size_t(loops)), sq_(size_t(loops)), n_(size_t(loops), 0) {}
  void on_loop_state(int loop, at::Tensor& state) override {
    const at::Tensor s = state.detach().reshape({-1, state.size(-1)}).to(at::kDouble);
    auto acc = [](at::Tensor& a, const at::Tensor& v) { a = a.defined() ? a + v : v; };
    acc(sum_[size_t(loop)], s.sum(0));
    acc(sq_[size_t(loop)], (s * s).sum(0));
    n_[size_t(loop)] += double(s.size(0));
  }
  ChannelMoments moments(int64_t t) const {
    const double n = n_[size_t(t)];
    if (n == 0) throw Error("state alignment: no calibration states");
    at::Tensor mean = sum_[size_t(t)] / n;
    at::Tensor var = (sq_[size_t(t)] / n - mean * mean).clamp_min(0);
    return {mean, var.sqrt()};
  }

 private:
  std::vector<at::Tensor> sum_, sq_;
  std::vector<double> n_;
};

}  // namespace

std::vector<ChannelMoments> state_moments(const OuroModel& model, const at::Tensor& windows, int64_t loops,
                                          int64_t batch_size) {
  at::NoGradGuard no_grad;
  StateStats stats(loops);
  ForwardOptions fo;
  fo.loops = loops;
  fo.compute_logits = false;
  fo.hooks = &stats;
  for (int64_t i = 0; i < windows.size(0); i += batch_size)
    model.forward(windows.narrow(0, i, std::min(batch_size, windows.size(0) - i)), fo);
  std::vector<ChannelMoments> out;
  for (int64_t t = 0; t < loops; ++t) out.push_back(stats.moments(t));
  return out;
}

namespace {

// Moments of all loops' states taken together (equal token counts per loop).
ChannelMoments pooled(const std::vector<ChannelMoments>& per_loop) {
  at::Tensor mean = at::zeros_like(per_loop[0].mean), sq = at::zeros_like(mean);
  for (const auto& m : per_loop) mean += m.mean, sq += m.std * m.std + m.mean * m.mean;
  mean /= double(per_loop.size()), sq /= double(per_loop.size());
  return {mean, (sq - mean * mean).clamp_min(0).sqrt()};
}

// Per-loop alignment in one forward over every window at once: when loop t's state arrives, its
// moments over all windows are complete, so the correction is fitted there, folded into loop t's
// parameters and applied to the state that feeds loop t + 1 (the same fit as running loops <= t
// again with the new parameters, up to rounding).
class AligningHook final : public LoopHooks {
 public:
  AligningHook(OuroWeights& w, const std::vector<ChannelMoments>& target) : w_(w), target_(target) {}
  void on_loop_state(int loop, at::Tensor& state) override {
    if (size_t(loop) >= target_.size()) return;
    const at::Tensor s = state.reshape({-1, state.size(-1)}).to(at::kDouble);
    const at::Tensor mean = s.mean(0);
    const at::Tensor std = (s.pow(2).mean(0) - mean * mean).clamp_min(0).sqrt();
    const ChannelMoments& want = target_[size_t(loop)];
    const at::Tensor a = at::where(std > 1e-8, want.std / std.clamp_min(1e-8), at::ones_like(std));
    const at::Tensor b = want.mean - a * mean;
    // a * (w ⊙ n + b0) + b = (a ⊙ w) ⊙ n + (a * b0 + b)
    const at::Tensor af = a.to(w_.state_weight.options()), bf = b.to(w_.state_weight.options());
    w_.state_bias[loop].copy_(w_.state_bias[loop] * af + bf);
    w_.state_weight[loop].copy_(w_.state_weight[loop] * af);
    state = state * af + bf;
  }

 private:
  OuroWeights& w_;
  const std::vector<ChannelMoments>& target_;
};

}  // namespace

void align_states(OuroModel& model, const OuroModel& reference, const at::Tensor& windows, int64_t batch_size,
                  bool per_loop) {
  const int64_t T = model.config().total_ut_steps, P = per_loop ? T : 1;
  OuroWeights& w = model.weights();
  if (!w.state_weight.defined()) w.state_weight = w.final_norm.unsqueeze(0).repeat({P, 1}).contiguous();
  if (!w.state_bias.defined()) w.state_bias = at::zeros_like(w.state_weight);
  if (w.state_weight.size(0) != P || w.state_bias.size(0) != P)
    throw Error("align_states: the model's state parameters have the wrong number of sets");
  std::vector<ChannelMoments> target = state_moments(reference, windows, T, batch_size);
  if (!per_loop) target = {pooled(target)};
  at::NoGradGuard no_grad;
  if (per_loop) {
    AligningHook hook(w, target);
    ForwardOptions fo;
    fo.loops = T;
    fo.compute_logits = false;
    fo.hooks = &hook;
    model.forward(windows, fo);
    return;
  }
  for (int64_t t = 0; t < P; ++t) {
    const ChannelMoments now = pooled(state_moments(model, windows, T, batch_size));
    const at::Tensor a = at::where(now.std > 1e-8, target[size_t(t)].std / now.std.clamp_min(1e-8),
                                   at::ones_like(now.std));
    const at::Tensor b = target[size_t(t)].mean - a * now.mean;
    // a * (w ⊙ n + b0) + b = (a ⊙ w) ⊙ n + (a * b0 + b)
    const at::Tensor af = a.to(w.state_weight.options()), bf = b.to(w.state_weight.options());
    w.state_bias[t].copy_(w.state_bias[t] * af + bf);
    w.state_weight[t].copy_(w.state_weight[t] * af);
  }
}

}  // namespace loopq::quant
