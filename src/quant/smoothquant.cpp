#include "quant/smoothquant.h"

#include "util/error.h"

namespace loopq::quant {

at::Tensor smoothing_scales(const at::Tensor& act_absmax, const std::vector<at::Tensor>& weights, double alpha) {
  at::Tensor wmax;
  for (const auto& w : weights) {
    at::Tensor m = w.abs().amax(0).to(at::kDouble);
    wmax = wmax.defined() ? at::maximum(wmax, m) : m;
  }
  at::Tensor a = act_absmax.to(at::kDouble).to(wmax.device());
  // pow(0, 0) = 1, so alpha = 0 gives s = 1 / wmax, alpha = 1 gives s = amax (as the reference).
  at::Tensor s = a.pow(alpha) / wmax.pow(1.0 - alpha);
  return s.clamp_min(1e-5);
}

namespace {

void smooth_group(at::Tensor& norm_weight, LayerWeights& L, const std::vector<LinearSite>& sites,
                  const at::Tensor& absmax, double alpha) {
  std::vector<at::Tensor> ws;
  for (LinearSite s : sites) {
    auto* dense = dynamic_cast<DenseLinear*>(L.linear(s).get());
    if (!dense) throw Error("SmoothQuant: expects a dense model");
    ws.push_back(dense->weight());
  }
  at::Tensor s = smoothing_scales(absmax, ws, alpha);
  // norm(x) / s feeds W * s: the product is unchanged (computed in float64, cast back).
  norm_weight = (norm_weight.to(at::kDouble) / s).to(norm_weight.scalar_type());
  for (LinearSite site : sites) {
    auto* dense = static_cast<DenseLinear*>(L.linear(site).get());
    at::Tensor& w = dense->weight();
    w = (w.to(at::kDouble) * s.unsqueeze(0)).to(w.scalar_type()).contiguous();
  }
}

}  // namespace

void apply_smoothquant(OuroModel& model, const CalibrationCollector& stats, double alpha) {
  auto& layers = model.weights().layers;
  for (int64_t l = 0; l < int64_t(layers.size()); ++l) {
    LayerWeights& L = layers[size_t(l)];
    smooth_group(L.input_norm, L, sites_of(InputGroup::AttnIn), stats.pooled(l, InputGroup::AttnIn).absmax, alpha);
    smooth_group(L.ffn_in_norm, L, sites_of(InputGroup::MlpIn), stats.pooled(l, InputGroup::MlpIn).absmax, alpha);
  }
}

}  // namespace loopq::quant
