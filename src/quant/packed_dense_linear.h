#pragma once
// A dense (fp32 or bf16) linear on the packed runtime, for a quantized model's LM head: decode's
// 1-4 rows go to kernels::dense_linear, which streams the weight in place (bf16: half the bytes
// of fp32, widened exactly in registers); more rows go to the BLAS GEMM, a bf16 weight widened
// a block of rows at a time.
#include <ATen/ATen.h>

#include <string>

#include "model/linear.h"

namespace loopq::quant {

class PackedDenseLinear final : public LinearOp {
 public:
  // weight: [out, in] fp32 or bf16 on the CPU (kept, contiguous). threads = 0: at::get_num_threads().
  explicit PackedDenseLinear(at::Tensor weight, int threads = 0);

  at::Tensor forward(const at::Tensor& x, int loop) const override;
  int64_t in_features() const override { return weight_.size(1); }
  int64_t out_features() const override { return weight_.size(0); }
  at::Tensor dense_weight() const override { return weight_.to(at::kFloat); }
  int64_t parameter_bytes() const override { return weight_.numel() * int64_t(weight_.element_size()); }
  std::string kind() const override;
  void to(const at::Device& device) override;  // CPU only

 private:
  at::Tensor weight_;
  int threads_ = 0;
};

}  // namespace loopq::quant
