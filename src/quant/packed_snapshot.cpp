#include "quant/packed_snapshot.h"

#include <ATen/ATen.h>

#include <map>
#include <memory>

#include "quant/calibration.h"
#include "quant/packed_linear.h"
#include "quant/quant_linear.h"
#include "util/error.h"

namespace loopq::quant {

namespace {

const QuantLinear* quant_linear(const LayerWeights& L, LinearSite site) {
  return dynamic_cast<const QuantLinear*>(L.linear(site).get());
}

QuantizedWeight detached(QuantizedWeight w) {
  w.codes = w.codes.detach();
  w.params.scale = w.params.scale.detach();
  if (w.params.zero.defined()) w.params.zero = w.params.zero.detach();
  return w;
}

SiteAdaptation detached(const SiteAdaptation& a) {
  SiteAdaptation d;
  const at::Tensor* from[] = {&a.act_scale, &a.act_clip, &a.out_scale, &a.out_bias};
  at::Tensor* to[] = {&d.act_scale, &d.act_clip, &d.out_scale, &d.out_bias};
  for (int i = 0; i < 4; ++i)
    if (from[i]->defined()) *to[i] = from[i]->detach();
  return d;
}

}  // namespace

std::string why_no_packed_snapshot(const OuroModel& model) {
  if (model.device() != at::Device(at::kCPU)) return "the model is not on the CPU";
  const auto& layers = model.weights().layers;
  for (size_t l = 0; l < layers.size(); ++l)
    for (int s = 0; s < kNumLayerSites; ++s) {
      const QuantLinear* q = quant_linear(layers[l], LinearSite(s));
      if (!q) return "layer " + std::to_string(l) + " has a linear that is not fake-quantized";
      const QuantizedWeight& w = q->weight();
      const std::string why = PackedLinear::why_unsupported(w.grid.bits, w.group_size, q->act());
      if (!why.empty()) return why;
    }
  return "";
}

OuroModel packed_snapshot(const OuroModel& model) {
  const std::string why = why_no_packed_snapshot(model);
  if (!why.empty()) throw Error("packed snapshot: " + why);
  at::NoGradGuard no_grad;
  OuroWeights w = model.weights();  // tensors and linears shared; the layer linears replaced below
  for (size_t l = 0; l < w.layers.size(); ++l) {
    std::map<InputGroup, std::shared_ptr<PackedLinear>> input_owner;
    for (int s = 0; s < kNumLayerSites; ++s) {
      const LinearSite site = LinearSite(s);
      const QuantLinear* q = quant_linear(w.layers[l], site);
      const at::Tensor bias = q->bias().defined() ? q->bias().detach() : at::Tensor();
      auto p = std::make_shared<PackedLinear>(detached(q->inference_weight()), q->act(), q->rotation(), bias);
      p->set_adaptation(detached(q->adaptation()));
      auto owner = input_owner.emplace(input_group_of(site), p);
      if (!owner.second) owner.first->second->share_input_with(*p);
      w.layers[l].linear(site) = p;
    }
  }
  for (at::Tensor* t : {&w.state_weight, &w.state_bias})
    if (t->defined()) *t = t->detach();
  OuroModel snapshot(model.config(), std::move(w));
  snapshot.set_attention_transform(model.attention_transform());
  return snapshot;
}

}  // namespace loopq::quant
