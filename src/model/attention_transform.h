#pragma once
// A model-owned transform of the attention operands after RoPE and before the KV cache: where
// KV-cache quantization (and the QuaRot R3 head rotation it needs) plugs in. Part of the model,
// not a hook, so every command that runs a quantized model gets the same attention arithmetic.
#include <ATen/ATen.h>

#include <memory>
#include <string>

#include "model/kv_codec.h"

namespace loopq {

class AttentionTransform {
 public:
  virtual ~AttentionTransform() = default;
  // q [B, H, S, hd], k and v [B, KVH, S, hd] for loop `loop` (0-based) and physical `layer`.
  // May replace them; q and k must keep q·kᵀ meaning (e.g. the same orthogonal map on both).
  virtual void apply(int loop, int layer, at::Tensor& q, at::Tensor& k, at::Tensor& v) const = 0;

  // The K/V quantization of apply() as a cache codec: a cache storing with it decodes exactly
  // the K/V apply() would have produced. Null when apply() does not quantize K/V, or when it
  // does but no codec fits (then kv_codec_missing() says why).
  virtual std::shared_ptr<const KVCodec> kv_codec() const { return nullptr; }
  // Non-empty when apply() quantizes K/V but kv_codec() is null: the reason, for a notice.
  virtual std::string kv_codec_missing() const { return {}; }
  // apply() without its K/V quantization, for a forward whose cache stores K/V with kv_codec()
  // (the cache quantizes them on append). Only called when kv_codec() is non-null.
  virtual void apply_unquantized(int loop, int layer, at::Tensor& q, at::Tensor& k, at::Tensor& v) const {
    apply(loop, layer, q, k, v);
  }
};

}  // namespace loopq
