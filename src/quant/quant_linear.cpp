#include "quant/quant_linear.h"

#include "util/error.h"

namespace loopq::quant {

at::Tensor InputRotation::apply(const at::Tensor& x) const {
  switch (kind) {
    case Kind::None: return x;
    case Kind::Full: return hadamard->apply(x);
    case Kind::Heads: {
      const int64_t heads = hadamard->size();
      auto sizes = x.sizes().vec();
      std::vector<int64_t> view(sizes.begin(), sizes.end() - 1);
      view.push_back(heads);
      view.push_back(head_dim);
      at::Tensor y = hadamard->apply(x.reshape(view).transpose(-1, -2)).transpose(-1, -2);
      return y.reshape(sizes);
    }
  }
  return x;
}

at::Tensor InputRotation::matrix(int64_t in) const {
  at::Tensor eye = at::eye(in, at::kDouble);
  switch (kind) {
    case Kind::None: return eye;
    case Kind::Full: return hadamard->matrix();
    case Kind::Heads: return at::kron(hadamard->matrix(), at::eye(head_dim, at::kDouble));
  }
  return eye;
}

at::Tensor QuantizedWeight::dequantized() const {
  const int64_t rows = codes.size(0), cols = codes.size(1);
  const int64_t gs = group_size > 0 ? group_size : cols;
  return dequantize(codes.reshape({rows, cols / gs, gs}), params).reshape({rows, cols}).to(at::kFloat);
}

QuantizedWeight rtn_quantize(const at::Tensor& weight, const Grid& grid, int64_t group_size,
                             bool mse_search) {
  QuantizedWeight q;
  q.grid = grid;
  q.group_size = group_size;
  const at::Tensor w = weight.to(at::kFloat);
  q.params = weight_params(w, grid, group_size, mse_search);
  const int64_t rows = w.size(0), cols = w.size(1), gs = group_size > 0 ? group_size : cols;
  q.codes = quantize_codes(w.reshape({rows, cols / gs, gs}), q.params, grid).reshape({rows, cols});
  return q;
}

at::Tensor prepare_input(const at::Tensor& x, const InputRotation& rotation, const ActQuant& act) {
  at::Tensor y = rotation.apply(x);
  if (act.enabled())
    y = fake_quant_activation(y, Grid{act.bits, act.symmetric}, act.clip, act.group_size);
  return y;
}

QuantLinear::QuantLinear(QuantizedWeight weight, ActQuant act, InputRotation rotation, at::Tensor bias)
    : weight_(std::move(weight)), act_(act), rotation_(std::move(rotation)), bias_(std::move(bias)) {
  if (!weight_.codes.defined() || weight_.codes.dim() != 2) throw Error("QuantLinear: codes must be 2-D");
  w_hat_ = weight_.dequantized().contiguous();
  if (rotation_.kind == InputRotation::Kind::Full && rotation_.hadamard->size() != w_hat_.size(1))
    throw Error("QuantLinear: input rotation size does not match in_features");
  if (rotation_.kind == InputRotation::Kind::Heads &&
      rotation_.hadamard->size() * rotation_.head_dim != w_hat_.size(1))
    throw Error("QuantLinear: head rotation does not match in_features");
}

at::Tensor QuantLinear::forward(const at::Tensor& x, int) const {
  return at::linear(prepare_input(x, rotation_, act_), w_hat_, bias_);
}

int64_t QuantLinear::parameter_bytes() const {
  // What a packed deployment keeps: bits per code plus fp32 scales (and zeros).
  const int64_t code_bytes = (weight_.codes.numel() * weight_.grid.bits + 7) / 8;
  const int64_t param_bytes = weight_.params.scale.numel() * 4 * (weight_.grid.symmetric ? 1 : 2);
  return code_bytes + param_bytes + (bias_.defined() ? bias_.numel() * 4 : 0);
}

std::string QuantLinear::kind() const {
  return "fake_w" + std::to_string(weight_.grid.bits) + "a" + std::to_string(act_.bits) +
         (rotation_.active() ? "_rot" : "");
}

void QuantLinear::to(const at::Device& device) {
  weight_.codes = weight_.codes.to(device);
  weight_.params.scale = weight_.params.scale.to(device);
  weight_.params.zero = weight_.params.zero.to(device);
  w_hat_ = w_hat_.to(device);
  if (bias_.defined()) bias_ = bias_.to(device);
}

ActQuantDenseLinear::ActQuantDenseLinear(at::Tensor weight, ActQuant act, InputRotation rotation)
    : weight_(weight.to(at::kFloat).contiguous()), act_(act), rotation_(std::move(rotation)) {}

at::Tensor ActQuantDenseLinear::forward(const at::Tensor& x, int) const {
  return at::linear(prepare_input(x, rotation_, act_), weight_);
}

}  // namespace loopq::quant
