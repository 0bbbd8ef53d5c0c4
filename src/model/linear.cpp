#include "model/linear.h"

#include "model/hooks.h"
#include "util/error.h"

namespace loopq {

const char* linear_site_name(LinearSite site) {
  switch (site) {
    case LinearSite::Q: return "q_proj";
    case LinearSite::K: return "k_proj";
    case LinearSite::V: return "v_proj";
    case LinearSite::O: return "o_proj";
    case LinearSite::Gate: return "gate_proj";
    case LinearSite::Up: return "up_proj";
    case LinearSite::Down: return "down_proj";
    case LinearSite::LMHead: return "lm_head";
  }
  return "?";
}

DenseLinear::DenseLinear(at::Tensor weight, at::Tensor bias)
    : weight_(std::move(weight)), bias_(std::move(bias)) {
  if (weight_.dim() != 2) throw Error("DenseLinear: weight must be 2-D");
  if (bias_.defined() && (bias_.dim() != 1 || bias_.size(0) != weight_.size(0)))
    throw Error("DenseLinear: bias shape does not match weight rows");
}

at::Tensor DenseLinear::forward(const at::Tensor& x, int /*loop*/) const {
  return at::linear(x, weight_, bias_);
}

int64_t DenseLinear::parameter_bytes() const {
  int64_t n = weight_.numel() * weight_.element_size();
  if (bias_.defined()) n += bias_.numel() * bias_.element_size();
  return n;
}

void DenseLinear::to(const at::Device& device) {
  weight_ = weight_.to(device);
  if (bias_.defined()) bias_ = bias_.to(device);
}

}  // namespace loopq
