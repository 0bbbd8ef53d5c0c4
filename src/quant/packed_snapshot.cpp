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
      // PackedLinear copies what it keeps (codes into its layout, adaptations into plain floats),
      // so nothing here stays tied to the learned tensors.
      auto p = std::make_shared<PackedLinear>(q->inference_weight(), q->act(), q->rotation(), q->bias());
      p->set_adaptation(q->adaptation());
      auto owner = input_owner.emplace(input_group_of(site), p);
      if (!owner.second) owner.first->second->share_input_with(*p);
      w.layers[l].linear(site) = p;
    }
  }
  for (at::Tensor* t : {&w.state_weight, &w.state_bias})  // learned, and changed in place by D: copied
    if (t->defined()) *t = t->detach().clone();
  OuroModel snapshot(model.config(), std::move(w));
  snapshot.set_attention_transform(model.attention_transform());
  return snapshot;
}

}  // namespace loopq::quant
