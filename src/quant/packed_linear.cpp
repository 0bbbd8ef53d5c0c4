#include "quant/packed_linear.h"

#include <ATen/Parallel.h>

#include <cmath>

#include "util/error.h"

namespace loopq::quant {

struct SharedPackedInput {
  std::mutex mutex;
  int members = 1;  // linears reading this input
  at::Tensor x;     // the last input, held so that its storage cannot be reused meanwhile
  int64_t version = -1;
  int loop = -1;
  int reads = 0;    // members served since it was quantized; at `members` it is released
  std::shared_ptr<const kernels::QuantAct> q;
  void release() {
    x = at::Tensor();
    q.reset();
    version = -1;
    loop = -1;
    reads = 0;
  }
};

namespace {

// One contiguous fp32 CPU copy, never a view: the caller may go on changing its tensor in place
// (D's updates) after handing it over.
at::Tensor owned_float_copy(const at::Tensor& t) {
  return t.detach().to(at::TensorOptions().device(at::kCPU).dtype(at::kFloat), false, true, at::MemoryFormat::Contiguous);
}

kernels::LogicalWeight logical(const QuantizedWeight& q) {
  if (!q.codes.defined() || q.codes.dim() != 2) throw Error("PackedLinear: codes must be 2-D");
  kernels::LogicalWeight w;
  w.bits = q.grid.bits;
  w.symmetric = q.grid.symmetric;
  w.out = q.codes.size(0);
  w.in = q.codes.size(1);
  w.group_size = q.group_size;
  if (w.bits != 4 && w.bits != 8)
    throw Error("PackedLinear: the packed kernels take 4- or 8-bit weights, got " + std::to_string(w.bits));
  const int64_t groups = w.group_size > 0 ? w.in / w.group_size : 1;
  const at::Tensor codes = q.codes.to(at::kCPU, at::kInt).contiguous();
  const at::Tensor scale = q.params.scale.to(at::kCPU, at::kFloat).reshape({w.out * groups}).contiguous();
  const at::Tensor zero = q.params.zero.to(at::kCPU, at::kFloat).reshape({w.out * groups}).contiguous();
  w.code.assign(codes.data_ptr<int32_t>(), codes.data_ptr<int32_t>() + codes.numel());
  w.scale.assign(scale.data_ptr<float>(), scale.data_ptr<float>() + scale.numel());
  w.zero.resize(size_t(zero.numel()));
  for (int64_t i = 0; i < zero.numel(); ++i) {
    const float z = zero.data_ptr<float>()[i];
    if (z != std::nearbyint(z)) throw Error("PackedLinear: zero points must be integers");
    w.zero[size_t(i)] = int32_t(z);
  }
  return w;
}

std::vector<float> floats_of(const at::Tensor& t) {
  if (!t.defined()) return {};
  const at::Tensor c = t.detach().to(at::kCPU, at::kFloat).reshape({-1}).contiguous();
  return std::vector<float>(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
}

bool same_tensor_values(const at::Tensor& a, const at::Tensor& b) {
  if (a.defined() != b.defined()) return false;
  return !a.defined() || (a.sizes() == b.sizes() && a.to(at::kCPU).equal(b.to(at::kCPU)));
}

}  // namespace

std::string PackedLinear::why_unsupported(int weight_bits, int64_t group_size, const ActQuant& act) {
  if (weight_bits != 4 && weight_bits != 8) return std::to_string(weight_bits) + "-bit weights (the kernels take 4 or 8)";
  if (group_size > 0 && group_size % (weight_bits == 4 ? 8 : 4) != 0)
    return "weight group size " + std::to_string(group_size) + " (must be a multiple of " +
           (weight_bits == 4 ? "8" : "4") + ")";
  if (!act.enabled()) return "16-bit activations (the kernels multiply integer activations)";
  if (act.bits != 8 && act.bits != 4) return std::to_string(act.bits) + "-bit activations (the kernels take 4 or 8)";
  if (!act.symmetric) return "asymmetric activations";
  if (act.group_size > 0) return "grouped activation scales";
  return "";
}

PackedLinear::PackedLinear(const QuantizedWeight& weight, ActQuant act, InputRotation rotation, at::Tensor bias,
                           int threads)
    : act_(act), rotation_(std::move(rotation)), threads_(threads), wbits_(weight.grid.bits) {
  const std::string why = why_unsupported(weight.grid.bits, weight.group_size, act_);
  if (!why.empty()) throw Error("PackedLinear: the packed kernels do not run " + why);
  packed_ = kernels::pack(logical(weight));
  check_setup(bias);
}

PackedLinear::PackedLinear(kernels::PackedWeight packed, ActQuant act, InputRotation rotation, at::Tensor bias,
                           int threads)
    : packed_(std::move(packed)), act_(act), rotation_(std::move(rotation)), threads_(threads), wbits_(packed_.bits) {
  const std::string why = why_unsupported(packed_.bits, packed_.group == packed_.in_pad ? 0 : packed_.group, act_);
  if (!why.empty()) throw Error("PackedLinear: the packed kernels do not run " + why);
  check_setup(bias);
}

void PackedLinear::check_setup(const at::Tensor& bias) {
  if (bias.defined()) {
    bias_ = owned_float_copy(bias);
    if (bias_.numel() != packed_.out) throw Error("PackedLinear: bias size does not match out_features");
  }
  rotation_.check(packed_.in, "PackedLinear");
}

void PackedLinear::set_adaptation(const SiteAdaptation& a) {
  act_scale_ = floats_of(a.act_scale);
  act_clip_ = floats_of(a.act_clip);
  if (act_.static_scale && act_scale_.empty())
    throw Error("PackedLinear: static activation quantization without a calibrated scale");
  for (float s : act_scale_)
    if (!(s > 0 && std::isfinite(s))) throw Error("PackedLinear: static activation scales must be positive");
  for (float c : act_clip_)
    if (!(c > 0 && c <= 1)) throw Error("PackedLinear: clip ratios must be in (0, 1]");
  loop_scale_.clear();
  loop_bias_.clear();
  const int64_t sets = std::max(a.out_scale.defined() ? a.out_scale.size(0) : 0,
                                a.out_bias.defined() ? a.out_bias.size(0) : 0);
  for (int64_t t = 0; t < sets; ++t)
    set_loop_affine(int(t), a.out_scale.defined() ? a.out_scale[SiteAdaptation::pick(a.out_scale, t)] : at::Tensor(),
                    a.out_bias.defined() ? a.out_bias[SiteAdaptation::pick(a.out_bias, t)] : at::Tensor());
  affine_repeats_last_ = true;
}

void PackedLinear::set_loop_affine(int loop, at::Tensor scale, at::Tensor bias) {
  if (loop < 0) throw Error("PackedLinear: negative loop index");
  for (at::Tensor* t : {&scale, &bias})
    if (t->defined()) {
      *t = owned_float_copy(*t);
      if (t->numel() != packed_.out) throw Error("PackedLinear: per-loop affine size does not match out_features");
    }
  if (int(loop_scale_.size()) <= loop) loop_scale_.resize(size_t(loop + 1)), loop_bias_.resize(size_t(loop + 1));
  loop_scale_[size_t(loop)] = scale;
  loop_bias_[size_t(loop)] = bias;
  affine_repeats_last_ = false;
}

bool PackedLinear::same_input_params(const PackedLinear& o) const {
  if (packed_.in != o.packed_.in || act_.bits != o.act_.bits || act_.static_scale != o.act_.static_scale ||
      act_.clip != o.act_.clip || act_scale_ != o.act_scale_ || act_clip_ != o.act_clip_)
    return false;
  const InputRotation &a = rotation_, &b = o.rotation_;
  if (a.kind != b.kind) return false;
  if (!a.active()) return true;
  if (a.kind == InputRotation::Kind::Dense) return same_tensor_values(a.dense, b.dense);
  return a.head_dim == b.head_dim && a.hadamard->size() == b.hadamard->size() &&
         same_tensor_values(a.hadamard->signs(), b.hadamard->signs());
}

bool PackedLinear::share_input_with(PackedLinear& other) {
  if (!same_input_params(other)) return false;
  if (other.shared_ == shared_ && shared_) return true;
  if (!shared_) shared_ = std::make_shared<SharedPackedInput>();
  other.shared_ = shared_;
  ++shared_->members;
  return true;
}

kernels::ActParams PackedLinear::act_params(int loop) const {
  kernels::ActParams a;
  a.bits = act_.bits;
  const size_t t = size_t(std::max(loop, 0));
  if (act_.static_scale) {
    if (act_scale_.empty()) throw Error("PackedLinear: static activation quantization without a calibrated scale");
    a.dynamic = false;
    a.static_scale = act_scale_[std::min(t, act_scale_.size() - 1)];
  } else {
    a.dynamic = true;
    a.clip = act_clip_.empty() ? float(act_.clip) : act_clip_[std::min(t, act_clip_.size() - 1)];
  }
  return a;
}

std::shared_ptr<const kernels::QuantAct> PackedLinear::quantized_input(const at::Tensor& x, int loop) const {
  // Inference tensors carry no version counter; they are never shared.
  const bool shareable = shared_ && !x.is_inference();
  if (shareable) {
    std::lock_guard<std::mutex> lock(shared_->mutex);
    if (shared_->q && shared_->loop == loop && shared_->x.defined() &&
        shared_->x.unsafeGetTensorImpl() == x.unsafeGetTensorImpl() && shared_->version == int64_t(x._version())) {
      std::shared_ptr<const kernels::QuantAct> q = shared_->q;
      // The last reader lets go: a prefill's inputs would otherwise stay resident in every layer
      // until the next step reaches it (about 20 KB per token per layer at the 1.4B shape).
      if (++shared_->reads >= shared_->members) shared_->release();
      return q;
    }
  }
  const int64_t rows = x.numel() / packed_.in;
  // The same rotation as QuantLinear, so both paths quantize identical values.
  const at::Tensor in = rotation_.apply(x).to(at::kFloat).reshape({rows, packed_.in}).contiguous();
  auto q = std::make_shared<kernels::QuantAct>();
  const int threads = threads_ > 0 ? threads_ : std::max(1, at::get_num_threads());
  kernels::quantize_act(in.data_ptr<float>(), rows, packed_.in, packed_.in, act_params(loop), packed_.in_pad, *q,
                        rows > 4 ? threads : 1);
  if (shareable) {
    std::lock_guard<std::mutex> lock(shared_->mutex);
    shared_->x = x;
    shared_->version = int64_t(x._version());
    shared_->loop = loop;
    shared_->q = q;
    shared_->reads = 1;
  }
  return q;
}

at::Tensor PackedLinear::forward(const at::Tensor& x, int loop) const {
  if (!x.defined() || x.dim() < 1 || x.size(-1) != packed_.in)
    throw Error("PackedLinear: expected input [..., " + std::to_string(packed_.in) + "]");
  if (!x.device().is_cpu()) throw Error("PackedLinear: the packed kernels run on the CPU");
  const std::shared_ptr<const kernels::QuantAct> q = quantized_input(x, loop);
  auto sizes = x.sizes().vec();
  sizes.back() = packed_.out;
  at::Tensor y = at::empty(sizes, x.options().dtype(at::kFloat));
  kernels::Epilogue ep;
  if (bias_.defined()) ep.bias = bias_.data_ptr<float>();
  if (loop >= 0 && !loop_scale_.empty()) {
    const size_t t = affine_repeats_last_ ? std::min(size_t(loop), loop_scale_.size() - 1) : size_t(loop);
    if (t < loop_scale_.size()) {
      if (loop_scale_[t].defined()) ep.out_scale = loop_scale_[t].data_ptr<float>();
      if (loop_bias_[t].defined()) ep.out_bias = loop_bias_[t].data_ptr<float>();
    }
  }
  const int threads = threads_ > 0 ? threads_ : std::max(1, at::get_num_threads());
  kernels::linear(packed_, *q, ep, y.data_ptr<float>(), packed_.out, threads);
  return y.scalar_type() == x.scalar_type() ? y : y.to(x.scalar_type());
}

at::Tensor PackedLinear::dense_weight() const {
  const kernels::LogicalWeight w = kernels::unpack(packed_);
  const int64_t gs = w.group(), groups = w.groups();
  at::Tensor out = at::empty({w.out, w.in}, at::kFloat);
  float* d = out.data_ptr<float>();
  for (int64_t o = 0; o < w.out; ++o)
    for (int64_t k = 0; k < w.in; ++k) {
      const size_t g = size_t(o * groups + k / gs);
      // The same fp32 product as QuantizedWeight::dequantized: scale * (code - zero).
      d[o * w.in + k] = w.scale[g] * float(w.code[size_t(o * w.in + k)] - w.zero[g]);
    }
  return out;
}

int64_t PackedLinear::parameter_bytes() const {
  int64_t n = packed_.bytes() + (bias_.defined() ? bias_.numel() * 4 : 0);
  n += int64_t(act_scale_.size() + act_clip_.size()) * 4;
  for (size_t t = 0; t < loop_scale_.size(); ++t)
    for (const at::Tensor* v : {&loop_scale_[t], &loop_bias_[t]})
      if (v->defined()) n += v->numel() * 4;
  return n;
}

std::string PackedLinear::kind() const {
  return "packed_w" + std::to_string(wbits_) + "a" + std::to_string(act_.bits) + (act_.static_scale ? "s" : "") +
         (rotation_.active() ? "_rot" : "");
}

void PackedLinear::to(const at::Device& device) {
  if (!device.is_cpu()) throw Error("PackedLinear: the packed kernels run on the CPU only");
}

}  // namespace loopq::quant
