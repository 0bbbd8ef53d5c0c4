#include "quant/packed_linear.h"

#include <ATen/Parallel.h>

#include <cmath>

#include "kernels/cpu/fwht.h"
#include "util/error.h"

namespace loopq::quant {
namespace {

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

}  // namespace

PackedLinear::PackedLinear(const QuantizedWeight& weight, ActQuant act, InputRotation rotation, at::Tensor bias,
                           int threads)
    : packed_(kernels::pack(logical(weight))), act_(act), rotation_(std::move(rotation)), threads_(threads),
      wbits_(weight.grid.bits) {
  if (act_.bits != 8 && act_.bits != 4)
    throw Error("PackedLinear: activations must be 8 or 4 bits (the kernels multiply integers), got " +
                std::to_string(act_.bits));
  if (!act_.symmetric || act_.group_size > 0)
    throw Error("PackedLinear: the kernels quantize activations symmetric per token only");
  w_hat_ = weight.dequantized().to(at::kCPU).contiguous();
  if (bias.defined()) {
    bias_ = bias.to(at::kCPU, at::kFloat).contiguous();
    if (bias_.numel() != packed_.out) throw Error("PackedLinear: bias size does not match out_features");
  }
  if (rotation_.kind == InputRotation::Kind::Full) {
    const HadamardTransform& h = *rotation_.hadamard;
    if (h.size() != packed_.in) throw Error("PackedLinear: input rotation size does not match in_features");
    const std::vector<int64_t> f = h.factor_sizes();
    // A leading factor that is not a power of two is the Paley core; the rest is Sylvester 2^m.
    if (!f.empty() && (f[0] & (f[0] - 1)) != 0) {
      core_size_ = f[0];
      const at::Tensor core = hadamard_matrix(core_size_).to(at::kFloat).contiguous();
      core_.assign(core.data_ptr<float>(), core.data_ptr<float>() + core.numel());
    }
    if (h.signs().defined()) signs_ = h.signs().to(at::kCPU, at::kFloat).contiguous();
  } else if (rotation_.kind == InputRotation::Kind::Heads) {
    if (rotation_.hadamard->size() * rotation_.head_dim != packed_.in)
      throw Error("PackedLinear: head rotation does not match in_features");
  }
}

void PackedLinear::set_loop_affine(int loop, at::Tensor scale, at::Tensor bias) {
  if (loop < 0) throw Error("PackedLinear: negative loop index");
  for (at::Tensor* t : {&scale, &bias})
    if (t->defined()) {
      *t = t->to(at::kCPU, at::kFloat).contiguous();
      if (t->numel() != packed_.out) throw Error("PackedLinear: per-loop affine size does not match out_features");
    }
  if (int(loop_scale_.size()) <= loop) loop_scale_.resize(size_t(loop + 1)), loop_bias_.resize(size_t(loop + 1));
  loop_scale_[size_t(loop)] = scale;
  loop_bias_[size_t(loop)] = bias;
}

at::Tensor PackedLinear::forward(const at::Tensor& x, int loop) const {
  if (!x.defined() || x.dim() < 1 || x.size(-1) != packed_.in)
    throw Error("PackedLinear: expected input [..., " + std::to_string(packed_.in) + "]");
  if (!x.device().is_cpu()) throw Error("PackedLinear: the packed kernels run on the CPU");
  const int64_t rows = x.numel() / packed_.in;
  at::Tensor in;
  if (rotation_.kind == InputRotation::Kind::Full) {
    in = x.to(at::kFloat).reshape({rows, packed_.in}).clone();  // the transform works in place
    kernels::fwht(in.data_ptr<float>(), rows, packed_.in, packed_.in, core_.empty() ? nullptr : core_.data(),
                  core_size_, signs_.defined() ? signs_.data_ptr<float>() : nullptr);
  } else {
    // Heads rotations act across strided heads; they stay on the tensor path.
    in = rotation_.apply(x).to(at::kFloat).reshape({rows, packed_.in}).contiguous();
  }
  auto sizes = x.sizes().vec();
  sizes.back() = packed_.out;
  at::Tensor y = at::empty(sizes, x.options().dtype(at::kFloat));
  kernels::Epilogue ep;
  if (bias_.defined()) ep.bias = bias_.data_ptr<float>();
  if (loop >= 0 && loop < int(loop_scale_.size())) {
    if (loop_scale_[size_t(loop)].defined()) ep.out_scale = loop_scale_[size_t(loop)].data_ptr<float>();
    if (loop_bias_[size_t(loop)].defined()) ep.out_bias = loop_bias_[size_t(loop)].data_ptr<float>();
  }
  kernels::ActParams a;
  a.bits = act_.bits;
  a.dynamic = true;
  a.clip = float(act_.clip);  // fake_quant_activation multiplies in fp32 as well
  kernels::QuantAct scratch;
  const int threads = threads_ > 0 ? threads_ : std::max(1, at::get_num_threads());
  kernels::linear_f32(packed_, in.data_ptr<float>(), rows, packed_.in, a, ep, y.data_ptr<float>(), packed_.out,
                      threads, scratch);
  return y.to(x.scalar_type());
}

int64_t PackedLinear::parameter_bytes() const {
  return packed_.bytes() + (bias_.defined() ? bias_.numel() * 4 : 0);
}

std::string PackedLinear::kind() const {
  return "packed_w" + std::to_string(wbits_) + "a" + std::to_string(act_.bits) + (rotation_.active() ? "_rot" : "");
}

void PackedLinear::to(const at::Device& device) {
  if (!device.is_cpu()) throw Error("PackedLinear: the packed kernels run on the CPU only");
}

}  // namespace loopq::quant
