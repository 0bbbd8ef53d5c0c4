#pragma once
// KV cache for a looped LM: one independent slot per (loop, layer), slot = t*N + l
// (docs/ouro-architecture.md §6). One authoritative length and one padding mask per sequence,
// shared by all slots, so slots can never disagree about what has been seen.
//
// Storage is fp32 by default. With a codec (model/kv_codec.h, e.g. int4/int8 codes with group
// scales) every slot keeps only the codec's planes: append encodes the new tokens into them and
// returns the slot's K and V decoded into one dequantization buffer shared by all slots, so the
// cache holds no fp32 copy of K/V beyond that one slot-sized buffer.
#include <ATen/ATen.h>

#include <memory>
#include <vector>

#include "model/kv_codec.h"

namespace loopq {

class KVCache {
 public:
  KVCache(int64_t batch, int64_t loops, int64_t num_layers, int64_t kv_heads, int64_t head_dim,
          int64_t capacity, const at::TensorOptions& options,
          std::shared_ptr<const KVCodec> codec = nullptr);

  int64_t batch() const { return batch_; }
  int64_t loops() const { return loops_; }
  int64_t num_layers() const { return num_layers_; }
  int64_t num_slots() const { return loops_ * num_layers_; }
  int64_t slot(int64_t loop, int64_t layer) const { return loop * num_layers_ + layer; }
  int64_t length() const { return length_; }
  int64_t capacity() const { return capacity_; }

  // Starts a step of `new_tokens` positions. `new_mask` [B, S] marks real (1) vs padding (0)
  // tokens. Returns the position ids [B, S] of the new tokens (count of real tokens before them),
  // so left-padded sequences get the same positions as unpadded ones.
  at::Tensor begin_step(const at::Tensor& new_mask);
  // Writes k, v [B, KVH, S, hd] for `slot` at the step's positions; returns the slot's full
  // K and V [B, KVH, length + S, hd]. With a codec they are views of the shared dequantization
  // buffer, valid until the next append.
  std::pair<at::Tensor, at::Tensor> append(int64_t slot, const at::Tensor& k, const at::Tensor& v);
  // append without reading the slot back (for attend_one).
  void store(int64_t slot, const at::Tensor& k, const at::Tensor& v);
  // Single-query attention (model/decode_math.h) of q [kv_heads * group, head_dim] (fp32,
  // contiguous; batch 1) over every token the slot holds, read in place from fp32 storage or a
  // block at a time from a codec's codes: the same values as attention over append's K/V.
  void attend_one(int64_t slot, const float* q, int64_t group, const bool* allowed, float scale,
                  float* out, int threads) const;
  // Key validity [B, length + S] for the step in progress (past and new positions).
  const at::Tensor& step_key_mask() const { return step_key_mask_; }
  // Ends the step; checks every slot was written exactly once.
  void end_step();
  // Positions filled in a slot (equals length() between steps; for tests).
  int64_t slot_length(int64_t slot) const { return slot_length_.at(slot); }
  // The codec K and V are stored with (null: fp32).
  const std::shared_ptr<const KVCodec>& codec() const { return codec_; }
  // Resident bytes of K and V: storage at the current capacity (codes, scales and zeros with a
  // codec) plus the dequantization buffer once allocated. Equals
  // bytes_per_token() * capacity() + buffer_bytes().
  int64_t bytes() const;
  // Storage bytes one token position takes in every slot, K and V, all sequences of the batch,
  // scales included (fp32: 2 * loops * layers * batch * kv_heads * head_dim * 4).
  int64_t bytes_per_token() const;
  // Bytes of the dequantization buffer (0 for fp32 storage, or before the first append).
  int64_t buffer_bytes() const;

 private:
  void reserve(int64_t needed);

  int64_t batch_, loops_, num_layers_, kv_heads_, head_dim_, capacity_;
  int64_t length_ = 0;
  int64_t step_tokens_ = -1;  // -1 when no step is in progress
  at::Tensor key_mask_;       // [B, capacity] bool
  at::Tensor real_count_;     // [B] int64: real tokens seen per sequence
  at::Tensor step_key_mask_;
  std::shared_ptr<const KVCodec> codec_;
  at::TensorOptions options_;
  std::vector<at::Tensor> keys_, values_;  // fp32: per slot [B, KVH, capacity, hd]
  std::vector<std::vector<at::Tensor>> key_planes_, value_planes_;  // codec: per slot
  at::Tensor key_buffer_, value_buffer_;   // codec: [B, KVH, capacity, hd] dequantized K/V
  std::vector<int64_t> slot_length_;
};

}  // namespace loopq
