#include "quant/kv_quant.h"

#include <tuple>

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
  if (spec.bits < 16 && KVPackedCodec::supports(spec.bits))
    codec_ = std::make_shared<KVPackedCodec>(spec, kv_heads, head_dim);
  // The maps in float64, rounded once to fp32: the quantizer's model and a reloaded one agree.
  const at::Tensor H = head_hadamard_ ? head_hadamard_->apply(at::eye(head_dim, at::kDouble))
                                      : at::eye(head_dim, at::kDouble);
  auto check = [&](const at::Tensor& t, const char* what, size_t l) {
    if (!t.defined()) return;
    if (t.dim() != 3 || t.size(0) != kv_heads || t.size(1) != head_dim || t.size(2) != head_dim)
      throw Error(std::string("KV ") + what + " transform of layer " + std::to_string(l) + ": expected [" +
                  std::to_string(kv_heads) + ", " + std::to_string(head_dim) + ", " + std::to_string(head_dim) + "]");
  };
  const KVShaping none;
  const KVShaping& shaping = spec.shaping ? *spec.shaping : none;
  for (size_t l = 0; l < shaping.k.size(); ++l) {
    const at::Tensor& t = shaping.k[l];
    check(t, "k", l);
    k_map_.resize(l + 1), q_map_.resize(l + 1);
    if (!t.defined()) continue;
    const at::Tensor T = t.to(at::kCPU, at::kDouble);
    at::Tensor inv, info;
    std::tie(inv, info) = at::linalg_inv_ex(T);
    const at::Tensor Tinv_t = inv.transpose(1, 2);
    if (info.ne(0).any().item<bool>() || !at::isfinite(Tinv_t).all().item<bool>())
      throw Error("KV k transform of layer " + std::to_string(l) + " is singular");
    k_map_[l] = at::matmul(H, T).to(at::kFloat).contiguous();
    q_map_[l] = at::matmul(H, Tinv_t).to(at::kFloat).unsqueeze(1).contiguous();
  }
  for (size_t l = 0; l < shaping.v.size(); ++l) {
    check(shaping.v[l], "v", l);
    v_map_.resize(l + 1);
    if (shaping.v[l].defined()) v_map_[l] = shaping.v[l].to(at::kCPU, at::kFloat).contiguous();
  }
}

bool KVShaping::any() const {
  for (const auto* maps : {&k, &v})
    for (const at::Tensor& t : *maps)
      if (t.defined()) return true;
  return false;
}

void KVFakeQuant::rotate(int layer, at::Tensor& q, at::Tensor& k, at::Tensor& v) const {
  const size_t l = size_t(layer);
  if (l < k_map_.size() && k_map_[l].defined()) {
    const int64_t B = q.size(0), H = q.size(1), S = q.size(2), hd = q.size(3);
    k = at::matmul(k, k_map_[l].to(k.device()));
    q = at::matmul(q.reshape({B, kv_heads_, H / kv_heads_, S, hd}), q_map_[l].to(q.device())).reshape({B, H, S, hd});
  } else if (head_hadamard_) {
    q = head_hadamard_->apply(q);
    k = head_hadamard_->apply(k);
  }
  if (l < v_map_.size() && v_map_[l].defined()) v = at::matmul(v, v_map_[l].to(v.device()));
}

std::string KVFakeQuant::kv_codec_missing() const {
  if (spec_.bits >= 16 || codec_) return {};
  return "KV bits " + std::to_string(spec_.bits) + " have no packed format (packed KV caches take 4 or 8 bits)";
}

void KVFakeQuant::apply_unquantized(int, int layer, at::Tensor& q, at::Tensor& k, at::Tensor& v) const {
  rotate(layer, q, k, v);
}

KVPackedCodec::KVPackedCodec(const KVQuantSpec& spec, int64_t kv_heads, int64_t head_dim)
    : spec_(spec), grid_{spec.bits, spec.symmetric}, kv_heads_(kv_heads), head_dim_(head_dim) {
  if (!supports(spec.bits))
    throw Error("packed KV cache: " + std::to_string(spec.bits) + " bits (4 or 8 supported)");
  format_.bits = spec.bits;
  format_.code_offset = int32_t(grid_.qmin());
  format_.n = kv_heads * head_dim;
  format_.group = spec.group_size > 0 ? spec.group_size : format_.n;
  format_.has_zero = !spec.symmetric;
  kernels::check_kv_format(format_);
}

std::string KVPackedCodec::describe() const {
  return "int" + std::to_string(spec_.bits) + (spec_.symmetric ? " sym" : " asym") +
         (spec_.group_size > 0 ? " g" + std::to_string(spec_.group_size) : std::string(" per-token"));
}

std::vector<at::Tensor> KVPackedCodec::make_planes(int64_t batch, int64_t capacity,
                                                   const at::TensorOptions& options) const {
  std::vector<at::Tensor> p;
  p.push_back(at::zeros({batch, capacity, format_.code_bytes()}, options.dtype(at::kByte)));
  p.push_back(at::zeros({batch, capacity, format_.groups()}, options.dtype(at::kFloat)));
  if (format_.has_zero) p.push_back(at::zeros({batch, capacity, format_.groups()}, options.dtype(at::kFloat)));
  return p;
}

void KVPackedCodec::encode(const at::Tensor& x, int64_t pos, std::vector<at::Tensor>& planes) const {
  if (x.dim() != 4 || x.size(1) != kv_heads_ || x.size(3) != head_dim_ || !x.device().is_cpu() ||
      x.scalar_type() != at::kFloat)
    throw Error("packed KV cache: K/V must be CPU fp32 [batch, kv_heads, tokens, head_dim]");
  const int64_t B = x.size(0), S = x.size(2), D = format_.n, G = format_.groups();
  const int64_t cap = planes[0].size(1), cb = format_.code_bytes();
  if (planes[0].size(0) != B || pos < 0 || pos + S > cap) throw Error("packed KV cache: write outside the planes");
  // KVFakeQuant::quantize's arithmetic (quantize_activation), stopping at the codes: the kernel
  // repeats it in fp32 bit for bit, on token rows of the flattened [kv_heads * head_dim] vector.
  const at::Tensor rows = x.transpose(1, 2).contiguous();  // [B, S, KVH, hd]
  const float* xp = rows.data_ptr<float>();
  uint8_t* codes = planes[0].data_ptr<uint8_t>();
  float* scales = planes[1].data_ptr<float>();
  float* zeros = format_.has_zero ? planes[2].data_ptr<float>() : nullptr;
  for (int64_t b = 0; b < B; ++b) {
    const int64_t t0 = b * cap + pos;  // first row written
    kernels::kv_quantize_rows(format_, xp + b * S * D, S, float(spec_.clip), spec_.group_size <= 0,
                              codes + t0 * cb, scales + t0 * G, zeros ? zeros + t0 * G : nullptr);
  }
}

void KVPackedCodec::decode(const std::vector<at::Tensor>& planes, int64_t length, at::Tensor& out) const {
  const int64_t B = planes[0].size(0), cap = planes[0].size(1);
  if (out.dim() != 4 || out.size(0) != B || out.size(1) != kv_heads_ || out.size(2) < length ||
      out.size(3) != head_dim_ || !out.is_contiguous() || out.scalar_type() != at::kFloat || length > cap)
    throw Error("packed KV cache: bad dequantization buffer");
  const int64_t cb = format_.code_bytes(), G = format_.groups(), ocap = out.size(2);
  const uint8_t* codes = planes[0].data_ptr<uint8_t>();
  const float* scales = planes[1].data_ptr<float>();
  const float* zeros = format_.has_zero ? planes[2].data_ptr<float>() : nullptr;
  float* o = out.data_ptr<float>();
  for (int64_t b = 0; b < B; ++b)
    kernels::kv_dequant_rows(format_, codes + b * cap * cb, scales + b * cap * G,
                             zeros ? zeros + b * cap * G : nullptr, length,
                             o + b * kv_heads_ * ocap * head_dim_, head_dim_, head_dim_, ocap * head_dim_);
}

void KVPackedCodec::decode_head(const std::vector<at::Tensor>& planes, int64_t b, int64_t head,
                                int64_t t0, int64_t count, float* out) const {
  const int64_t B = planes[0].size(0), cap = planes[0].size(1);
  if (b < 0 || b >= B || head < 0 || head >= kv_heads_ || t0 < 0 || count < 0 || t0 + count > cap)
    throw Error("packed KV cache: head read outside the planes");
  const int64_t cb = format_.code_bytes(), G = format_.groups();
  const uint8_t* codes = planes[0].data_ptr<uint8_t>();
  const float* scales = planes[1].data_ptr<float>();
  const float* zeros = format_.has_zero ? planes[2].data_ptr<float>() : nullptr;
  for (int64_t t = 0; t < count; ++t) {
    const int64_t r = b * cap + t0 + t;
    kernels::kv_dequant_segment(format_, codes + r * cb, scales + r * G, zeros ? zeros + r * G : nullptr,
                                head * head_dim_, head_dim_, out + t * head_dim_);
  }
}

at::Tensor KVFakeQuant::quantize(const at::Tensor& x) const {
  const int64_t B = x.size(0), S = x.size(2);
  at::Tensor flat = x.transpose(1, 2).reshape({B, S, kv_heads_ * head_dim_});
  flat = fake_quant_activation(flat, Grid{spec_.bits, spec_.symmetric}, spec_.clip, spec_.group_size);
  return flat.view({B, S, kv_heads_, head_dim_}).transpose(1, 2);
}

void KVFakeQuant::apply(int, int layer, at::Tensor& q, at::Tensor& k, at::Tensor& v) const {
  rotate(layer, q, k, v);
  if (spec_.bits < 16) {
    k = quantize(k);
    v = quantize(v);
  }
}

}  // namespace loopq::quant
