#include "quant/kv_quant.h"

#include "quant/quantizer.h"
#include "util/error.h"

namespace loopq::quant {

KVFakeQuant::KVFakeQuant(const KVQuantSpec& spec, int64_t kv_heads, int64_t head_dim)
    : spec_(spec), kv_heads_(kv_heads), head_dim_(head_dim) {
  if (spec.bits < 16 && (spec.bits < 2 || spec.bits > 8))
    throw Error("KV bits must be 2..8 or 16, got " + std::to_string(spec.bits));
  if (spec.bits < 16 && spec.group_size > 0 && (kv_heads * head_dim) % spec.group_size != 0)
    throw Error("KV group size " + std::to_string(spec.group_size) + " does not divide kv_heads*head_dim = " +
                std::to_string(kv_heads * head_dim));
  if (!(spec.clip > 0 && spec.clip <= 1)) throw Error("KV clip ratio must be in (0, 1]");
  if (spec.rotate_qk) head_hadamard_ = std::make_shared<HadamardTransform>(head_dim);
}

at::Tensor KVFakeQuant::quantize(const at::Tensor& x) const {
  const int64_t B = x.size(0), S = x.size(2);
  at::Tensor flat = x.transpose(1, 2).reshape({B, S, kv_heads_ * head_dim_});
  flat = fake_quant_activation(flat, Grid{spec_.bits, spec_.symmetric}, spec_.clip, spec_.group_size);
  return flat.view({B, S, kv_heads_, head_dim_}).transpose(1, 2);
}

void KVFakeQuant::apply(int, int, at::Tensor& q, at::Tensor& k, at::Tensor& v) const {
  if (head_hadamard_) {
    q = head_hadamard_->apply(q);
    k = head_hadamard_->apply(k);
  }
  if (spec_.bits < 16) {
    k = quantize(k);
    v = quantize(v);
  }
}

}  // namespace loopq::quant
