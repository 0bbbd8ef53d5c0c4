#pragma once
// The one replaceable interface every linear layer goes through. Dense fp32 today; fake-quant
// and packed low-bit implementations plug in here without touching the model code.
#include <ATen/ATen.h>

#include <memory>
#include <string>

namespace loopq {

class LinearOp {
 public:
  virtual ~LinearOp() = default;
  // x: [..., in] -> [..., out]. `loop` is the 0-based loop index, so implementations may carry
  // per-loop parameters over a shared weight.
  virtual at::Tensor forward(const at::Tensor& x, int loop) const = 0;
  virtual int64_t in_features() const = 0;
  virtual int64_t out_features() const = 0;
  // Dense fp32 view of the effective weight [out, in] (dequantized for quantized ops).
  virtual at::Tensor dense_weight() const = 0;
  // Bytes the op keeps resident for its parameters.
  virtual int64_t parameter_bytes() const = 0;
  virtual std::string kind() const = 0;
  // Moves parameters to a device (no-op when already there).
  virtual void to(const at::Device& device) = 0;
};

class DenseLinear final : public LinearOp {
 public:
  explicit DenseLinear(at::Tensor weight, at::Tensor bias = {});
  at::Tensor forward(const at::Tensor& x, int loop) const override;
  int64_t in_features() const override { return weight_.size(1); }
  int64_t out_features() const override { return weight_.size(0); }
  at::Tensor dense_weight() const override { return weight_; }
  int64_t parameter_bytes() const override;
  std::string kind() const override { return "dense_f32"; }
  void to(const at::Device& device) override;
  at::Tensor& weight() { return weight_; }
  at::Tensor& bias() { return bias_; }

 private:
  at::Tensor weight_;  // [out, in], fp32
  at::Tensor bias_;    // [out] or undefined
};

using LinearPtr = std::shared_ptr<LinearOp>;

}  // namespace loopq
