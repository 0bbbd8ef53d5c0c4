#pragma once
// Fake-quantized linear layer: simulates WxAy exactly as integer codes times scales. The weight is
// held as integer codes with per-row (or per-group) scales; the input may pass through an online
// Hadamard rotation (QuaRot) and is then quantized per token at run time; the product uses the
// dequantized weight, which equals codes x scales bit for bit.
#include <ATen/ATen.h>

#include <memory>
#include <string>
#include <vector>

#include "model/linear.h"
#include "quant/hadamard.h"
#include "quant/quantizer.h"

namespace loopq::quant {

// Dynamic per-token activation quantization (quantization-reference.md §2.4); 16 bits = off.
struct ActQuant {
  int bits = 16;
  bool symmetric = true;
  double clip = 1.0;
  int64_t group_size = 0;
  bool enabled() const { return bits < 16; }
};

// An online orthogonal map applied to a linear's input before quantization.
struct InputRotation {
  enum class Kind { None, Full, Heads };
  Kind kind = Kind::None;
  // Full: a Hadamard of the input size. Heads: a Hadamard of size num_heads applied across heads
  // of an input laid out [heads, head_dim] (QuaRot's online part of the V/O rotation).
  std::shared_ptr<const HadamardTransform> hadamard;
  int64_t head_dim = 0;

  bool active() const { return kind != Kind::None; }
  at::Tensor apply(const at::Tensor& x) const;
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
  const ActQuant& act() const { return act_; }
  void set_act(const ActQuant& act) { act_ = act; }
  const InputRotation& rotation() const { return rotation_; }

 private:
  QuantizedWeight weight_;
  ActQuant act_;
  InputRotation rotation_;
  at::Tensor bias_;
  at::Tensor w_hat_;  // cached dequantized weight [out, in] fp32
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
  void to(const at::Device& device) override { weight_ = weight_.to(device); }
  const InputRotation& rotation() const { return rotation_; }
  const ActQuant& act() const { return act_; }

 private:
  at::Tensor weight_;
  ActQuant act_;
  InputRotation rotation_;
};

// Rotation then per-token quantization of a linear input (shared by both classes).
at::Tensor prepare_input(const at::Tensor& x, const InputRotation& rotation, const ActQuant& act);

}  // namespace loopq::quant
