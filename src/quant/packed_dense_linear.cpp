#include "quant/packed_dense_linear.h"

#include <ATen/Parallel.h>

#include <algorithm>

#include "kernels/cpu/kernels.h"
#include "util/error.h"

namespace loopq::quant {

PackedDenseLinear::PackedDenseLinear(at::Tensor weight, int threads) : weight_(std::move(weight)), threads_(threads) {
  if (!weight_.defined() || weight_.dim() != 2 || weight_.size(1) < 1)
    throw Error("PackedDenseLinear: weight must be [out, in]");
  if (weight_.scalar_type() != at::kFloat && weight_.scalar_type() != at::kBFloat16)
    throw Error("PackedDenseLinear: weight must be fp32 or bf16");
  if (!weight_.device().is_cpu()) throw Error("PackedDenseLinear: the packed kernels run on the CPU only");
  weight_ = weight_.contiguous();
}

std::string PackedDenseLinear::kind() const {
  return weight_.scalar_type() == at::kBFloat16 ? "packed_dense_bf16" : "packed_dense_f32";
}

void PackedDenseLinear::to(const at::Device& device) {
  if (!device.is_cpu()) throw Error("PackedDenseLinear: the packed kernels run on the CPU only");
}

at::Tensor PackedDenseLinear::forward(const at::Tensor& x, int /*loop*/) const {
  const int64_t in = in_features(), out = out_features();
  if (x.dim() < 1 || x.size(-1) != in)
    throw Error("PackedDenseLinear: input last dimension " + std::to_string(x.dim() ? x.size(-1) : 0) +
                " does not match in_features " + std::to_string(in));
  const at::Tensor xc = x.to(at::kFloat).contiguous();
  const int64_t rows = xc.numel() / in;
  std::vector<int64_t> shape(x.sizes().begin(), x.sizes().end());
  shape.back() = out;
  const bool bf16 = weight_.scalar_type() == at::kBFloat16;
  if (rows <= 4) {
    at::Tensor y = at::empty(shape, at::kFloat);
    const kernels::DenseWeight w{weight_.data_ptr(), bf16, out, in};
    kernels::dense_linear(w, xc.data_ptr<float>(), rows, in, y.data_ptr<float>(), out,
                          threads_ > 0 ? threads_ : std::max(1, at::get_num_threads()));
    return y;
  }
  if (!bf16) return at::linear(xc, weight_);
  // Prefill: the GEMM on fp32 blocks of 4096 weight rows (32 MiB at in = 2048), not a whole
  // fp32 copy of the weight.
  const at::Tensor x2 = xc.view({rows, in});
  at::Tensor y = at::empty({rows, out}, at::kFloat);
  constexpr int64_t kBlock = 4096;
  for (int64_t o0 = 0; o0 < out; o0 += kBlock) {
    const int64_t n = std::min(kBlock, out - o0);
    y.narrow(1, o0, n).copy_(at::linear(x2, weight_.narrow(0, o0, n).to(at::kFloat)));
  }
  return y.view(shape);
}

}  // namespace loopq::quant
