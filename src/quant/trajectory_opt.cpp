#include "quant/trajectory_opt.h"

#include <ATen/core/grad_mode.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <random>

#include "model/hooks.h"
#include "quant/packed_snapshot.h"
#include "quant/quant_linear.h"
#include "util/error.h"

namespace loopq::quant {
namespace {

// The FP model's layer inputs and outputs, per (loop, layer).
class LayerRecorder final : public LoopHooks {
 public:
  explicit LayerRecorder(int64_t layers) : layers_(layers) {}
  void on_layer_input(int loop, int layer, at::Tensor& x) override { slot(in, loop, layer) = x.detach(); }
  void on_layer_output(int loop, int layer, at::Tensor& x) override { slot(out, loop, layer) = x.detach(); }
  at::Tensor& slot(std::vector<at::Tensor>& v, int loop, int layer) {
    const size_t i = size_t(loop * layers_ + layer);
    if (v.size() <= i) v.resize(i + 1);
    return v[i];
  }
  std::vector<at::Tensor> in, out;

 private:
  int64_t layers_;
};

// Feeds every layer the FP input recorded for it and keeps the quantized layer's output.
class TeacherForcing final : public LoopHooks {
 public:
  TeacherForcing(LayerRecorder& fp, int64_t layers) : fp_(fp), out_(layers) {}
  void on_layer_input(int loop, int layer, at::Tensor& x) override { x = fp_.slot(fp_.in, loop, layer); }
  void on_layer_output(int loop, int layer, at::Tensor& x) override { out_.slot(out_.out, loop, layer) = x; }
  const std::vector<at::Tensor>& outputs() const { return out_.out; }

 private:
  LayerRecorder& fp_;
  LayerRecorder out_;
};

double loop_weight(const TrajectoryOptions& o, size_t t) { return t < o.loop_weights.size() ? o.loop_weights[t] : 1.0; }

at::Tensor relative_error(const at::Tensor& a, const at::Tensor& b) {
  return (a - b).pow(2).sum() / b.pow(2).sum().clamp_min(1e-30);
}

// The FP reference's trajectory (states and final log-probabilities) of one calibration window,
// computed once: the reference never changes while the quantized model learns.
struct FpTrajectory {
  std::vector<at::Tensor> states;
  at::Tensor logprobs;
};

FpTrajectory fp_trajectory(const OuroModel& reference, const at::Tensor& ids, bool logits) {
  at::NoGradGuard no_grad;
  ForwardOptions fo;
  fo.loops = reference.config().total_ut_steps;
  fo.compute_logits = logits;
  ForwardResult r = reference.forward(ids, fo);
  return {r.states, logits ? at::log_softmax(r.logits.to(at::kFloat), -1) : at::Tensor()};
}

at::Tensor loss_on(const OuroModel& model, const OuroModel& reference, const at::Tensor& ids,
                   const TrajectoryOptions& o, const FpTrajectory* cached = nullptr) {
  const int64_t T = model.config().total_ut_steps, N = model.config().num_layers;
  ForwardOptions fo;
  fo.loops = T;
  if (o.trajectory) {
    fo.compute_logits = o.kl_weight > 0;
    const FpTrajectory fp = cached ? *cached : fp_trajectory(reference, ids, fo.compute_logits);
    ForwardResult q = model.forward(ids, fo);
    at::Tensor loss = at::zeros({}, q.states[0].options());
    for (int64_t t = 0; t < T; ++t)
      loss = loss + loop_weight(o, size_t(t)) * relative_error(q.states[size_t(t)], fp.states[size_t(t)]);
    if (o.kl_weight > 0) {
      const at::Tensor& lp_fp = fp.logprobs;
      const at::Tensor lp_q = at::log_softmax(q.logits.to(at::kFloat), -1);
      const at::Tensor kl = (lp_fp.exp() * (lp_fp - lp_q)).sum(-1).mean();
      loss = loss + o.kl_weight * kl;
    }
    return loss;
  }
  fo.compute_logits = false;
  LayerRecorder rec(N);
  {
    at::NoGradGuard no_grad;
    fo.hooks = &rec;
    reference.forward(ids, fo);
  }
  TeacherForcing tf(rec, N);
  fo.hooks = &tf;
  model.forward(ids, fo);
  at::Tensor loss;
  for (int64_t t = 0; t < T; ++t)
    for (int64_t l = 0; l < N; ++l) {
      const size_t i = size_t(t * N + l);
      at::Tensor e = loop_weight(o, size_t(t)) * relative_error(tf.outputs().at(i), rec.out.at(i));
      loss = loss.defined() ? loss + e : e;
    }
  return loss;
}

struct Learned {
  at::Tensor t;
  double step;       // Adam step size for this tensor
  double lo, hi;     // kept within [lo, hi] after each step
  at::Tensor m, v;
  at::Tensor identity;  // the value that makes this parameter a no-op on the backbone
};

}  // namespace

double readout_nll(const OuroModel& model, const at::Tensor& windows) {
  if (!windows.defined() || windows.dim() != 2 || windows.size(0) == 0 || windows.size(1) < 2)
    throw Error("optimize: the validation windows must be [n >= 1, seqlen >= 2]");
  at::NoGradGuard no_grad;
  ForwardOptions fo;
  fo.loops = model.config().total_ut_steps;
  fo.compute_logits = true;
  const int64_t S = windows.size(1);
  double nll = 0;
  for (int64_t w = 0; w < windows.size(0); ++w) {
    const at::Tensor ids = windows.narrow(0, w, 1);
    const ForwardResult r = model.forward(ids, fo);
    const at::Tensor lp = at::log_softmax(r.logits[0].narrow(0, 0, S - 1).to(at::kDouble), -1);
    const at::Tensor targets = ids[0].narrow(0, 1, S - 1).to(lp.device(), at::kLong).unsqueeze(1);
    nll -= lp.gather(1, targets).sum().item<double>();
  }
  return nll / double(windows.size(0) * (S - 1));
}

double adaptation_loss(const OuroModel& model, const OuroModel& reference, const at::Tensor& ids,
                       const TrajectoryOptions& options) {
  at::NoGradGuard no_grad;
  return loss_on(model, reference, ids, options).item<double>();
}

TrajectoryReport optimize_adaptations(OuroModel& model, const OuroModel& reference, const at::Tensor& windows,
                                      const std::vector<std::vector<at::Tensor>>& fp_weights,
                                      const TrajectoryOptions& o) {
  if (o.steps < 0 || o.batch < 1 || o.seqlen < 2) throw Error("optimize: steps >= 0, batch >= 1, seqlen >= 2");
  if (!(o.lr > 0) || !(o.kl_weight >= 0)) throw Error("optimize: lr must be positive and the KL weight >= 0");
  if (windows.size(0) == 0) throw Error("optimize: no calibration windows");
  // Every calibration token is used: windows longer than the step's sequence length are cut into
  // whole pieces of that length (a remainder shorter than one piece is dropped).
  const int64_t S = std::min<int64_t>(o.seqlen, windows.size(1)), per_window = windows.size(1) / S;
  const at::Tensor pieces = windows.narrow(1, 0, per_window * S).reshape({windows.size(0) * per_window, S});
  const int64_t n = pieces.size(0);
  if (!o.valid_ids.empty() && o.valid_every < 1) throw Error("optimize: the validation interval must be >= 1 step");
  if (o.patience < 0) throw Error("optimize: the patience must be >= 0 checkpoints");
  if (!o.valid_ids.empty() && (o.valid_seqlen < 2 || int64_t(o.valid_ids.size()) % o.valid_seqlen != 0))
    throw Error("optimize: the validation ids are not whole windows of >= 2 tokens");
  const at::Tensor valid_windows =
      o.valid_ids.empty() ? at::Tensor()
                          : at::tensor(o.valid_ids, at::kLong).view({-1, o.valid_seqlen}).to(model.device());
  at::AutoGradMode grad_on(true);
  TrajectoryReport report;
  std::vector<Learned> params;
  // `identity`: the parameter's no-op value (undefined: its starting value, e.g. calibrated
  // static scales, which the backbone has too).
  auto learn = [&](at::Tensor& t, double rel, double lo, double hi, const at::Tensor& identity) {
    if (!t.defined()) return;
    t = t.detach().clone().set_requires_grad(true);
    const double mag = rel > 0 ? std::max(t.abs().mean().item<double>(), 1e-6) : 1.0;
    params.push_back({t, o.lr * (rel > 0 ? rel * mag : -rel), lo, hi, at::zeros_like(t), at::zeros_like(t),
                      identity.defined() ? identity.expand_as(t).clone() : t.detach().clone()});
    report.parameters += t.numel();
  };
  std::vector<QuantLinear*> linears;
  auto& layers = model.weights().layers;
  for (size_t l = 0; l < layers.size(); ++l)
    for (int s = 0; s < kNumLayerSites; ++s) {
      auto* q = dynamic_cast<QuantLinear*>(layers[l].linear(LinearSite(s)).get());
      if (!q) throw Error("optimize: layer linears must be quantized first");
      linears.push_back(q);
      SiteAdaptation& a = q->adaptation();
      // Positive tensors move relative to their size; biases in absolute units.
      const at::Tensor one = at::ones({}, at::kFloat), zero = at::zeros({}, at::kFloat);
      learn(a.act_scale, 1.0, 1e-8, INFINITY, at::Tensor());
      learn(a.act_clip, 1.0, 0.05, 1.0, at::full({}, q->act().clip, at::kFloat));
      learn(a.out_scale, 1.0, -INFINITY, INFINITY, one);
      learn(a.out_bias, -0.1, -INFINITY, INFINITY, zero);
      // With fixed (GPTQ) codes the factor only rescales each row, which a per-loop output scale
      // could too; it stays, since it is shared over loops and, measured, learns much faster
      // (tests/model/test_loopq.cpp: objective 1.83 -> 1.58 with it, -> 1.81 without, 12 steps).
      if (o.learn_weight_clipping) {
        at::Tensor fp = o.rtn_backbone ? fp_weights.at(l).at(size_t(s)) : at::Tensor();
        at::Tensor g = q->begin_weight_learning(fp, o.learn_weights);
        params.push_back({g, o.lr, 0.5, 1.5, at::zeros_like(g), at::zeros_like(g), at::ones_like(g)});
        report.parameters += g.numel();
        if (o.learn_weights) {
          // Steps in units of the mean quantization step; the no-op value is the starting weight.
          const at::Tensor& w = q->learned_weight_source();
          const double qstep = q->weight().params.scale.abs().mean().item<double>();
          params.push_back({w, o.weight_lr * qstep, -INFINITY, INFINITY, at::zeros_like(w), at::zeros_like(w),
                            w.detach().clone()});
          report.parameters += w.numel();
        }
      } else if (o.learn_weights) {
        throw Error("optimize: learning the weights needs learned weight clipping");
      }
    }
  learn(model.weights().state_weight, 1.0, -INFINITY, INFINITY, model.weights().final_norm.detach().to(at::kFloat));
  learn(model.weights().state_bias, -0.1, -INFINITY, INFINITY, at::zeros({}, at::kFloat));
  for (auto& p : params) p.identity = p.identity.to(p.t.device(), p.t.scalar_type());

  // Deterministic batch order: a seeded shuffle of the windows, reshuffled each epoch.
  std::mt19937_64 rng(o.seed);
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), rng);
  size_t cursor = 0;
  const double b1 = 0.9, b2 = 0.999, eps = 1e-12;
  // Cache the FP trajectory of every window when it fits in ~1 GB (states + log-probabilities).
  const int64_t T = model.config().total_ut_steps;
  const double per_piece = double(S) * (double(T) * double(model.config().hidden_size) +
                                        (o.kl_weight > 0 ? double(model.config().vocab_size) : 0.0)) * 4;
  const bool cache = o.trajectory && per_piece * double(n) < 1e9;
  std::vector<FpTrajectory> fp_cache(cache ? static_cast<size_t>(n) : 0);

  // Validation guard: a checkpoint is the valid NLL after `step` updates; the best one's
  // parameters are kept (copies of every learned tensor, a few hundred KB).
  const bool guard = valid_windows.defined();
  const bool packed_guard = guard && why_no_packed_snapshot(model).empty();
  std::vector<at::Tensor> best;
  auto score = [&]() {
    // Scored as the file will store the model: output affines in fp16 (round_output_affines).
    // That rounding alone can move a small model's NLL noticeably, so the kept checkpoint's
    // recorded loss is exactly the saved model's.
    std::vector<std::pair<at::Tensor, at::Tensor>> fp32;
    {
      at::NoGradGuard no_grad;
      for (auto* q : linears)
        for (at::Tensor* t : {&q->adaptation().out_scale, &q->adaptation().out_bias})
          if (t->defined()) {
            fp32.push_back({*t, t->detach().clone()});
            t->detach().copy_(t->detach().to(at::kHalf).to(at::kFloat));
          }
    }
    // On the packed kernels where they run the model: the same NLL bit for bit, sooner.
    const double v = packed_guard ? readout_nll(packed_snapshot(model), valid_windows) : readout_nll(model, valid_windows);
    {
      at::NoGradGuard no_grad;
      for (auto& [t, keep] : fp32) t.detach().copy_(keep);
    }
    return v;
  };
  auto keep_if_better = [&](double v) {
    const bool none_yet = report.chosen_step < 0 && !report.chosen_backbone;
    if (!std::isfinite(v) || !(none_yet || v < report.chosen_valid_loss)) return false;
    at::NoGradGuard no_grad;
    report.chosen_valid_loss = v;
    best.clear();
    for (const auto& p : params) best.push_back(p.t.detach().clone());
    return true;
  };
  int64_t stale = 0;  // checkpoints after updates in a row that beat no earlier candidate
  auto checkpoint = [&](int64_t step) {
    const double v = score();
    report.valid_steps.push_back(step);
    report.valid_loss.push_back(v);
    const bool better = keep_if_better(v);
    if (better) report.chosen_step = step, report.chosen_backbone = false;
    if (step > 0) stale = better ? 0 : stale + 1;
    if (o.progress)
      std::fprintf(stderr, "optimize: valid NLL after %lld steps %.6f (ppl %.3f)%s\n", (long long)step, v, std::exp(v),
                   better ? " best" : "");
  };
  if (guard) {
    // The first candidate is the unlearned backbone itself: every parameter at its no-op value
    // (output affines and state alignment off, clip ratios at the quantizer's). So the pass never
    // ends worse on valid than the backbone the earlier closed-form passes started from.
    std::vector<at::Tensor> start;
    {
      at::NoGradGuard no_grad;
      for (auto& p : params) start.push_back(p.t.detach().clone()), p.t.detach().copy_(p.identity);
    }
    const double v = score();
    report.backbone_valid_loss = v;
    report.chosen_backbone = keep_if_better(v);
    if (o.progress)
      std::fprintf(stderr, "optimize: valid NLL of the backbone (no adaptation) %.6f (ppl %.3f)\n", v, std::exp(v));
    at::NoGradGuard no_grad;
    for (size_t i = 0; i < params.size(); ++i) params[i].t.detach().copy_(start[i]);
  }
  for (int64_t step = 0; step < o.steps; ++step) {
    if (guard && step % o.valid_every == 0) {
      checkpoint(step);
      if (o.patience > 0 && stale >= o.patience) {
        report.stopped = "no better valid NLL in " + std::to_string(stale) + " checkpoint" + (stale > 1 ? "s" : "") +
                         " (patience), after " + std::to_string(step) + " steps";
        if (o.progress) std::fprintf(stderr, "optimize: stopping early: %s\n", report.stopped.c_str());
        break;
      }
    }
    std::vector<int64_t> pick;
    for (int64_t b = 0; b < std::min(o.batch, n); ++b) {
      if (cursor == order.size()) std::shuffle(order.begin(), order.end(), rng), cursor = 0;
      pick.push_back(order[cursor++]);
    }
    const at::Tensor ids = pieces.index_select(0, at::tensor(pick, at::kLong).to(pieces.device()));
    for (auto& p : params)
      if (p.t.grad().defined()) p.t.mutable_grad().zero_();
    FpTrajectory batch_fp;
    if (cache) {  // assemble the batch's FP trajectory from the per-window cache
      std::vector<std::vector<at::Tensor>> st(static_cast<size_t>(T));
      std::vector<at::Tensor> lp;
      for (int64_t w : pick) {
        FpTrajectory& c = fp_cache[size_t(w)];
        if (c.states.empty()) c = fp_trajectory(reference, pieces.narrow(0, w, 1), o.kl_weight > 0);
        for (int64_t t = 0; t < T; ++t) st[size_t(t)].push_back(c.states[size_t(t)]);
        if (c.logprobs.defined()) lp.push_back(c.logprobs);
      }
      for (int64_t t = 0; t < T; ++t) batch_fp.states.push_back(at::cat(st[size_t(t)], 0));
      if (!lp.empty()) batch_fp.logprobs = at::cat(lp, 0);
    }
    at::Tensor loss = loss_on(model, reference, ids, o, cache ? &batch_fp : nullptr);
    if (!std::isfinite(loss.item<double>())) {
      if (!guard) throw Error("optimize: the loss became non-finite at step " + std::to_string(step));
      report.stopped = "the training loss became non-finite at step " + std::to_string(step);
      if (o.progress) std::fprintf(stderr, "optimize: %s; keeping the best checkpoint\n", report.stopped.c_str());
      break;
    }
    report.loss.push_back(loss.item<double>());
    loss.backward();
    at::NoGradGuard no_grad;
    const double c1 = 1 - std::pow(b1, double(step + 1)), c2 = 1 - std::pow(b2, double(step + 1));
    for (auto& p : params) {
      if (!p.t.grad().defined()) continue;
      const at::Tensor g = p.t.grad();
      p.m.mul_(b1).add_(g, 1 - b1);
      p.v.mul_(b2).addcmul_(g, g, 1 - b2);
      p.t.sub_(p.step * (p.m / c1) / ((p.v / c2).sqrt() + eps));
      if (std::isfinite(p.lo) || std::isfinite(p.hi)) p.t.clamp_(p.lo, p.hi);
    }
    report.steps_run = step + 1;
    if (o.progress && (step % 10 == 0 || step + 1 == o.steps))
      std::fprintf(stderr, "optimize: step %lld/%lld loss %.6f\n", (long long)step + 1, (long long)o.steps, report.loss.back());
  }
  at::NoGradGuard no_grad;
  if (guard) {
    if (report.stopped.empty() && (report.valid_steps.empty() || report.valid_steps.back() != report.steps_run))
      checkpoint(report.steps_run);
    if (report.chosen_step < 0 && !report.chosen_backbone) throw Error("optimize: every validation loss was non-finite");
    for (size_t i = 0; i < params.size(); ++i) params[i].t.copy_(best[i]);
    if (o.progress && report.chosen_backbone)
      std::fprintf(stderr, "optimize: keeping the backbone without adaptations (valid NLL %.6f)\n",
                   report.chosen_valid_loss);
    else if (o.progress)
      std::fprintf(stderr, "optimize: keeping the parameters after %lld of %lld steps (valid NLL %.6f)\n",
                   (long long)report.chosen_step, (long long)report.steps_run, report.chosen_valid_loss);
  }
  for (auto* q : linears) {
    q->end_weight_learning();
    SiteAdaptation& a = q->adaptation();
    for (at::Tensor* t : {&a.act_scale, &a.act_clip, &a.out_scale, &a.out_bias})
      if (t->defined()) *t = t->detach();
  }
  for (at::Tensor* t : {&model.weights().state_weight, &model.weights().state_bias})
    if (t->defined()) *t = t->detach();
  return report;
}

}  // namespace loopq::quant
