#include "model/ouro_model.h"

#include <ATen/Parallel.h>
#include <ATen/core/grad_mode.h>

#include <cmath>
#include <cstdio>
#include <string>

#include "model/decode_math.h"
#include "util/error.h"

namespace loopq {
namespace {

// Half-split ("rotate_half") RoPE on raw HF weights (§4.5): element i pairs with i + hd/2.
at::Tensor apply_rope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  const int64_t half = x.size(-1) / 2;
  at::Tensor rotated = at::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
  return x * cos + rotated * sin;
}

at::Tensor run_linear(const LinearPtr& op, at::Tensor x, int loop, int layer, LinearSite site,
                      LoopHooks* hooks) {
  if (hooks) hooks->on_linear_input(loop, layer, site, x);
  at::Tensor y = op->forward(x, loop);
  if (hooks) hooks->on_linear_output(loop, layer, site, y);
  return y;
}

}  // namespace

LinearPtr& LayerWeights::linear(LinearSite site) {
  switch (site) {
    case LinearSite::Q: return q;
    case LinearSite::K: return k;
    case LinearSite::V: return v;
    case LinearSite::O: return o;
    case LinearSite::Gate: return gate;
    case LinearSite::Up: return up;
    case LinearSite::Down: return down;
    default: throw Error("LayerWeights: lm_head is not a layer linear");
  }
}

const LinearPtr& LayerWeights::linear(LinearSite site) const {
  return const_cast<LayerWeights*>(this)->linear(site);
}

at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps) {
  at::Tensor x32 = x.to(at::kFloat);
  at::Tensor normed = x32 * at::rsqrt(x32.pow(2).mean(-1, /*keepdim=*/true) + eps);
  return weight * normed.to(x.scalar_type());
}

at::Tensor exit_distribution(const at::Tensor& gate_logits) {
  const int64_t T = gate_logits.size(0);
  at::Tensor lambda = at::sigmoid(gate_logits);
  std::vector<at::Tensor> p;
  at::Tensor remaining = at::ones_like(lambda[0]);
  for (int64_t t = 0; t < T - 1; ++t) {
    p.push_back(lambda[t] * remaining);
    remaining = remaining * (1 - lambda[t]);
  }
  p.push_back(remaining);  // λ_T is computed by the reference but unused
  return at::stack(p, 0);
}

OuroModel::OuroModel(LoopLMConfig config, OuroWeights weights)
    : config_(std::move(config)), weights_(std::move(weights)) {
  validate_config(config_);
  if (static_cast<int64_t>(weights_.layers.size()) != config_.num_layers)
    throw Error("OuroModel: layer count does not match config");
  const int64_t hd = config_.head_dim;
  // inv_freq[i] = theta^(-2i/hd), computed in fp32 as the reference does.
  at::Tensor idx = at::arange(0, hd, 2, at::TensorOptions().dtype(at::kLong)).to(at::kFloat);
  inv_freq_ = 1.0 / at::pow(at::scalar_tensor(config_.rope_theta, at::kFloat), idx / hd);
  inv_freq_ = inv_freq_.to(weights_.embed.device());
}

void OuroModel::to(const at::Device& device) {
  auto mv = [&](at::Tensor& t) {
    if (t.defined()) t = t.to(device);
  };
  mv(weights_.embed);
  mv(weights_.final_norm);
  mv(weights_.exit_gate_weight);
  mv(weights_.exit_gate_bias);
  mv(weights_.state_weight);
  mv(weights_.state_bias);
  mv(inv_freq_);
  weights_.lm_head->to(device);
  for (auto& L : weights_.layers) {
    mv(L.input_norm), mv(L.attn_out_norm), mv(L.ffn_in_norm), mv(L.ffn_out_norm);
    for (int s = 0; s < kNumLayerSites; ++s) L.linear(static_cast<LinearSite>(s))->to(device);
  }
}

int64_t OuroModel::parameter_count() const {
  int64_t n = weights_.embed.numel() + weights_.final_norm.numel();
  if (!config_.tie_word_embeddings)
    n += weights_.lm_head->in_features() * weights_.lm_head->out_features();
  if (has_exit_gate()) n += weights_.exit_gate_weight.numel() + weights_.exit_gate_bias.numel();
  for (const auto& L : weights_.layers) {
    n += L.input_norm.numel() + L.attn_out_norm.numel() + L.ffn_in_norm.numel() +
         L.ffn_out_norm.numel();
    for (int s = 0; s < kNumLayerSites; ++s) {
      const auto& op = L.linear(static_cast<LinearSite>(s));
      n += op->in_features() * op->out_features();
    }
  }
  return n;
}

KVCache OuroModel::make_cache(int64_t batch, int64_t loops, int64_t capacity) const {
  std::shared_ptr<const KVCodec> codec;
  if (packed_kv_ && attention_transform_) {
    codec = attention_transform_->kv_codec();
    std::string why = codec ? "" : attention_transform_->kv_codec_missing();
    if (codec && !device().is_cpu()) {
      why = "the packed KV cache runs on the CPU only";
      codec = nullptr;
    }
    if (!why.empty() && !kv_notice_given_) {
      std::fprintf(stderr, "loopq: KV cache stays fp32 (fake-quantized K/V): %s\n", why.c_str());
      kv_notice_given_ = true;
    }
  }
  return KVCache(batch, resolve_loops(loops), config_.num_layers, config_.num_kv_heads,
                 config_.head_dim, capacity,
                 at::TensorOptions().dtype(at::kFloat).device(device()), std::move(codec));
}

at::Tensor OuroModel::loop_state(const at::Tensor& h, int loop) const {
  const at::Tensor& w = weights_.state_weight;
  if (!w.defined()) return rms_norm(h, weights_.final_norm, config_.rms_norm_eps);
  at::Tensor s = rms_norm(h, w[std::min<int64_t>(loop, w.size(0) - 1)], config_.rms_norm_eps);
  const at::Tensor& b = weights_.state_bias;
  return b.defined() ? s + b[std::min<int64_t>(loop, b.size(0) - 1)] : s;
}

at::Tensor OuroModel::readout(const at::Tensor& state, int loop, LoopHooks* hooks) const {
  return run_linear(weights_.lm_head, state, loop, -1, LinearSite::LMHead, hooks);
}

bool OuroModel::decode_layer(const at::Tensor& x, int loop, int layer, const at::Tensor& cos,
                             const at::Tensor& sin, const at::Tensor& allowed, KVCache* cache,
                             at::Tensor& out) const {
  const LayerWeights& L = weights_.layers[layer];
  auto plain = [](const at::Tensor& t) {
    return t.defined() && t.device().is_cpu() && t.scalar_type() == at::kFloat && t.is_contiguous();
  };
  auto cpu = [](const at::Tensor& t) { return t.defined() && t.device().is_cpu(); };
  if (!plain(x) || x.size(0) != 1 || x.size(1) != 1 || !cpu(L.input_norm) ||
      !cpu(L.attn_out_norm) || !cpu(L.ffn_in_norm) || !cpu(L.ffn_out_norm))
    return false;
  // A bf16 norm weight widens exactly, as ATen's type promotion does in rms_norm().
  auto f32 = [](const at::Tensor& t) { return t.to(at::kFloat).contiguous(); };
  const at::Tensor w_in = f32(L.input_norm), w_attn = f32(L.attn_out_norm);
  const at::Tensor w_ffn_in = f32(L.ffn_in_norm), w_ffn_out = f32(L.ffn_out_norm);
  const double eps = config_.rms_norm_eps;
  const int64_t d = config_.hidden_size, H = config_.num_heads, KVH = config_.num_kv_heads;
  const int64_t hd = config_.head_dim;
  auto fp = [](const at::Tensor& t) { return t.data_ptr<float>(); };
  auto linear = [&](const LinearPtr& op, const at::Tensor& in) {
    return op->forward(in, loop).to(at::kFloat).contiguous();  // no-ops for fp32 contiguous
  };

  at::Tensor h = at::empty_like(x);
  decode::rms_norm(fp(x), fp(w_in), d, eps, fp(h));
  at::Tensor q = linear(L.q, h), k = linear(L.k, h), v = linear(L.v, h);
  const at::Tensor c = cos.contiguous(), s = sin.contiguous();  // [1, 1, 1, hd]
  at::Tensor qr = at::empty({1, H, 1, hd}, x.options()), kr = at::empty({1, KVH, 1, hd}, x.options());
  decode::rope(fp(q), H, hd, fp(c), fp(s), fp(qr));
  decode::rope(fp(k), KVH, hd, fp(c), fp(s), fp(kr));
  q = qr, k = kr, v = v.view({1, 1, KVH, hd}).transpose(1, 2);
  if (attention_transform_) {
    if (cache && cache->codec()) attention_transform_->apply_unquantized(loop, layer, q, k, v);
    else attention_transform_->apply(loop, layer, q, k, v);
  }
  q = q.to(at::kFloat).contiguous();
  at::Tensor attn = at::empty({1, 1, H * hd}, x.options());
  const float scale = float(1.0 / std::sqrt(double(hd)));
  const at::Tensor mask = allowed.contiguous();
  const int threads = at::get_num_threads();
  if (cache) {
    const int64_t slot = cache->slot(loop, layer);
    cache->store(slot, k, v);
    cache->attend_one(slot, fp(q), H / KVH, mask.data_ptr<bool>(), scale, fp(attn), threads);
  } else {  // a single token without a cache attends to itself
    const at::Tensor kc = k.to(at::kFloat).contiguous(), vc = v.to(at::kFloat).contiguous();
    decode::attend_one(fp(q), KVH, H / KVH, hd, fp(kc), fp(vc), hd, 1, mask.data_ptr<bool>(), scale,
                       fp(attn), threads);
  }

  at::Tensor o = linear(L.o, attn);
  at::Tensor x1 = at::empty_like(x);
  decode::add_rms_norm(fp(x), fp(o), fp(w_attn), d, eps, fp(x1));
  at::Tensor m = at::empty_like(x);
  decode::rms_norm(fp(x1), fp(w_ffn_in), d, eps, fp(m));
  at::Tensor g = linear(L.gate, m), u = linear(L.up, m);
  at::Tensor gu = at::empty_like(g);
  decode::silu_mul(fp(g), fp(u), g.numel(), fp(gu));
  at::Tensor dn = linear(L.down, gu);
  out = at::empty_like(x);
  decode::add_rms_norm(fp(x1), fp(dn), fp(w_ffn_out), d, eps, fp(out));
  ++fast_decode_layers_;
  return true;
}

at::Tensor OuroModel::layer_forward(const at::Tensor& x, int loop, int layer,
                                    const at::Tensor& cos, const at::Tensor& sin,
                                    const at::Tensor& allowed, KVCache* cache,
                                    LoopHooks* hooks) const {
  if (fast_decode_ && !hooks && !at::GradMode::is_enabled()) {
    at::Tensor out;
    if (decode_layer(x, loop, layer, cos, sin, allowed, cache, out)) return out;
  }
  const LayerWeights& L = weights_.layers[layer];
  const double eps = config_.rms_norm_eps;
  const int64_t B = x.size(0), S = x.size(1);
  const int64_t H = config_.num_heads, KVH = config_.num_kv_heads, hd = config_.head_dim;
  const int64_t G = H / KVH;

  // Attention sublayer: x + N_attn_out(Attn(N_attn_in(x))).
  at::Tensor h = rms_norm(x, L.input_norm, eps);
  at::Tensor q = run_linear(L.q, h, loop, layer, LinearSite::Q, hooks);
  at::Tensor k = run_linear(L.k, h, loop, layer, LinearSite::K, hooks);
  at::Tensor v = run_linear(L.v, h, loop, layer, LinearSite::V, hooks);
  q = apply_rope(q.view({B, S, H, hd}).transpose(1, 2), cos, sin);
  k = apply_rope(k.view({B, S, KVH, hd}).transpose(1, 2), cos, sin);
  v = v.view({B, S, KVH, hd}).transpose(1, 2);
  if (attention_transform_) {
    // A cache that stores codes quantizes K/V itself (forward checked it is the transform's codec).
    if (cache && cache->codec()) attention_transform_->apply_unquantized(loop, layer, q, k, v);
    else attention_transform_->apply(loop, layer, q, k, v);
  }
  if (cache) std::tie(k, v) = cache->append(cache->slot(loop, layer), k, v);
  const int64_t Lk = k.size(2);
  // GQA without copying K/V: fold the G query heads that share a KV head into the row axis.
  at::Tensor qg = q.reshape({B, KVH, G * S, hd});
  at::Tensor scores = at::matmul(qg, k.transpose(2, 3)) * (1.0 / std::sqrt(double(hd)));
  scores = scores.view({B, KVH, G, S, Lk});
  // Finite fill: a fully masked row (a padding query) stays finite instead of NaN.
  scores.masked_fill_(allowed.logical_not().view({B, 1, 1, S, Lk}), -1e30);
  at::Tensor probs = at::softmax(scores, -1).view({B, KVH, G * S, Lk});
  at::Tensor attn = at::matmul(probs, v).view({B, H, S, hd}).transpose(1, 2).reshape({B, S, H * hd});
  at::Tensor o = run_linear(L.o, attn, loop, layer, LinearSite::O, hooks);
  at::Tensor x1 = x + rms_norm(o, L.attn_out_norm, eps);

  // MLP sublayer: x1 + N_ffn_out(down(silu(gate(N_ffn_in(x1))) * up(.))).
  at::Tensor m = rms_norm(x1, L.ffn_in_norm, eps);
  at::Tensor g = run_linear(L.gate, m, loop, layer, LinearSite::Gate, hooks);
  at::Tensor u = run_linear(L.up, m, loop, layer, LinearSite::Up, hooks);
  at::Tensor d = run_linear(L.down, at::silu(g) * u, loop, layer, LinearSite::Down, hooks);
  return x1 + rms_norm(d, L.ffn_out_norm, eps);
}

ForwardResult OuroModel::forward(const at::Tensor& ids, const ForwardOptions& opt, KVCache* cache,
                                 const at::Tensor& attention_mask) const {
  if (ids.dim() != 2) throw Error("forward: ids must be [batch, tokens]");
  const int64_t B = ids.size(0), S = ids.size(1);
  if (S == 0) throw Error("forward: no tokens");
  const int64_t T = resolve_loops(opt.loops);
  if (cache && (cache->loops() != T || cache->batch() != B))
    throw Error("forward: cache was made for " + std::to_string(cache->loops()) + " loops and batch " +
                std::to_string(cache->batch()) + ", run has " + std::to_string(T) + " and " +
                std::to_string(B));
  if (cache && cache->codec() && (!attention_transform_ || attention_transform_->kv_codec() != cache->codec()))
    throw Error("forward: the cache stores K/V as " + cache->codec()->describe() +
                ", which is not this model's KV quantization (make caches with make_cache)");
  at::Tensor ids_dev = ids.to(device(), at::kLong);
  {
    auto lo = ids_dev.min().item<int64_t>(), hi = ids_dev.max().item<int64_t>();
    if (lo < 0 || hi >= config_.vocab_size)
      throw Error("forward: token id " + std::to_string(lo < 0 ? lo : hi) + " outside vocab of " +
                  std::to_string(config_.vocab_size));
  }
  at::Tensor mask = attention_mask.defined()
                        ? attention_mask.to(device(), at::kBool)
                        : at::ones({B, S}, at::TensorOptions().dtype(at::kBool).device(device()));
  if (mask.sizes() != ids.sizes()) throw Error("forward: attention_mask must match ids");

  // Positions count real tokens only, so left padding does not shift them; the same positions
  // serve every loop (§4.1).
  at::Tensor positions, key_mask;
  int64_t past = 0;
  if (cache) {
    past = cache->length();
    positions = cache->begin_step(mask);
    key_mask = cache->step_key_mask();
  } else {
    at::Tensor ml = mask.to(at::kLong);
    positions = ml.cumsum(1) - ml;
    key_mask = mask;
  }
  const int64_t Lk = past + S;
  at::Tensor qpos = at::arange(past, Lk, positions.options()).view({1, S, 1});
  at::Tensor kpos = at::arange(0, Lk, positions.options()).view({1, 1, Lk});
  at::Tensor allowed = (kpos <= qpos).logical_and(key_mask.view({B, 1, Lk}));

  at::Tensor angles = positions.to(at::kFloat).unsqueeze(-1) * inv_freq_;  // [B, S, hd/2]
  at::Tensor emb = at::cat({angles, angles}, -1).unsqueeze(1);                // [B, 1, S, hd]
  at::Tensor cos = emb.cos(), sin = emb.sin();

  ForwardResult r;
  at::Tensor x = weights_.embed.index_select(0, ids_dev.reshape({-1})).view({B, S, -1});
  if (x.scalar_type() != at::kFloat) x = x.to(at::kFloat);  // a bf16 embedding (exact widening)
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t l = 0; l < config_.num_layers; ++l) {
      if (opt.hooks) opt.hooks->on_layer_input(int(t), int(l), x);
      x = layer_forward(x, int(t), int(l), cos, sin, allowed, cache, opt.hooks);
      if (opt.hooks) opt.hooks->on_layer_output(int(t), int(l), x);
    }
    x = loop_state(x, int(t));
    if (opt.hooks) opt.hooks->on_loop_state(int(t), x);
    r.states.push_back(x);
  }
  if (cache) cache->end_step();

  if (has_exit_gate()) {
    std::vector<at::Tensor> g;
    for (const auto& s : r.states)
      g.push_back(at::linear(s, weights_.exit_gate_weight, weights_.exit_gate_bias).squeeze(-1));
    r.gate_logits = at::stack(g, 0);
    r.exit_probs = exit_distribution(r.gate_logits);
  }
  if (!opt.compute_logits) return r;

  const ExitMode mode = resolve_exit_mode(opt);
  std::vector<at::Tensor> states;  // restricted to the last column when asked
  for (const auto& st : r.states) states.push_back(opt.last_position_only ? st.narrow(1, S - 1, 1) : st);
  at::Tensor probs;
  if (has_exit_gate()) probs = opt.last_position_only ? r.exit_probs.narrow(2, S - 1, 1) : r.exit_probs;
  std::vector<at::Tensor> loop_logits(static_cast<size_t>(T));
  if (opt.loop_logits)
    for (int64_t t = 0; t < T; ++t) loop_logits[t] = readout(states[t], int(t), opt.hooks);
  r.logits = exit_logits(states, probs, mode, opt.hooks, loop_logits);
  if (opt.loop_logits) r.loop_logits = std::move(loop_logits);
  return r;
}

ExitMode OuroModel::resolve_exit_mode(const ForwardOptions& opt) const {
  const int64_t T = resolve_loops(opt.loops);
  ExitMode mode = opt.exit ? *opt.exit : default_exit_mode(config_, T);
  if ((mode.kind == ExitMode::Cdf || mode.kind == ExitMode::Expected) && !has_exit_gate()) {
    if (opt.exit) throw Error("exit mode " + mode.to_string() + " needs the early_exit_gate tensors");
    mode.kind = ExitMode::Last;  // converted checkpoints drop the gate: the reference default is last
  }
  if (mode.kind == ExitMode::Step && mode.step >= T) {
    if (opt.exit)
      throw Error("exit step " + std::to_string(mode.step) + " out of range for " + std::to_string(T) + " loops");
    mode.kind = has_exit_gate() ? ExitMode::Cdf : ExitMode::Last;  // the reference falls through
  }
  return mode;
}

at::Tensor OuroModel::exit_logits(const std::vector<at::Tensor>& states, const at::Tensor& probs,
                                  const ExitMode& mode, LoopHooks* hooks,
                                  std::vector<at::Tensor>& loop_logits) const {
  const int64_t T = int64_t(states.size());
  loop_logits.resize(size_t(T));
  auto logits_of = [&](int64_t t) -> const at::Tensor& {
    if (!loop_logits[t].defined()) loop_logits[t] = readout(states[t], int(t), hooks);
    return loop_logits[t];
  };
  switch (mode.kind) {
    case ExitMode::Last:
      return logits_of(T - 1);
    case ExitMode::Step:
      return logits_of(mode.step);
    case ExitMode::Cdf: {
      // Per token, the first loop whose exit CDF reaches q (none: the last), read out through
      // the head as the reference does.
      at::Tensor reached = probs.cumsum(0) >= mode.threshold;
      reached[T - 1].fill_(true);
      at::Tensor first = (reached.to(at::kLong).cumsum(0) == 0).sum(0);  // leading misses
      if ((first == T - 1).all().item<bool>()) return logits_of(T - 1);  // e.g. q = 1.0
      at::Tensor stacked = at::stack(states, 0);  // [T, ..., d]
      std::vector<int64_t> shape = stacked.sizes().vec();
      shape[0] = 1;
      at::Tensor index = first.unsqueeze(0).unsqueeze(-1).expand(shape);
      return readout(stacked.gather(0, index).squeeze(0), int(T - 1), hooks);
    }
    case ExitMode::Expected: {
      at::Tensor out = at::zeros_like(logits_of(0));
      for (int64_t t = 0; t < T; ++t) out += probs[t].unsqueeze(-1) * logits_of(t);
      return out;
    }
  }
  throw Error("unknown exit mode");
}

}  // namespace loopq
