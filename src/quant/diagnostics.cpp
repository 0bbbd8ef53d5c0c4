#include "quant/diagnostics.h"

#include <ATen/core/grad_mode.h>

#include <cmath>

#include "model/hooks.h"
#include "quant/quant_linear.h"
#include "util/error.h"

namespace loopq::quant {
namespace {

// Signal and quantization-noise energy of every quantized linear's input, per loop.
class SqnrProbe final : public LoopHooks {
 public:
  SqnrProbe(const OuroModel& m, int64_t loops)
      : model_(m), loops_(loops), sig_(size_t(m.config().num_layers * kNumLayerSites * loops), 0.0),
        noise_(sig_.size(), 0.0) {}
  void on_linear_input(int loop, int layer, LinearSite site, at::Tensor& x) override {
    if (layer < 0) return;
    const auto* q = dynamic_cast<const QuantLinear*>(model_.weights().layers[size_t(layer)].linear(site).get());
    if (!q || !q->act().enabled()) return;
    const at::Tensor y = q->rotation().apply(x.to(at::kFloat));
    const at::Tensor e = quantize_input(y, q->act(), &q->adaptation(), loop) - y;
    const size_t i = index(layer, site, loop);
    sig_[i] += y.pow(2).sum().item<double>();
    noise_[i] += e.pow(2).sum().item<double>();
  }
  double sqnr_db(int64_t layer, LinearSite site, int64_t loop) const {
    const size_t i = index(layer, site, loop);
    if (sig_[i] == 0 && noise_[i] == 0) return INFINITY;  // not quantized
    return noise_[i] > 0 ? 10 * std::log10(sig_[i] / noise_[i]) : INFINITY;
  }

 private:
  size_t index(int64_t layer, LinearSite site, int64_t loop) const {
    return size_t((layer * kNumLayerSites + int(site)) * loops_ + loop);
  }
  const OuroModel& model_;
  int64_t loops_;
  std::vector<double> sig_, noise_;
};

}  // namespace

Diagnostics diagnose(const OuroModel& model, const OuroModel& reference, const at::Tensor& windows) {
  if (windows.dim() != 2 || windows.size(1) < 2) throw Error("diagnose: windows must be [n, seqlen >= 2]");
  if (model.config().vocab_size != reference.config().vocab_size ||
      model.config().hidden_size != reference.config().hidden_size)
    throw Error("diagnose: the model and the reference have different shapes");
  at::NoGradGuard no_grad;
  const int64_t T = model.config().total_ut_steps, n = windows.size(0), S = windows.size(1);
  Diagnostics d;
  d.windows = n, d.seqlen = S, d.tokens = n * (S - 1);
  std::vector<double> err(size_t(T), 0), ref(size_t(T), 0), kl(size_t(T), 0), nll(size_t(T), 0),
      nll_ref(size_t(T), 0), agree(size_t(T), 0);
  SqnrProbe probe(model, T);
  ForwardOptions fo;
  fo.loops = T;
  fo.loop_logits = true;
  for (int64_t w = 0; w < n; ++w) {
    const at::Tensor ids = windows.narrow(0, w, 1);
    ForwardResult fp = reference.forward(ids, fo);
    fo.hooks = &probe;
    ForwardResult q = model.forward(ids, fo);
    fo.hooks = nullptr;
    const at::Tensor targets = ids.narrow(1, 1, S - 1).reshape({-1});
    for (int64_t t = 0; t < T; ++t) {
      err[size_t(t)] += (q.states[size_t(t)] - fp.states[size_t(t)]).pow(2).sum().item<double>();
      ref[size_t(t)] += fp.states[size_t(t)].pow(2).sum().item<double>();
      // Readouts at positions 0..S-2 predict tokens 1..S-1, in fp64 for the log-softmax.
      const at::Tensor lf = at::log_softmax(fp.loop_logits[size_t(t)].narrow(1, 0, S - 1).reshape({S - 1, -1}).to(at::kDouble), -1);
      const at::Tensor lq = at::log_softmax(q.loop_logits[size_t(t)].narrow(1, 0, S - 1).reshape({S - 1, -1}).to(at::kDouble), -1);
      kl[size_t(t)] += (lf.exp() * (lf - lq)).sum().item<double>();
      nll[size_t(t)] -= lq.gather(1, targets.unsqueeze(1)).sum().item<double>();
      nll_ref[size_t(t)] -= lf.gather(1, targets.unsqueeze(1)).sum().item<double>();
      agree[size_t(t)] += (std::get<1>(lq.max(1)) == std::get<1>(lf.max(1))).sum().item<double>();
    }
  }
  for (int64_t t = 0; t < T; ++t) {
    LoopDiagnostics ld;
    ld.relative_state_error = std::sqrt(err[size_t(t)] / std::max(ref[size_t(t)], 1e-300));
    ld.kl = kl[size_t(t)] / double(d.tokens);
    ld.ppl = std::exp(nll[size_t(t)] / double(d.tokens));
    ld.ppl_reference = std::exp(nll_ref[size_t(t)] / double(d.tokens));
    ld.top1_agreement = agree[size_t(t)] / double(d.tokens);
    d.per_loop.push_back(ld);
  }
  for (int64_t l = 0; l < model.config().num_layers; ++l)
    for (int s = 0; s < kNumLayerSites; ++s) {
      SiteSqnr ss{l, LinearSite(s), {}};
      for (int64_t t = 0; t < T; ++t) ss.sqnr_db.push_back(probe.sqnr_db(l, LinearSite(s), t));
      d.sites.push_back(ss);
    }
  return d;
}

}  // namespace loopq::quant
