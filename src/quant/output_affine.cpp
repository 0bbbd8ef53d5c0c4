#include "quant/output_affine.h"

#include <ATen/core/grad_mode.h>

#include "quant/ptq.h"
#include "util/error.h"

namespace loopq::quant {
namespace {

struct Moments {
  double n = 0;
  at::Tensor y, t, yy, yt;  // [out] fp64
  void add(const at::Tensor& yq, const at::Tensor& target) {
    const at::Tensor a = yq.reshape({-1, yq.size(-1)}).to(at::kDouble);
    const at::Tensor b = target.reshape({-1, target.size(-1)}).to(at::kDouble);
    n += double(a.size(0));
    auto acc = [](at::Tensor& s, const at::Tensor& v) { s = s.defined() ? s + v : v; };
    acc(y, a.sum(0)), acc(t, b.sum(0)), acc(yy, (a * a).sum(0)), acc(yt, (a * b).sum(0));
  }
};

// Pairs each linear's FP target (computed at its input) with its quantized output.
class AffineCollector final : public LoopHooks {
 public:
  AffineCollector(const OuroModel& m, const std::vector<std::vector<at::Tensor>>& w, int64_t loops)
      : model_(m), fp_(w), loops_(loops), moments_(size_t(loops * m.config().num_layers * kNumLayerSites)) {}
  void on_linear_input(int, int layer, LinearSite site, at::Tensor& x) override {
    if (layer < 0) return;
    const LinearParts parts = linear_parts(model_.weights().layers[size_t(layer)].linear(site));
    pending_ = at::linear(parts.rotation.apply(x.to(at::kFloat)), fp_[size_t(layer)][size_t(site)]);
  }
  void on_linear_output(int loop, int layer, LinearSite site, at::Tensor& y) override {
    if (layer < 0) return;
    slot(loop, layer, site).add(y, pending_);
    pending_ = at::Tensor();
  }
  Moments& slot(int64_t loop, int64_t layer, LinearSite s) {
    return moments_[size_t((loop * model_.config().num_layers + layer) * kNumLayerSites + int(s))];
  }

 private:
  const OuroModel& model_;
  const std::vector<std::vector<at::Tensor>>& fp_;
  int64_t loops_;
  std::vector<Moments> moments_;
  at::Tensor pending_;
};

}  // namespace

std::pair<at::Tensor, at::Tensor> least_squares_affine(double n, const at::Tensor& sy, const at::Tensor& st,
                                                       const at::Tensor& syy, const at::Tensor& syt) {
  const at::Tensor var = syy - sy * sy / n;  // n * Var(y)
  const at::Tensor cov = syt - sy * st / n;  // n * Cov(y, t)
  const at::Tensor flat = var <= 1e-12 * syy.clamp_min(1e-300);
  const at::Tensor c = at::where(flat, at::ones_like(var), cov / var.clamp_min(1e-300));
  const at::Tensor b = (st - c * sy) / n;
  return {c, b};
}

int64_t fit_output_affine(OuroModel& model, const std::vector<std::vector<at::Tensor>>& fp_weights,
                          const at::Tensor& windows, int64_t batch_size, bool per_loop) {
  at::NoGradGuard no_grad;
  const int64_t T = model.config().total_ut_steps, N = model.config().num_layers;
  AffineCollector collector(model, fp_weights, T);
  ForwardOptions fo;
  fo.loops = T;
  fo.compute_logits = false;
  fo.hooks = &collector;
  for (int64_t i = 0; i < windows.size(0); i += batch_size)
    model.forward(windows.narrow(0, i, std::min(batch_size, windows.size(0) - i)), fo);
  const int64_t P = per_loop ? T : 1;
  for (int64_t l = 0; l < N; ++l)
    for (int s = 0; s < kNumLayerSites; ++s) {
      auto* q = dynamic_cast<QuantLinear*>(model.weights().layers[size_t(l)].linear(LinearSite(s)).get());
      if (!q) throw Error("fit_output_affine: layer linears must be quantized first");
      std::vector<at::Tensor> cs, bs;
      for (int64_t p = 0; p < P; ++p) {
        Moments m;
        for (int64_t t = 0; t < T; ++t) {
          if (per_loop && t != p) continue;
          const Moments& mt = collector.slot(t, l, LinearSite(s));
          if (mt.n == 0) throw Error("fit_output_affine: no calibration rows reached a linear");
          if (!m.y.defined()) m = Moments{mt.n, mt.y.clone(), mt.t.clone(), mt.yy.clone(), mt.yt.clone()};
          else m.n += mt.n, m.y += mt.y, m.t += mt.t, m.yy += mt.yy, m.yt += mt.yt;
        }
        auto [c, b] = least_squares_affine(m.n, m.y, m.t, m.yy, m.yt);
        cs.push_back(c.to(at::kFloat)), bs.push_back(b.to(at::kFloat));
      }
      q->adaptation().out_scale = at::stack(cs, 0);
      q->adaptation().out_bias = at::stack(bs, 0);
    }
  return P;
}

}  // namespace loopq::quant
