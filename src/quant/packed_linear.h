#pragma once
// The bridge between a model's LinearOp seam and the packed CPU kernels: the only file that sees
// both. It repacks a QuantizedWeight (the codes QuantLinear fake-quantizes with) into the kernel
// layout once, and each forward runs the online rotation (Full: kernels::fwht), the dynamic
// per-token activation quantization and the integer matmul with a fused epilogue (bias, then the
// optional per-loop output scale and bias of the `loop` argument). Not wired into the CLI yet.
#include <ATen/ATen.h>

#include <string>
#include <vector>

#include "kernels/cpu/kernels.h"
#include "model/linear.h"
#include "quant/quant_linear.h"

namespace loopq::quant {

class PackedLinear final : public LinearOp {
 public:
  // weight: int4 or int8 codes, symmetric or asymmetric, per row or groups (multiples of 8 /
  // 4 columns). act: 8 or 4 bits, symmetric, per token (group_size 0). Throws loopq::Error for
  // anything the kernels do not run. threads = 0: at::get_num_threads() at each call.
  PackedLinear(const QuantizedWeight& weight, ActQuant act, InputRotation rotation, at::Tensor bias = {},
               int threads = 0);

  // Per-loop output affine y -> y * scale + bias for `loop` (either may be undefined).
  void set_loop_affine(int loop, at::Tensor scale, at::Tensor bias);

  at::Tensor forward(const at::Tensor& x, int loop) const override;
  int64_t in_features() const override { return packed_.in; }
  int64_t out_features() const override { return packed_.out; }
  at::Tensor dense_weight() const override { return w_hat_; }
  int64_t parameter_bytes() const override;
  std::string kind() const override;
  void to(const at::Device& device) override;  // CPU only

  const kernels::PackedWeight& packed() const { return packed_; }

 private:
  kernels::PackedWeight packed_;
  ActQuant act_;
  InputRotation rotation_;
  at::Tensor bias_;                // fp32 [out] contiguous or undefined
  at::Tensor w_hat_;               // dequantized [out, in], for dense_weight()
  std::vector<float> core_;        // K x K core of a Full rotation (empty for K = 1)
  int64_t core_size_ = 1;
  at::Tensor signs_;               // fp32 [in] or undefined
  std::vector<at::Tensor> loop_scale_, loop_bias_;
  int threads_ = 0;
  int wbits_ = 4;
};

}  // namespace loopq::quant
