#include "quant/act_calibration.h"

#include <ATen/core/grad_mode.h>

#include <cmath>

#include "quant/ptq.h"
#include "util/error.h"

namespace loopq::quant {

ActivationSampler::ActivationSampler(const OuroModel& model, int64_t loops, int64_t rows_per_call)
    : model_(model), loops_(loops), rows_per_call_(rows_per_call),
      chunks_(size_t(loops * model.config().num_layers * kNumInputGroups)) {
  if (rows_per_call < 1) throw Error("ActivationSampler: rows_per_call must be positive");
}

void ActivationSampler::on_linear_input(int loop, int layer, LinearSite site, at::Tensor& x) {
  if (site == LinearSite::LMHead || layer < 0) return;
  const InputGroup g = input_group_of(site);
  if (sites_of(g).front() != site) return;  // q/k/v and gate/up share one input
  if (loop >= loops_) throw Error("ActivationSampler: loop index beyond the sampler's loop count");
  const at::Tensor x2d = x.detach().reshape({-1, x.size(-1)});
  const int64_t n = x2d.size(0), k = std::min(n, rows_per_call_);
  // Evenly spaced rows (every position of a window is represented), shifted per call.
  const int64_t stride = n / k, shift = (calls_++ * 7919) % std::max<int64_t>(stride, 1);
  at::Tensor idx = at::arange(k, at::TensorOptions().dtype(at::kLong).device(x2d.device())) * stride + shift;
  const LinearParts parts = linear_parts(model_.weights().layers[size_t(layer)].linear(site));
  at::Tensor rows = parts.rotation.apply(x2d.index_select(0, idx).to(at::kFloat));
  chunks_[size_t((loop * model_.config().num_layers + layer) * kNumInputGroups + int(g))].push_back(rows);
}

at::Tensor ActivationSampler::rows(int64_t loop, int64_t layer, InputGroup g) const {
  std::vector<at::Tensor> all;
  for (int64_t t = 0; t < loops_; ++t) {
    if (loop >= 0 && t != loop) continue;
    const auto& c = chunks_.at(size_t((t * model_.config().num_layers + layer) * kNumInputGroups + int(g)));
    all.insert(all.end(), c.begin(), c.end());
  }
  if (all.empty()) throw Error("ActivationSampler: no rows were sampled for this input");
  return at::cat(all, 0);
}

ActivationSampler sample_activations(const OuroModel& model, const at::Tensor& windows, int64_t rows_per_site,
                                     int64_t batch_size) {
  const int64_t T = model.config().total_ut_steps, n = windows.size(0);
  const int64_t calls = (n + batch_size - 1) / batch_size;
  ActivationSampler sampler(model, T, std::max<int64_t>(1, (rows_per_site + calls - 1) / calls));
  at::NoGradGuard no_grad;
  ForwardOptions fo;
  fo.loops = T;
  fo.compute_logits = false;
  fo.hooks = &sampler;
  for (int64_t i = 0; i < n; i += batch_size) model.forward(windows.narrow(0, i, std::min(batch_size, n - i)), fo);
  return sampler;
}

double output_error(const at::Tensor& x, const at::Tensor& qx, const at::Tensor& weight) {
  const at::Tensor e = (qx - x).to(at::kFloat);
  if (!weight.defined()) return e.pow(2).sum().item<double>();
  return at::matmul(e, weight.t()).pow(2).sum().item<double>();
}

RatioSearch search_ratio(const at::Tensor& x, const at::Tensor& weight,
                         const std::function<at::Tensor(const at::Tensor&, double)>& quantize, double floor) {
  // ||e Wᵀ||² = Σ (e G) ⊙ e with G = WᵀW: cheaper when W has more rows than columns (q/k/v, gate/up).
  const bool gram = weight.defined() && weight.size(0) > weight.size(1);
  const at::Tensor G = gram ? at::matmul(weight.t().to(at::kFloat), weight.to(at::kFloat)) : at::Tensor();
  auto err = [&](double r) {
    if (!gram) return output_error(x, quantize(x, r), weight);
    const at::Tensor e = (quantize(x, r) - x).to(at::kFloat);
    return (at::matmul(e, G) * e).sum().item<double>();
  };
  RatioSearch best;
  best.error_at_1 = best.error = err(1.0);
  double lo_bound = 1.0;
  for (int k = 1; k < 16; ++k) {  // 0.85^k: down to 0.087 of the range
    const double r = std::pow(0.85, k);
    lo_bound = r;
    const double e = err(r);
    if (e < best.error) best.error = e, best.ratio = r;
    if (r < floor) break;
  }
  // Refine between the neighbours of the coarse optimum.
  const double hi = std::min(1.0, best.ratio / 0.85), lo = std::max(lo_bound, best.ratio * 0.85);
  for (int k = 1; k < 8; ++k) {
    const double r = lo + (hi - lo) * k / 8.0;
    const double e = err(r);
    if (e < best.error) best.error = e, best.ratio = r;
  }
  return best;
}

double search_static_scale(const at::Tensor& x, const at::Tensor& weight, const Grid& grid, RatioSearch* info) {
  const double absmax = x.abs().max().item<double>();
  if (absmax == 0) return 1.0;
  const double qmax = double(grid.qmax());
  RatioSearch r = search_ratio(x, weight, [&](const at::Tensor& v, double ratio) {
    return fake_quant_static(v, grid, at::scalar_tensor(absmax * ratio / qmax, v.options()));
  });
  if (info) *info = r;
  return absmax * r.ratio / qmax;
}

double search_dynamic_clip(const at::Tensor& x, const at::Tensor& weight, const ActQuant& act, RatioSearch* info) {
  const Grid grid{act.bits, act.symmetric};
  // Per-token ranges are already tight: only mild clipping can help, so candidates stay >= 0.3.
  RatioSearch r = search_ratio(x, weight, [&](const at::Tensor& v, double ratio) {
    return fake_quant_activation(v, grid, std::max(ratio, 0.3), act.group_size);
  }, 0.3);
  r.ratio = std::max(r.ratio, 0.3);
  if (info) *info = r;
  return r.ratio;
}

at::Tensor group_weight(const LayerWeights& L, InputGroup g) {
  std::vector<at::Tensor> ws;
  for (LinearSite s : sites_of(g)) ws.push_back(L.linear(s)->dense_weight().to(at::kFloat));
  return at::cat(ws, 0);
}

int64_t calibrate_activations(OuroModel& model, const ActivationSampler& samples, const ActQuant& act, bool per_loop) {
  if (!act.enabled()) throw Error("calibrate_activations: activations are not quantized");
  at::NoGradGuard no_grad;
  const int64_t T = samples.loops(), P = per_loop ? T : 1;
  const Grid grid{act.bits, act.symmetric};
  auto& layers = model.weights().layers;
  for (int64_t l = 0; l < int64_t(layers.size()); ++l) {
    LayerWeights& L = layers[size_t(l)];
    for (int gi = 0; gi < kNumInputGroups; ++gi) {
      const InputGroup g = InputGroup(gi);
      const at::Tensor W = group_weight(L, g);
      std::vector<double> params;
      for (int64_t p = 0; p < P; ++p) {
        const at::Tensor x = samples.rows(per_loop ? p : -1, l, g).to(W.device());
        params.push_back(act.static_scale ? search_static_scale(x, W, grid) : search_dynamic_clip(x, W, act));
      }
      const at::Tensor values = at::tensor(params, at::TensorOptions().dtype(at::kDouble)).to(at::kFloat).to(W.device());
      for (LinearSite s : sites_of(g)) {
        auto* q = dynamic_cast<QuantLinear*>(L.linear(s).get());
        if (!q) throw Error("calibrate_activations: layer linears must be quantized first");
        if (act.static_scale) q->adaptation().act_scale = values.clone();
        else q->adaptation().act_clip = values.clone();
      }
    }
  }
  return P;
}

double relative_site_error(const at::Tensor& v, const at::Tensor& wq, const at::Tensor& fp_out, const ActQuant& act,
                           double scale) {
  at::Tensor qv = v;
  if (act.enabled()) {
    const Grid g{act.bits, act.symmetric};
    qv = act.static_scale ? fake_quant_static(v, g, at::scalar_tensor(scale, v.options()))
                          : fake_quant_activation(v, g, act.clip, act.group_size);
  }
  const at::Tensor out = at::linear(qv, wq);
  return (out - fp_out).pow(2).sum().item<double>() / fp_out.pow(2).sum().clamp_min(1e-30).item<double>();
}

BasisErrors compare_bases(const std::vector<at::Tensor>& rows, const std::function<at::Tensor(const at::Tensor&)>& to_b,
                          const at::Tensor& w_a, const at::Tensor& w_b, const Grid& w_grid, const ActQuant& act,
                          bool per_loop) {
  const at::Tensor wq_a = fake_quant_weight(w_a, w_grid, 0, true), wq_b = fake_quant_weight(w_b, w_grid, 0, true);
  const Grid ag{act.bits, act.symmetric};
  const bool search = act.enabled() && act.static_scale;
  double pooled_a = 0, pooled_b = 0;
  if (search && !per_loop) {
    const at::Tensor all = at::cat(rows);
    pooled_a = search_static_scale(all, w_a, ag);
    pooled_b = search_static_scale(to_b(all), w_b, ag);
  }
  BasisErrors e;
  for (const at::Tensor& v : rows) {
    const at::Tensor vb = to_b(v), fp_out = at::linear(v, w_a);
    const double s_a = search && per_loop ? search_static_scale(v, w_a, ag) : pooled_a;
    const double s_b = search && per_loop ? search_static_scale(vb, w_b, ag) : pooled_b;
    e.a.push_back(relative_site_error(v, wq_a, fp_out, act, s_a));
    e.b.push_back(relative_site_error(vb, wq_b, fp_out, act, s_b));
    e.sum_a += e.a.back(), e.sum_b += e.b.back();
  }
  return e;
}

}  // namespace loopq::quant
