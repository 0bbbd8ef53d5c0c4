#pragma once
// KV-cache fake quantization (quantization-reference.md §2.6): K after RoPE (after the R3 head
// Hadamard when rotating), V at the v_proj output, per token in groups over the flattened
// [kv_heads * head_dim] vector, asymmetric with clip 0.95 by default. Each (loop, layer) cache slot
// is quantized on its own values, so every loop gets its own dynamic parameters.
//
// At 4 and 8 bits the same quantization is also a cache codec (KVPackedCodec): a KV cache made
// by OuroModel::make_cache stores the integer codes with their fp32 group scales and zeros, and
// KVFakeQuant then only rotates; what attention reads back equals the fake-quant K/V bit for bit.
#include <memory>
#include <string>
#include <vector>

#include "kernels/cpu/kv_codes.h"
#include "model/attention_transform.h"
#include "quant/hadamard.h"
#include "quant/quantizer.h"

namespace loopq::quant {

// Per-layer shaping maps of the KV cache (quant/kv_transform.h), per KV head, applied after RoPE
// in place of R3's plain Hadamard H: k <- k H T_k and q <- q H T_k⁻ᵀ (so q·kᵀ is unchanged), and
// v <- v T_v (T_v⁻¹ is folded into o_proj's weight). An empty vector or an undefined entry: none.
struct KVShaping {
  std::vector<at::Tensor> k, v;  // [layer] -> fp32 [kv_heads, head_dim, head_dim]
  bool any() const;
};

struct KVQuantSpec {
  int bits = 16;           // 16: KV stays full precision
  bool symmetric = false;
  int64_t group_size = 128;
  double clip = 0.95;
  bool rotate_qk = false;  // QuaRot R3: Hadamard over head_dim on q and k (q·kᵀ unchanged)
  // Shaping maps (--kv-transform); null: none. Behind a pointer so that torch-free code holding
  // a spec (the quantized-layout checks, the fuzzers) never instantiates a tensor's destructor.
  std::shared_ptr<const KVShaping> shaping;
  bool active() const { return bits < 16 || rotate_qk; }
};

// K or V stored as int4 (two per byte) or int8 codes per token, in groups over the flattened
// [kv_heads * head_dim] vector, with fp32 scales (and fp32 zeros on an asymmetric grid). Planes:
// codes u8 [B, cap, code bytes], scales f32 [B, cap, groups], zeros f32 [B, cap, groups]
// (asymmetric only). CPU, fp32 input.
class KVPackedCodec final : public KVCodec {
 public:
  // Throws unless spec.bits is 4 or 8 and the group divides kv_heads * head_dim.
  KVPackedCodec(const KVQuantSpec& spec, int64_t kv_heads, int64_t head_dim);
  static bool supports(int bits) { return bits == 4 || bits == 8; }
  std::string describe() const override;
  std::vector<at::Tensor> make_planes(int64_t batch, int64_t capacity,
                                      const at::TensorOptions& options) const override;
  void encode(const at::Tensor& x, int64_t pos, std::vector<at::Tensor>& planes) const override;
  void decode(const std::vector<at::Tensor>& planes, int64_t length, at::Tensor& out) const override;
  void decode_head(const std::vector<at::Tensor>& planes, int64_t b, int64_t head, int64_t t0,
                   int64_t count, float* out) const override;
  int64_t bytes_per_token() const override { return format_.row_bytes(); }
  const kernels::KVRowFormat& format() const { return format_; }

 private:
  KVQuantSpec spec_;
  Grid grid_;
  int64_t kv_heads_, head_dim_;
  kernels::KVRowFormat format_;
};

class KVFakeQuant final : public AttentionTransform {
 public:
  KVFakeQuant(const KVQuantSpec& spec, int64_t kv_heads, int64_t head_dim);
  void apply(int loop, int layer, at::Tensor& q, at::Tensor& k, at::Tensor& v) const override;
  // The packed codec at 4 and 8 bits; null otherwise (kv_codec_missing() then names the bits).
  std::shared_ptr<const KVCodec> kv_codec() const override { return codec_; }
  std::string kv_codec_missing() const override;
  // The R3 rotation only; the cache quantizes.
  void apply_unquantized(int loop, int layer, at::Tensor& q, at::Tensor& k, at::Tensor& v) const override;
  const KVQuantSpec& spec() const { return spec_; }

 private:
  at::Tensor quantize(const at::Tensor& x) const;  // [B, KVH, S, hd]
  void rotate(int layer, at::Tensor& q, at::Tensor& k, at::Tensor& v) const;  // R3 or the shaping maps
  KVQuantSpec spec_;
  // Per layer (undefined: none): k map H T_k [KVH, hd, hd], q map H T_k⁻ᵀ [KVH, 1, hd, hd]
  // (q viewed as [B, KVH, G, S, hd]), v map T_v [KVH, hd, hd].
  std::vector<at::Tensor> k_map_, q_map_, v_map_;
  int64_t kv_heads_, head_dim_;
  std::shared_ptr<const HadamardTransform> head_hadamard_;
  std::shared_ptr<const KVPackedCodec> codec_;
};

}  // namespace loopq::quant
