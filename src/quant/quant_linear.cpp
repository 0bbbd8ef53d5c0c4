#include "quant/quant_linear.h"

#include <ATen/core/grad_mode.h>

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
    case Kind::Dense: {
      // fp32 (fp64 stays fp64, as for the Hadamard); fp16/bf16 are computed in fp32 and cast back.
      const at::ScalarType t = x.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
      return at::matmul(x.to(t), dense.to(x.device(), t)).to(x.scalar_type());
    }
  }
  return x;
}

void InputRotation::check(int64_t in, const char* who) const {
  if (kind == Kind::Full && hadamard->size() != in)
    throw Error(std::string(who) + ": input rotation size does not match in_features");
  if (kind == Kind::Heads && hadamard->size() * head_dim != in)
    throw Error(std::string(who) + ": head rotation does not match in_features");
  if (kind == Kind::Dense && (!dense.defined() || dense.dim() != 2 || dense.size(0) != in || dense.size(1) != in ||
                              dense.scalar_type() != at::kFloat))
    throw Error(std::string(who) + ": the input transform must be fp32 [in_features, in_features]");
}

at::Tensor InputRotation::matrix(int64_t in) const {
  at::Tensor eye = at::eye(in, at::kDouble);
  switch (kind) {
    case Kind::None: return eye;
    case Kind::Full: return hadamard->matrix();
    case Kind::Heads: return at::kron(hadamard->matrix(), at::eye(head_dim, at::kDouble));
    case Kind::Dense: return dense.to(at::kCPU, at::kDouble);
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

int64_t SiteAdaptation::bytes() const {
  int64_t n = 0;
  for (const at::Tensor* t : {&act_scale, &act_clip, &out_scale, &out_bias})
    if (t->defined()) n += t->numel() * 4;
  return n;
}

void SiteAdaptation::to(const at::Device& device) {
  for (at::Tensor* t : {&act_scale, &act_clip, &out_scale, &out_bias})
    if (t->defined()) *t = t->to(device);
}

at::Tensor quantize_input(const at::Tensor& y, const ActQuant& act, const SiteAdaptation* adapt, int loop) {
  if (!act.enabled()) return y;
  const Grid grid{act.bits, act.symmetric};
  if (act.static_scale) {
    if (!adapt || !adapt->act_scale.defined())
      throw Error("static activation quantization without a calibrated scale");
    return fake_quant_static(y, grid, adapt->act_scale[SiteAdaptation::pick(adapt->act_scale, loop)]);
  }
  if (adapt && adapt->act_clip.defined()) {
    const at::Tensor& c = adapt->act_clip;
    if (c.requires_grad()) {  // learned clip: scale = clip * absmax / qmax, differentiable in clip
      if (!act.symmetric || act.group_size > 0) throw Error("learned clip ratios need symmetric per-token activations");
      const double qmax = double(grid.qmax());
      at::Tensor absmax = y.abs().amax(-1, true);
      absmax = at::where(absmax == 0, at::full_like(absmax, qmax), absmax);
      const at::Tensor scale = c[SiteAdaptation::pick(c, loop)] * absmax / qmax;
      return at::clamp(ste_round(y / scale), double(grid.qmin()), qmax) * scale;
    }
    return fake_quant_activation(y, grid, c[SiteAdaptation::pick(c, loop)].item<double>(), act.group_size);
  }
  return fake_quant_activation(y, grid, act.clip, act.group_size);
}

at::Tensor prepare_input(const at::Tensor& x, const InputRotation& rotation, const ActQuant& act,
                         const SiteAdaptation* adapt, int loop) {
  return quantize_input(rotation.apply(x), act, adapt, loop);
}

at::Tensor apply_output_affine(const at::Tensor& out, const SiteAdaptation& a, int loop) {
  at::Tensor y = out;
  if (a.out_scale.defined()) y = y * a.out_scale[SiteAdaptation::pick(a.out_scale, loop)];
  if (a.out_bias.defined()) y = y + a.out_bias[SiteAdaptation::pick(a.out_bias, loop)];
  return y;
}

QuantLinear::QuantLinear(QuantizedWeight weight, ActQuant act, InputRotation rotation, at::Tensor bias)
    : weight_(std::move(weight)), act_(act), rotation_(std::move(rotation)), bias_(std::move(bias)) {
  if (!weight_.codes.defined() || weight_.codes.dim() != 2) throw Error("QuantLinear: codes must be 2-D");
  w_hat_ = weight_.dequantized().contiguous();
  rotation_.check(w_hat_.size(1), "QuantLinear");
}

namespace {

// sum_k a[r, k] * b[o, k] over integer-valued fp32 operands, exactly: each fp32 GEMM covers at
// most `chunk` columns, so all of its partial sums are integers below 2^24, whatever order the
// BLAS adds them in. One chunk is returned as it is (fp32); several add exactly in fp64.
at::Tensor exact_integer_dot(const at::Tensor& a, const at::Tensor& b, int64_t chunk) {
  const int64_t in = a.size(1);
  if (in <= chunk) return at::linear(a, b);
  at::Tensor sum;
  for (int64_t k = 0; k < in; k += chunk) {
    const int64_t n = std::min(chunk, in - k);
    const at::Tensor part = at::linear(a.narrow(1, k, n), b.narrow(1, k, n)).to(at::kDouble);
    sum = sum.defined() ? sum + part : part;
  }
  return sum;
}

}  // namespace

bool QuantLinear::differentiable(const at::Tensor& x) const {
  if (!at::GradMode::is_enabled()) return false;
  if (x.requires_grad() || weight_gain_.defined() || (bias_.defined() && bias_.requires_grad())) return true;
  for (const at::Tensor* t : {&adapt_.act_scale, &adapt_.act_clip, &adapt_.out_scale, &adapt_.out_bias})
    if (t->defined() && t->requires_grad()) return true;
  return false;
}

at::Tensor QuantLinear::integer_product(const at::Tensor& x, int loop, const at::Tensor& codes,
                                        const QParams& params) const {
  // The activation codes and their scale (per row, or one static scale), as prepare_input makes them.
  const int64_t in = in_features(), out = out_features(), rows = x.numel() / in;
  const at::Tensor y = rotation_.apply(x).to(at::kFloat).reshape({rows, in});
  const Grid agrid{act_.bits, true};
  at::Tensor xcodes, xscale;
  if (act_.static_scale) {
    if (!adapt_.act_scale.defined()) throw Error("static activation quantization without a calibrated scale");
    xscale = adapt_.act_scale[SiteAdaptation::pick(adapt_.act_scale, loop)].to(at::kFloat);
    xcodes = at::clamp(at::round(y / xscale), double(agrid.qmin()), double(agrid.qmax()));
  } else {
    const double clip = adapt_.act_clip.defined()
                            ? adapt_.act_clip[SiteAdaptation::pick(adapt_.act_clip, loop)].item<double>()
                            : act_.clip;
    const ActCodes a = quantize_activation(y, agrid, clip, 0);
    xcodes = a.codes.reshape({rows, in});
    xscale = a.params.scale.reshape({rows, 1});
  }
  // Integer weight codes (code - zero) and the largest |code| products, for the exactness chunk.
  const int64_t gs = weight_.group_size > 0 ? weight_.group_size : in, groups = in / gs;
  at::Tensor wcodes = codes.reshape({out, in});
  int64_t wmax = int64_t(1) << (weight_.grid.bits - 1);
  if (!weight_.grid.symmetric) {
    wcodes = (codes.reshape({out, groups, gs}) - params.zero).reshape({out, in});
    wmax = (int64_t(1) << weight_.grid.bits) - 1;
  }
  const int64_t amax = int64_t(1) << (act_.bits - 1);
  const int64_t chunk = std::max<int64_t>(1, (int64_t(1) << 24) / (wmax * amax));
  // The kernels' epilogue order: acc = sum over groups of float(dot_g) * wscale_g, then
  // acc * xscale, + bias, then the loop's output scale and bias.
  const at::Tensor wscale = params.scale.reshape({out, groups}).to(at::kFloat);
  at::Tensor acc;
  for (int64_t g = 0; g < groups; ++g) {
    const at::Tensor dot = exact_integer_dot(xcodes.narrow(1, g * gs, gs), wcodes.narrow(1, g * gs, gs), chunk);
    const at::Tensor term = dot.to(at::kFloat) * wscale.select(1, g);
    acc = acc.defined() ? acc + term : term;
  }
  at::Tensor result = acc * xscale;
  if (bias_.defined()) result = result + bias_;
  auto sizes = x.sizes().vec();
  sizes.back() = out;
  return apply_output_affine(result.reshape(sizes), adapt_, loop).to(x.scalar_type());
}

at::Tensor QuantLinear::forward(const at::Tensor& x, int loop) const {
  // Inference takes the exact integer product; training keeps the differentiable dequantized one.
  if (!differentiable(x) && exact_product_supported()) {
    if (!weight_gain_.defined()) return integer_product(x, loop, weight_.codes, weight_.params);
    const QuantizedWeight w = learned_weight();  // mid-learning: a validation checkpoint
    return integer_product(x, loop, w.codes, w.params);
  }
  const at::Tensor xq = prepare_input(x, rotation_, act_, &adapt_, loop);
  if (weight_gain_.defined() && !fp_weight_.defined() && weight_.group_size <= 0) {
    // Fixed codes, one scale per row: (g ⊙ Ŵ) x = g ⊙ (Ŵ x), so the gain is applied to the output
    // and its gradient is elementwise instead of a weight-gradient GEMM.
    at::Tensor y = at::linear(xq, w_hat_) * weight_gain_.reshape({-1});
    if (bias_.defined()) y = y + bias_;
    return apply_output_affine(y, adapt_, loop);
  }
  const at::Tensor& w = weight_gain_.defined() ? current_weight() : w_hat_;
  return apply_output_affine(at::linear(xq, w, bias_), adapt_, loop);
}

QuantizedWeight QuantLinear::learned_weight() const {
  const int64_t rows = weight_.codes.size(0), cols = weight_.codes.size(1);
  const int64_t gs = weight_.group_size > 0 ? weight_.group_size : cols;
  QuantizedWeight w = weight_;
  w.params.scale = weight_.params.scale * weight_gain_;
  if (fp_weight_.defined())
    w.codes = quantize_codes(fp_weight_.reshape({rows, cols / gs, gs}), w.params, weight_.grid).reshape({rows, cols});
  return w;
}

at::Tensor QuantLinear::current_weight() const { return learned_weight().dequantized(); }

at::Tensor QuantLinear::begin_weight_learning(const at::Tensor& fp_weight, bool learn_weight) {
  if (fp_weight.defined() && fp_weight.sizes() != weight_.codes.sizes())
    throw Error("QuantLinear: the FP weight for learned clipping has the wrong shape");
  fp_weight_ = fp_weight.defined() ? fp_weight.to(w_hat_.device(), at::kFloat).detach() : at::Tensor();
  if (learn_weight) fp_weight_ = (fp_weight_.defined() ? fp_weight_ : w_hat_).clone().set_requires_grad(true);
  weight_gain_ = at::ones_like(weight_.params.scale).set_requires_grad(true);
  return weight_gain_;
}

void QuantLinear::end_weight_learning() {
  if (!weight_gain_.defined()) return;
  at::NoGradGuard no_grad;
  weight_ = learned_weight();
  weight_.params.scale = weight_.params.scale.detach();
  weight_gain_ = fp_weight_ = at::Tensor();
  w_hat_ = weight_.dequantized().contiguous();
}

int64_t QuantLinear::parameter_bytes() const {
  // What a packed deployment keeps: bits per code plus fp32 scales (and zeros).
  const int64_t code_bytes = (weight_.codes.numel() * weight_.grid.bits + 7) / 8;
  const int64_t param_bytes = weight_.params.scale.numel() * 4 * (weight_.grid.symmetric ? 1 : 2);
  return code_bytes + param_bytes + (bias_.defined() ? bias_.numel() * 4 : 0) + adapt_.bytes();
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
  if (rotation_.dense.defined()) rotation_.dense = rotation_.dense.to(device);
  adapt_.to(device);
}

ActQuantDenseLinear::ActQuantDenseLinear(at::Tensor weight, ActQuant act, InputRotation rotation)
    : weight_(weight.to(at::kFloat).contiguous()), act_(act), rotation_(std::move(rotation)) {}

at::Tensor ActQuantDenseLinear::forward(const at::Tensor& x, int) const {
  return at::linear(prepare_input(x, rotation_, act_), weight_);
}

}  // namespace loopq::quant
