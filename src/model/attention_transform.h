#pragma once
// A model-owned transform of the attention operands after RoPE and before the KV cache: where
// KV-cache quantization (and the QuaRot R3 head rotation it needs) plugs in. Part of the model,
// not a hook, so every command that runs a quantized model gets the same attention arithmetic.
#include <ATen/ATen.h>

namespace loopq {

class AttentionTransform {
 public:
  virtual ~AttentionTransform() = default;
  // q [B, H, S, hd], k and v [B, KVH, S, hd] for loop `loop` (0-based) and physical `layer`.
  // May replace them; q and k must keep q·kᵀ meaning (e.g. the same orthogonal map on both).
  virtual void apply(int loop, int layer, at::Tensor& q, at::Tensor& k, at::Tensor& v) const = 0;
};

}  // namespace loopq
