#pragma once
// The KV cache's shaping transforms (opt-in, `--kv-transform k,v`), the closed form of
// quant/input_transform.h applied to the cache's rounding. The cache quantizes per token after a
// head Hadamard, so its noise is close to white with a power that follows E||x T||² (T per KV
// head), and it reaches the model through T⁻¹:
//   k: k' = k H T_k, q' = q H T_k⁻ᵀ (online, in place of R3's H); the logit error follows
//      tr(P C_k) tr(P⁻¹ G) with C_k the head's key second moment and G its queries'.
//   v: v' = v T_v (online), T_v⁻¹ folded into o_proj's weight; the error follows tr(P C_v)
//      tr(P⁻¹ G) with G the Gram matrix of o_proj's columns that read the head.
// Per head P is scaled so tr(P C) = tr(P⁻¹ G), the optimum when a quantization group spans several
// heads. Stored as fp32 [kv_heads, head_dim, head_dim] per layer; shared by all loops.
#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <array>
#include <vector>

#include "model/ouro_model.h"
#include "quant/kv_quant.h"

namespace loopq::quant {

struct KVTransformChoice {
  std::vector<std::array<bool, 2>> layers;  // [layer][k, v]: kept
  KVShaping shaping;                        // the kept maps (fp32), what the cache runs
  nlohmann::json report;                    // per layer and tensor: predicted noise ratio, per-loop errors
};

// Samples q, k and v (after RoPE) of `windows` through `model` with its current attention
// transform, then for every layer and requested tensor ([k, v]) computes T, per loop balanced by
// that loop's error energy when `loop_balanced` (LoopQ), else pooled. A layer keeps a map only if
// the mean over loops of its measured relative error (the KV quantizer `kv`: logits for k, the
// o_proj output for v) falls. Kept v maps fold their inverse into o_proj, which must still be
// dense (run before weight quantization). Does not install the maps: put them in the spec.
KVTransformChoice shape_kv_transforms(OuroModel& model, const at::Tensor& windows, int64_t rows_per_site,
                                      int64_t batch_size, const KVQuantSpec& kv, const std::array<bool, 2>& which,
                                      bool loop_balanced, double damp = 0.01);

}  // namespace loopq::quant
