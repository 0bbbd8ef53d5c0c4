#pragma once
// How a KV cache stores K or V other than as fp32 (e.g. integer codes with group scales). The
// cache keeps, per slot and per K/V, the codec's planes: tensors whose dim 1 is the token axis
// ([batch, capacity, ...]), grows them along it, and asks the codec to write new tokens and to
// read the slot back. The model knows only this interface; quantization provides codecs.
#include <ATen/ATen.h>

#include <string>
#include <vector>

namespace loopq {

class KVCodec {
 public:
  virtual ~KVCodec() = default;
  // Short description for notices and reports, e.g. "int4 asym g128".
  virtual std::string describe() const = 0;
  // Zeroed planes for `capacity` tokens of `batch` sequences, each [batch, capacity, ...].
  virtual std::vector<at::Tensor> make_planes(int64_t batch, int64_t capacity,
                                              const at::TensorOptions& options) const = 0;
  // Stores x [B, KVH, S, hd] (fp32) at token positions [pos, pos + S) of the planes.
  virtual void encode(const at::Tensor& x, int64_t pos, std::vector<at::Tensor>& planes) const = 0;
  // Reads tokens [0, length) back into out [B, KVH, >= length, hd] (fp32, contiguous).
  virtual void decode(const std::vector<at::Tensor>& planes, int64_t length, at::Tensor& out) const = 0;
  // Tokens [t0, t0 + count) of sequence b, kv head `head`, into out [count, head_dim] (fp32,
  // contiguous): the values decode() writes for them, bit for bit. Lets attention read the
  // codes a block at a time instead of a decoded copy of the slot.
  virtual void decode_head(const std::vector<at::Tensor>& planes, int64_t b, int64_t head,
                           int64_t t0, int64_t count, float* out) const = 0;
  // Bytes one token of one sequence takes in the planes (one of K or V, scales included).
  virtual int64_t bytes_per_token() const = 0;
};

}  // namespace loopq
