#pragma once
// Fake-quantized linear layer: simulates WxAy exactly as integer codes times scales. The weight is
// held as integer codes with per-row (or per-group) scales; the input may pass through an online
// Hadamard rotation (QuaRot) and is then quantized per token at run time. At inference the
// product is codes x codes, summed exactly, with the scales applied as the packed kernels apply
// them; under autograd it is the dequantized GEMM, which equals it up to fp32 summation order.
#include <ATen/ATen.h>

#include <memory>
#include <string>
#include <vector>

#include "model/linear.h"
#include "quant/hadamard.h"
#include "quant/quantizer.h"

namespace loopq::quant {

// Activation quantization of a linear input; 16 bits = off. Dynamic: per token at run time
// (quantization-reference.md §2.4), clip ratio `clip`. Static: one offline-calibrated scale per
// tensor, held by the linear's SiteAdaptation (symmetric grid).
struct ActQuant {
  int bits = 16;
  bool symmetric = true;
  double clip = 1.0;
  int64_t group_size = 0;
  bool static_scale = false;
  bool enabled() const { return bits < 16; }
};

// What one linear site may carry beside its shared integer weight: every tensor has a leading
// dimension P of parameter sets, P = 1 (one set for all loops, the static way) or P = T (one per
// loop, LoopQ A); loop t uses set min(t, P - 1). Undefined tensors are off (identity).
struct SiteAdaptation {
  at::Tensor act_scale;  // [P] static activation scale
  at::Tensor act_clip;   // [P] dynamic clip ratio (overrides ActQuant::clip)
  at::Tensor out_scale;  // [P, out] per-output-channel gain in the GEMM epilogue
  at::Tensor out_bias;   // [P, out] per-output-channel bias in the epilogue
  static int64_t pick(const at::Tensor& t, int loop) { return std::min<int64_t>(loop, t.size(0) - 1); }
  int64_t bytes() const;  // fp32 bytes of the defined tensors
  void to(const at::Device& device);
};

// An online linear map applied to a linear's input before quantization.
struct InputRotation {
  enum class Kind { None, Full, Heads, Dense };
  Kind kind = Kind::None;
  // Full: a Hadamard of the input size. Heads: a Hadamard of size num_heads applied across heads
  // of an input laid out [heads, head_dim] (QuaRot's online part of the V/O rotation). Dense: an
  // invertible fp32 [in, in] matrix, x -> x dense (input_transform.h's shaping transform, which
  // ends in the site's rotation); not orthogonal, so the weight carries its inverse.
  std::shared_ptr<const HadamardTransform> hadamard;
  int64_t head_dim = 0;
  at::Tensor dense;

  bool active() const { return kind != Kind::None; }
  at::Tensor apply(const at::Tensor& x) const;
  // Throws loopq::Error (prefixed with `who`) unless the map fits an input of `in` features.
  void check(int64_t in, const char* who) const;
  // Dense [in, in] M (float64) with apply(x) == x M, for folding M into weights.
  at::Tensor matrix(int64_t in) const;
};

struct QuantizedWeight {
  Grid grid;
  int64_t group_size = 0;  // 0: one scale per output row
  at::Tensor codes;        // [out, in] integer-valued float tensor, within the grid
  QParams params;          // scale / zero [out, groups, 1]
  at::Tensor dequantized() const;  // [out, in] fp32 = scale * (codes - zero)
};

// Quantizes `weight` round-to-nearest with the optional MSE clip search (RTN, §3.1).
QuantizedWeight rtn_quantize(const at::Tensor& weight, const Grid& grid, int64_t group_size,
                             bool mse_search);

class QuantLinear final : public LinearOp {
 public:
  QuantLinear(QuantizedWeight weight, ActQuant act, InputRotation rotation, at::Tensor bias = {});
  at::Tensor forward(const at::Tensor& x, int loop) const override;
  int64_t in_features() const override { return w_hat_.size(1); }
  int64_t out_features() const override { return w_hat_.size(0); }
  at::Tensor dense_weight() const override { return w_hat_; }  // in the rotated input basis
  int64_t parameter_bytes() const override;
  std::string kind() const override;
  void to(const at::Device& device) override;

  const QuantizedWeight& weight() const { return weight_; }
  // The codes and scales inference multiplies now: weight(), or mid-learning what
  // end_weight_learning would bake.
  QuantizedWeight inference_weight() const { return weight_gain_.defined() ? learned_weight() : weight_; }
  const at::Tensor& bias() const { return bias_; }
  const ActQuant& act() const { return act_; }
  void set_act(const ActQuant& act) { act_ = act; }
  const InputRotation& rotation() const { return rotation_; }
  const SiteAdaptation& adaptation() const { return adapt_; }
  SiteAdaptation& adaptation() { return adapt_; }

  // Learned weight clipping (LWC-style, LoopQ D and learned-static): a factor per scale
  // ([out, groups, 1], starting at 1, shared by every loop). With `fp_weight` ([out, in], the
  // weight the codes came from) the codes are re-rounded under the learned scales with a
  // straight-through estimator (RTN backbone); without it the codes stay fixed (GPTQ backbone).
  // Returns the factor, which requires grad. end_weight_learning() bakes it into codes and scales.
  // With `learn_weight` the weight the codes are rounded from is itself learned (a leaf tensor,
  // learned_weight_source(), starting at `fp_weight` or, without it, at the dequantized codes, so
  // that the codes start unchanged): the codes may move, and the backbone stays one integer tensor.
  at::Tensor begin_weight_learning(const at::Tensor& fp_weight = {}, bool learn_weight = false);
  void end_weight_learning();
  const at::Tensor& learned_weight_source() const { return fp_weight_; }

  // Whether inference runs as the exact integer product: symmetric per-token or static
  // activations of at most 8 bits (asymmetric or grouped activations keep the dequantized GEMM).
  bool exact_product_supported() const { return act_.enabled() && act_.symmetric && act_.group_size <= 0; }

 private:
  bool differentiable(const at::Tensor& x) const;
  // codes x codes summed exactly, the scales applied in the packed kernels' epilogue order, so
  // that no BLAS, thread count or machine can move a result (and through it the next code).
  at::Tensor integer_product(const at::Tensor& x, int loop, const at::Tensor& codes, const QParams& params) const;
  // The codes and scales under the learned factor (what end_weight_learning bakes), and their
  // dequantized weight (differentiable in the factor).
  QuantizedWeight learned_weight() const;
  at::Tensor current_weight() const;
  QuantizedWeight weight_;
  ActQuant act_;
  InputRotation rotation_;
  SiteAdaptation adapt_;
  at::Tensor bias_;
  at::Tensor w_hat_;  // cached dequantized weight [out, in] fp32
  at::Tensor weight_gain_, fp_weight_;  // only while learning
};

// A dense-weight linear whose input is still rotated and quantized: the A-only side (WxA16 is
// QuantLinear with act off; this is W16Ay), and the FP stage of sequential calibration.
class ActQuantDenseLinear final : public LinearOp {
 public:
  ActQuantDenseLinear(at::Tensor weight, ActQuant act, InputRotation rotation);
  at::Tensor forward(const at::Tensor& x, int loop) const override;
  int64_t in_features() const override { return weight_.size(1); }
  int64_t out_features() const override { return weight_.size(0); }
  at::Tensor dense_weight() const override { return weight_; }
  int64_t parameter_bytes() const override { return weight_.numel() * 4; }
  std::string kind() const override { return "dense_f32_a" + std::to_string(act_.bits); }
  void to(const at::Device& device) override {
    weight_ = weight_.to(device);
    if (rotation_.dense.defined()) rotation_.dense = rotation_.dense.to(device);
  }
  const InputRotation& rotation() const { return rotation_; }
  const ActQuant& act() const { return act_; }

 private:
  at::Tensor weight_;
  ActQuant act_;
  InputRotation rotation_;
};

// Rotation then activation quantization of a linear input (shared by both classes); `adapt`
// supplies loop `loop`'s static scale or clip ratio when it has them.
at::Tensor prepare_input(const at::Tensor& x, const InputRotation& rotation, const ActQuant& act,
                         const SiteAdaptation* adapt = nullptr, int loop = 0);
// Quantizes an already rotated input with loop `loop`'s parameters.
at::Tensor quantize_input(const at::Tensor& y, const ActQuant& act, const SiteAdaptation* adapt, int loop);
// The epilogue: out * out_scale[loop] + out_bias[loop] when defined.
at::Tensor apply_output_affine(const at::Tensor& out, const SiteAdaptation& adapt, int loop);

}  // namespace loopq::quant
