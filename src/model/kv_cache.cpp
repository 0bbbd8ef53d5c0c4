#include "model/kv_cache.h"

#include "model/decode_math.h"
#include "util/error.h"

namespace loopq {

KVCache::KVCache(int64_t batch, int64_t loops, int64_t num_layers, int64_t kv_heads,
                 int64_t head_dim, int64_t capacity, const at::TensorOptions& options,
                 std::shared_ptr<const KVCodec> codec)
    : batch_(batch), loops_(loops), num_layers_(num_layers), kv_heads_(kv_heads),
      head_dim_(head_dim), capacity_(std::max<int64_t>(capacity, 1)), codec_(std::move(codec)),
      options_(options) {
  if (batch <= 0 || loops <= 0 || num_layers <= 0) throw Error("KVCache: bad dimensions");
  if (codec_) {
    key_planes_.resize(num_slots());
    value_planes_.resize(num_slots());
    for (int64_t s = 0; s < num_slots(); ++s) {
      key_planes_[s] = codec_->make_planes(batch_, capacity_, options);
      value_planes_[s] = codec_->make_planes(batch_, capacity_, options);
    }
  } else {
    keys_.resize(num_slots());
    values_.resize(num_slots());
    for (int64_t s = 0; s < num_slots(); ++s) {
      keys_[s] = at::zeros({batch_, kv_heads_, capacity_, head_dim_}, options);
      values_[s] = at::zeros({batch_, kv_heads_, capacity_, head_dim_}, options);
    }
  }
  slot_length_.assign(num_slots(), 0);
  key_mask_ = at::zeros({batch_, capacity_}, options.dtype(at::kBool));
  real_count_ = at::zeros({batch_}, options.dtype(at::kLong));
}

void KVCache::reserve(int64_t needed) {
  if (needed <= capacity_) return;
  int64_t cap = std::max(needed, capacity_ * 2);
  auto grow = [&](at::Tensor& t, int64_t dim) {
    auto sizes = t.sizes().vec();
    sizes[dim] = cap;
    at::Tensor bigger = at::zeros(sizes, t.options());
    bigger.narrow(dim, 0, length_).copy_(t.narrow(dim, 0, length_));
    t = bigger;
  };
  for (auto& k : keys_) grow(k, 2);
  for (auto& v : values_) grow(v, 2);
  for (auto* planes : {&key_planes_, &value_planes_})
    for (auto& slot : *planes)
      for (auto& p : slot) grow(p, 1);
  key_buffer_ = value_buffer_ = at::Tensor();  // reallocated at the new capacity on next use
  grow(key_mask_, 1);
  capacity_ = cap;
}

at::Tensor KVCache::begin_step(const at::Tensor& new_mask) {
  if (step_tokens_ >= 0) throw Error("KVCache: begin_step called twice without end_step");
  if (new_mask.dim() != 2 || new_mask.size(0) != batch_)
    throw Error("KVCache: mask must be [batch, tokens]");
  const int64_t s = new_mask.size(1);
  reserve(length_ + s);
  at::Tensor m = new_mask.to(key_mask_.device(), at::kBool);
  key_mask_.narrow(1, length_, s).copy_(m);
  step_key_mask_ = key_mask_.narrow(1, 0, length_ + s);
  at::Tensor ml = m.to(at::kLong);
  at::Tensor positions = real_count_.unsqueeze(1) + ml.cumsum(1) - ml;
  real_count_ = real_count_ + ml.sum(1);
  step_tokens_ = s;
  return positions;
}

void KVCache::store(int64_t slot, const at::Tensor& k, const at::Tensor& v) {
  if (step_tokens_ < 0) throw Error("KVCache: append outside a step");
  if (slot < 0 || slot >= num_slots()) throw Error("KVCache: slot out of range");
  if (slot_length_[slot] != length_)
    throw Error("KVCache: slot " + std::to_string(slot) + " written twice in one step");
  if (k.size(2) != step_tokens_ || v.size(2) != step_tokens_)
    throw Error("KVCache: append of " + std::to_string(k.size(2)) + " tokens in a step of " +
                std::to_string(step_tokens_));
  if (codec_) {
    codec_->encode(k, length_, key_planes_[slot]);
    codec_->encode(v, length_, value_planes_[slot]);
  } else {
    keys_[slot].narrow(2, length_, step_tokens_).copy_(k);
    values_[slot].narrow(2, length_, step_tokens_).copy_(v);
  }
  slot_length_[slot] = length_ + step_tokens_;
}

std::pair<at::Tensor, at::Tensor> KVCache::append(int64_t slot, const at::Tensor& k,
                                                  const at::Tensor& v) {
  store(slot, k, v);
  const int64_t n = slot_length_[slot];
  if (codec_) {
    if (!key_buffer_.defined()) {
      key_buffer_ = at::empty({batch_, kv_heads_, capacity_, head_dim_}, options_.dtype(at::kFloat));
      value_buffer_ = at::empty({batch_, kv_heads_, capacity_, head_dim_}, options_.dtype(at::kFloat));
    }
    codec_->decode(key_planes_[slot], n, key_buffer_);
    codec_->decode(value_planes_[slot], n, value_buffer_);
    return {key_buffer_.narrow(2, 0, n), value_buffer_.narrow(2, 0, n)};
  }
  return {keys_[slot].narrow(2, 0, n), values_[slot].narrow(2, 0, n)};
}

void KVCache::attend_one(int64_t slot, const float* q, int64_t group, const bool* allowed,
                         float scale, float* out, int threads) const {
  if (slot < 0 || slot >= num_slots()) throw Error("KVCache: slot out of range");
  if (batch_ != 1) throw Error("KVCache: attend_one takes a batch of one sequence");
  const int64_t len = slot_length_[slot], hd = head_dim_;
  if (!options_.device().is_cpu()) throw Error("KVCache: attend_one runs on the CPU");
  if (codec_) {
    const auto& kp = key_planes_[slot];
    const auto& vp = value_planes_[slot];
    const decode::HeadRows decoded = [&](int kv, int64_t head, int64_t t0, int64_t count, float* scratch) {
      codec_->decode_head(kv == 0 ? kp : vp, 0, head, t0, count, scratch);
      return static_cast<const float*>(scratch);
    };
    decode::attend_one(q, kv_heads_, group, hd, len, allowed, scale, decoded, out, threads);
    return;
  }
  const at::Tensor& k = keys_[slot];
  const at::Tensor& v = values_[slot];
  if (k.scalar_type() != at::kFloat) throw Error("KVCache: attend_one reads fp32 storage");
  decode::attend_one(q, kv_heads_, group, hd, k.data_ptr<float>(), v.data_ptr<float>(),
                     k.stride(1), len, allowed, scale, out, threads);
}

void KVCache::end_step() {
  if (step_tokens_ < 0) throw Error("KVCache: end_step without begin_step");
  for (int64_t s = 0; s < num_slots(); ++s)
    if (slot_length_[s] != length_ + step_tokens_)
      throw Error("KVCache: slot " + std::to_string(s) + " was not written in this step");
  length_ += step_tokens_;
  step_tokens_ = -1;
}

int64_t KVCache::bytes() const {
  int64_t n = buffer_bytes();
  for (const auto& k : keys_) n += k.numel() * k.element_size();
  for (const auto& v : values_) n += v.numel() * v.element_size();
  for (const auto* planes : {&key_planes_, &value_planes_})
    for (const auto& slot : *planes)
      for (const auto& p : slot) n += p.numel() * p.element_size();
  return n;
}

int64_t KVCache::bytes_per_token() const {
  if (codec_) return 2 * num_slots() * batch_ * codec_->bytes_per_token();
  return 2 * num_slots() * batch_ * kv_heads_ * head_dim_ * int64_t(options_.dtype().itemsize());
}

int64_t KVCache::buffer_bytes() const {
  int64_t n = 0;
  for (const auto* b : {&key_buffer_, &value_buffer_})
    if (b->defined()) n += b->numel() * b->element_size();
  return n;
}

}  // namespace loopq
