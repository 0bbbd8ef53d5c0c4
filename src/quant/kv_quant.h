#pragma once
// KV-cache fake quantization (quantization-reference.md §2.6): K after RoPE (after the R3 head
// Hadamard when rotating), V at the v_proj output, per token in groups over the flattened
// [kv_heads * head_dim] vector, asymmetric with clip 0.95 by default. Each (loop, layer) cache slot
// is quantized on its own values, so every loop gets its own dynamic parameters.
#include <memory>

#include "model/attention_transform.h"
#include "quant/hadamard.h"

namespace loopq::quant {

struct KVQuantSpec {
  int bits = 16;           // 16: KV stays full precision
  bool symmetric = false;
  int64_t group_size = 128;
  double clip = 0.95;
  bool rotate_qk = false;  // QuaRot R3: Hadamard over head_dim on q and k (q·kᵀ unchanged)
  bool active() const { return bits < 16 || rotate_qk; }
};

class KVFakeQuant final : public AttentionTransform {
 public:
  KVFakeQuant(const KVQuantSpec& spec, int64_t kv_heads, int64_t head_dim);
  void apply(int loop, int layer, at::Tensor& q, at::Tensor& k, at::Tensor& v) const override;
  const KVQuantSpec& spec() const { return spec_; }

 private:
  at::Tensor quantize(const at::Tensor& x) const;  // [B, KVH, S, hd]
  KVQuantSpec spec_;
  int64_t kv_heads_, head_dim_;
  std::shared_ptr<const HadamardTransform> head_hadamard_;
};

}  // namespace loopq::quant
