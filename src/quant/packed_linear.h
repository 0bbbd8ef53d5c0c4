#pragma once
// The bridge between a model's LinearOp seam and the packed CPU kernels: the only file that sees
// both. It repacks a QuantizedWeight (the codes QuantLinear fake-quantizes with) into the kernel
// layout once and keeps no fp32 copy of the weight. Each forward rotates the input online with
// the same transform as QuantLinear (so both paths see identical activation codes), quantizes it
// per token (dynamic) or with loop `loop`'s static scale, and runs the integer matmul with a fused
// epilogue: bias, then loop `loop`'s output scale and bias.
#include <ATen/ATen.h>

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "kernels/cpu/kernels.h"
#include "model/linear.h"
#include "quant/quant_linear.h"

namespace loopq::quant {

// The quantized activation of one input, shared by the linears that read it (q/k/v, gate/up):
// rotation and quantization run once per input instead of once per linear.
struct SharedPackedInput;

class PackedLinear final : public LinearOp {
 public:
  // weight: int4 or int8 codes, symmetric or asymmetric, per row or groups (multiples of 8 /
  // 4 columns). act: 8 or 4 bits, symmetric, per token (group_size 0), dynamic or static (then
  // set_adaptation must supply the scales). Throws loopq::Error for anything the kernels do not
  // run. threads = 0: at::get_num_threads() at each call.
  PackedLinear(const QuantizedWeight& weight, ActQuant act, InputRotation rotation, at::Tensor bias = {},
               int threads = 0);
  // From weights already in the kernel layout (a loader repacks the file's bytes directly, so no
  // unpacked or fp32 copy of the weight ever exists).
  PackedLinear(kernels::PackedWeight packed, ActQuant act, InputRotation rotation, at::Tensor bias = {},
               int threads = 0);

  // Empty when PackedLinear can run weights of `weight_bits`/`group_size` under `act`; else the
  // reason, for a one-line notice.
  static std::string why_unsupported(int weight_bits, int64_t group_size, const ActQuant& act);

  // Per-loop parameters as QuantLinear holds them: [P] static scales or clip ratios, [P, out]
  // output scale and bias; loop t uses set min(t, P - 1).
  void set_adaptation(const SiteAdaptation& a);
  // Per-loop output affine y -> y * scale + bias for one `loop` (either may be undefined).
  void set_loop_affine(int loop, at::Tensor scale, at::Tensor bias);
  // Lets this linear and `other` quantize a common input once (the caller knows they read the
  // same tensor). Returns false, sharing nothing, unless their rotations and activation
  // parameters agree for every loop. The quantized input is held until every linear of the
  // group has read it, then released.
  bool share_input_with(PackedLinear& other);

  at::Tensor forward(const at::Tensor& x, int loop) const override;
  int64_t in_features() const override { return packed_.in; }
  int64_t out_features() const override { return packed_.out; }
  // Dequantized from the packed codes on each call (tools only; inference never needs it).
  at::Tensor dense_weight() const override;
  int64_t parameter_bytes() const override;
  std::string kind() const override;
  void to(const at::Device& device) override;  // CPU only

  const kernels::PackedWeight& packed() const { return packed_; }

 private:
  void check_setup(const at::Tensor& bias);
  kernels::ActParams act_params(int loop) const;
  // The rotated, quantized input rows of x (from the shared cache when another linear of the
  // same input already made them).
  std::shared_ptr<const kernels::QuantAct> quantized_input(const at::Tensor& x, int loop) const;
  bool same_input_params(const PackedLinear& other) const;

  kernels::PackedWeight packed_;
  ActQuant act_;
  InputRotation rotation_;
  at::Tensor bias_;                   // fp32 [out] contiguous or undefined
  std::vector<float> act_scale_;      // [P] static scales (empty: dynamic)
  std::vector<float> act_clip_;       // [P] dynamic clip ratios (empty: act_.clip)
  std::vector<at::Tensor> loop_scale_, loop_bias_;  // per loop fp32 [out] or undefined
  bool affine_repeats_last_ = false;  // loops past the last set use it (adaptations with P sets)
  std::shared_ptr<SharedPackedInput> shared_;
  int threads_ = 0;
  int wbits_ = 4;
};

}  // namespace loopq::quant
