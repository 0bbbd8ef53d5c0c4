#pragma once
// The Ouro looped LM forward pass (docs/ouro-architecture.md §4-§6): embedding, T loops over the
// N shared sandwich-norm layers with model.norm after every loop, per-loop readout, exit gate.
#include <ATen/ATen.h>

#include <optional>
#include <vector>

#include <memory>

#include "model/attention_transform.h"
#include "model/config.h"
#include "model/exit_mode.h"
#include "model/hooks.h"
#include "model/kv_cache.h"
#include "model/linear.h"

namespace loopq {

struct LayerWeights {
  at::Tensor input_norm;     // input_layernorm: pre-attention
  at::Tensor attn_out_norm;  // input_layernorm_2: on the attention output, before the residual add
  at::Tensor ffn_in_norm;    // post_attention_layernorm: pre-FFN (Llama naming trap, §4.2)
  at::Tensor ffn_out_norm;   // post_attention_layernorm_2: on the MLP output
  LinearPtr q, k, v, o, gate, up, down;

  LinearPtr& linear(LinearSite site);
  const LinearPtr& linear(LinearSite site) const;
};

struct OuroWeights {
  at::Tensor embed;                    // [V, d] fp32 (bf16 on the packed runtime when exact)
  std::vector<LayerWeights> layers;    // N
  at::Tensor final_norm;               // model.norm, applied after every loop
  LinearPtr lm_head;                   // [V, d]
  at::Tensor exit_gate_weight;         // [1, d] (undefined when absent)
  at::Tensor exit_gate_bias;           // [1]
  // Optional per-loop state alignment (LoopQ C): loop t's state is
  // rms_norm(h, state_weight[p]) + state_bias[p] with p = min(t, P - 1), replacing model.norm.
  at::Tensor state_weight;             // [P, d] (undefined: model.norm for every loop)
  at::Tensor state_bias;               // [P, d] (undefined: no bias)
};

struct ForwardOptions {
  int64_t loops = 0;                  // 0: config total_ut_steps
  std::optional<ExitMode> exit;       // unset: the config's default mode
  bool loop_logits = false;           // also return every loop's readout logits
  bool last_position_only = false;    // logits only for the final column
  bool compute_logits = true;
  LoopHooks* hooks = nullptr;
};

struct ForwardResult {
  std::vector<at::Tensor> states;        // per loop: normed state [B, S, d]
  at::Tensor gate_logits;                // [T, B, S]; undefined without a gate
  at::Tensor exit_probs;                 // [T, B, S]; undefined without a gate
  at::Tensor logits;                     // [B, S, V] (S = 1 with last_position_only)
  std::vector<at::Tensor> loop_logits;   // per loop, when requested
};

class OuroModel {
 public:
  OuroModel(LoopLMConfig config, OuroWeights weights);

  // ids: [B, S] int64. attention_mask: [B, S] (1 = token, 0 = padding), default all ones.
  // With a cache, the new tokens attend to everything cached before them; the cache's loop count
  // must equal the run's loop count.
  ForwardResult forward(const at::Tensor& ids, const ForwardOptions& options,
                        KVCache* cache = nullptr, const at::Tensor& attention_mask = {}) const;

  // A cache for `batch` sequences at `loops` loops. With packed_kv() on (the default) and an
  // attention transform that quantizes K/V to a format it has a codec for (4 or 8 bits, on the
  // CPU), the cache stores K/V as those integer codes and the transform leaves their
  // quantization to it; otherwise fp32, with a one-line notice on stderr (once per model) when
  // K/V are quantized but cannot be stored packed.
  KVCache make_cache(int64_t batch, int64_t loops, int64_t capacity) const;
  // Packed KV caches on or off (off: make_cache always stores fp32, the fake-quant reference).
  void set_packed_kv(bool on) { packed_kv_ = on; }
  bool packed_kv() const { return packed_kv_; }
  // The plain-loop decode step (model/decode_math.h) for one-token CPU fp32 steps without
  // autograd or hooks; off: every step runs the ATen ops (the reference the tests compare with).
  void set_fast_decode(bool on) { fast_decode_ = on; }
  bool fast_decode() const { return fast_decode_; }
  // (loop, layer) steps this model has run through the plain decode step (for tests).
  int64_t fast_decode_layers() const { return fast_decode_layers_; }
  int64_t resolve_loops(int64_t loops) const { return loops > 0 ? loops : config_.total_ut_steps; }
  // Loop `loop`'s normed state from the residual stream h: model.norm, or the per-loop alignment.
  at::Tensor loop_state(const at::Tensor& h, int loop) const;
  // Logits of one normed state [.., d] -> [.., V] (the LM head).
  at::Tensor readout(const at::Tensor& state, int loop, LoopHooks* hooks = nullptr) const;
  bool has_exit_gate() const { return weights_.exit_gate_weight.defined(); }
  // The exit mode a run with `options` uses: the explicit one (throws if the model cannot serve
  // it) or the config default with the reference's fall-backs (no gate -> last; a default step
  // beyond the loop count -> cdf/last).
  ExitMode resolve_exit_mode(const ForwardOptions& options) const;
  // Logits of the exit selection from per-loop states (each [..., d]) and exit probabilities
  // [T, ...] (undefined unless the mode needs them). `loop_logits` caches per-loop readouts (size
  // T; entries filled on demand and reused), so a selection equal to loop t's readout is that
  // very tensor.
  at::Tensor exit_logits(const std::vector<at::Tensor>& states, const at::Tensor& exit_probs,
                         const ExitMode& mode, LoopHooks* hooks,
                         std::vector<at::Tensor>& loop_logits) const;
  int64_t parameter_count() const;
  at::Device device() const { return weights_.embed.device(); }
  void to(const at::Device& device);

  const LoopLMConfig& config() const { return config_; }
  OuroWeights& weights() { return weights_; }
  // KV-cache quantization and friends (null: plain attention). Applies to every forward.
  void set_attention_transform(std::shared_ptr<const AttentionTransform> t) { attention_transform_ = std::move(t); }
  const std::shared_ptr<const AttentionTransform>& attention_transform() const { return attention_transform_; }
  const OuroWeights& weights() const { return weights_; }

 private:
  at::Tensor layer_forward(const at::Tensor& x, int loop, int layer, const at::Tensor& cos,
                           const at::Tensor& sin, const at::Tensor& allowed, KVCache* cache,
                           LoopHooks* hooks) const;
  // layer_forward for one token of one sequence through decode_math; false (nothing done)
  // when the step does not qualify.
  bool decode_layer(const at::Tensor& x, int loop, int layer, const at::Tensor& cos,
                    const at::Tensor& sin, const at::Tensor& allowed, KVCache* cache,
                    at::Tensor& out) const;

  LoopLMConfig config_;
  OuroWeights weights_;
  at::Tensor inv_freq_;  // [hd/2] rotary frequencies
  std::shared_ptr<const AttentionTransform> attention_transform_;
  bool packed_kv_ = true;
  bool fast_decode_ = true;
  mutable int64_t fast_decode_layers_ = 0;
  mutable bool kv_notice_given_ = false;
};

// RMSNorm in fp32 with a plain (not 1 + w) weight (§4.3).
at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps);
// Exit distribution p_t from gate logits [T, B, S] (§5.1): p_t = λ_t Π_{j<t}(1-λ_j), last = rest.
at::Tensor exit_distribution(const at::Tensor& gate_logits);

}  // namespace loopq
