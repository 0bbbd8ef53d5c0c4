#include "quant/loop_smoothing.h"

#include <ATen/core/grad_mode.h>

#include "quant/quarot.h"
#include "quant/smoothquant.h"
#include "util/error.h"

namespace loopq::quant {
namespace {

at::Tensor& dense_weight(LayerWeights& L, LinearSite s) {
  auto* d = dynamic_cast<DenseLinear*>(L.linear(s).get());
  if (!d) throw Error("smoothing: expects a dense model");
  return d->weight();
}

// Channel scales for the o_proj input that the v_proj rows can carry: one value per KV channel,
// from the worst of the query heads that read it.
at::Tensor o_scales(const LoopLMConfig& c, const at::Tensor& absmax, const at::Tensor& w_o, double a) {
  const int64_t KVH = c.num_kv_heads, G = c.num_heads / c.num_kv_heads, hd = c.head_dim;
  const at::Tensor am = absmax.to(at::kDouble).view({KVH, G, hd}).amax(1).reshape({-1});
  const at::Tensor wm = w_o.abs().to(at::kDouble).view({w_o.size(0), KVH, G, hd}).amax({0, 2}).reshape({-1});
  const at::Tensor sv = (am.pow(a) / wm.pow(1.0 - a)).clamp_min(1e-5);
  return sv.view({KVH, 1, hd}).expand({KVH, G, hd}).reshape({-1});  // per q channel
}

// Rotation-aware scales. Before an orthonormal rotation, per-token rounding noise is white with a
// power that follows ||x / s||², and it reaches the output through W diag(s), so the output error
// follows (sum_j v_j / s_j²) (sum_j c_j s_j²), with v_j the input's second moment and c_j the squared
// column norm of W. Cauchy-Schwarz puts its minimum at s_j = (v_j / c_j)^(1/4), which is a = 0.5
// here: s = (rms / colnorm)^a. Weight rounding after the rotation follows the same product. For the
// o_proj input, one value per KV channel (the largest need over the query heads that read it).
at::Tensor rotation_aware_scales(const LoopLMConfig& c, InputGroup g, const at::Tensor& second_moment,
                                 const at::Tensor& w, double a) {
  at::Tensor v = second_moment.to(at::kDouble).clamp_min(1e-30);
  at::Tensor cn = w.to(at::kDouble).pow(2).sum(0).clamp_min(1e-30);
  at::Tensor s = (v / cn).pow(a / 2);
  if (g == InputGroup::OIn) {
    const int64_t KVH = c.num_kv_heads, G = c.num_heads / c.num_kv_heads, hd = c.head_dim;
    s = s.view({KVH, G, hd}).amax(1, true).expand({KVH, G, hd}).reshape({-1});
  }
  s = s / s.pow(2).mean().sqrt();  // mean s² = 1: the folded norm weights keep their range
  return s.clamp_min(1e-5);
}

}  // namespace

void fold_smoothing(OuroModel& model, int64_t layer, InputGroup g, const at::Tensor& s_in) {
  LayerWeights& L = model.weights().layers.at(size_t(layer));
  const LoopLMConfig& c = model.config();
  const at::Tensor s = s_in.to(at::kDouble);
  auto scale_cols = [&](LinearSite site) {
    at::Tensor& w = dense_weight(L, site);
    w = (w.to(at::kDouble) * s.to(w.device()).unsqueeze(0)).to(at::kFloat).contiguous();
  };
  switch (g) {
    case InputGroup::AttnIn:
    case InputGroup::MlpIn: {
      at::Tensor& norm = g == InputGroup::AttnIn ? L.input_norm : L.ffn_in_norm;
      norm = (norm.to(at::kDouble) / s.to(norm.device())).to(norm.scalar_type());
      for (LinearSite site : sites_of(g)) scale_cols(site);
      break;
    }
    case InputGroup::DownIn: {  // silu(g) * (u / s) = (silu(g) * u) / s
      at::Tensor& up = dense_weight(L, LinearSite::Up);
      up = (up.to(at::kDouble) / s.to(up.device()).unsqueeze(1)).to(at::kFloat).contiguous();
      scale_cols(LinearSite::Down);
      break;
    }
    case InputGroup::OIn: {  // attention is linear in V: softmax(.) (v / s) = (softmax(.) v) / s
      const int64_t KVH = c.num_kv_heads, G = c.num_heads / c.num_kv_heads, hd = c.head_dim;
      const at::Tensor sq = s.view({KVH, G, hd});
      if (!at::allclose(sq, sq.narrow(1, 0, 1).expand({KVH, G, hd}), 0, 0))
        throw Error("smoothing: o_proj scales must agree across the query heads of a KV head");
      const at::Tensor sv = sq.select(1, 0).reshape({-1});
      at::Tensor& v = dense_weight(L, LinearSite::V);
      v = (v.to(at::kDouble) / sv.to(v.device()).unsqueeze(1)).to(at::kFloat).contiguous();
      scale_cols(LinearSite::O);
      break;
    }
  }
}

nlohmann::json loop_balanced_smoothing(OuroModel& model, const ActivationSampler& samples, const Grid& w_grid,
                                       const ActQuant& act, bool rotate, uint64_t rotation_seed) {
  at::NoGradGuard no_grad;
  const LoopLMConfig& c = model.config();
  const int64_t T = samples.loops();
  const Grid ag{act.bits, act.symmetric};
  nlohmann::json report = nlohmann::json::array();
  const double strengths[] = {-1, 0.25, 0.5, 0.75};  // -1: no smoothing
  for (int64_t l = 0; l < c.num_layers; ++l) {
    LayerWeights& L = model.weights().layers[size_t(l)];
    for (int gi = 0; gi < kNumInputGroups; ++gi) {
      const InputGroup g = InputGroup(gi);
      const at::Tensor W = group_weight(L, g);  // raw basis [out, in]
      std::vector<at::Tensor> x(static_cast<size_t>(T)), ref(static_cast<size_t>(T));
      at::Tensor absmax, moment;  // per channel, the largest over loops (loop-balanced)
      for (int64_t t = 0; t < T; ++t) {
        x[size_t(t)] = samples.rows(t, l, g).to(W.device());
        ref[size_t(t)] = at::linear(x[size_t(t)], W);
        const at::Tensor m = x[size_t(t)].abs().amax(0);
        const at::Tensor v = x[size_t(t)].to(at::kDouble).pow(2).mean(0);
        absmax = absmax.defined() ? at::maximum(absmax, m) : m;
        moment = moment.defined() ? at::maximum(moment, v) : v;
      }
      at::Tensor M;
      if (rotate)
        M = quarot_input_rotation(c, sites_of(g).front(), rotation_seed).matrix(W.size(1)).to(W.device(), at::kFloat);
      double best_worst = INFINITY, best_a = -1;
      at::Tensor best_s;
      nlohmann::json tried = nlohmann::json::array();
      for (double a : strengths) {
        at::Tensor s;
        if (a < 0) s = at::ones({W.size(1)}, W.options());
        else if (rotate) s = rotation_aware_scales(c, g, moment, W, a).to(at::kFloat);
        else if (g == InputGroup::OIn) s = o_scales(c, absmax, dense_weight(L, LinearSite::O), a).to(at::kFloat);
        else s = smoothing_scales(absmax, {W}, a).to(at::kFloat);
        at::Tensor ws = W * s.unsqueeze(0);
        if (rotate) ws = at::matmul(ws, M);
        const at::Tensor wq = fake_quant_weight(ws, w_grid, 0, true);
        double worst = 0;
        std::vector<double> per_loop;
        for (int64_t t = 0; t < T; ++t) {
          at::Tensor v = x[size_t(t)] / s.unsqueeze(0);
          if (rotate) v = at::matmul(v, M);
          at::Tensor qv = v;
          if (act.enabled())
            qv = act.static_scale ? fake_quant_static(v, ag, at::scalar_tensor(search_static_scale(v, ws, ag), v.options()))
                                  : fake_quant_activation(v, ag, act.clip, act.group_size);
          const double e = (at::linear(qv, wq) - ref[size_t(t)]).pow(2).sum().item<double>() /
                           ref[size_t(t)].pow(2).sum().clamp_min(1e-30).item<double>();
          per_loop.push_back(e);
          worst = std::max(worst, e);
        }
        tried.push_back({{"alpha", a < 0 ? nlohmann::json(nullptr) : nlohmann::json(a)}, {"rel_error", per_loop}});
        if (worst < best_worst) best_worst = worst, best_a = a, best_s = s;
      }
      if (best_a >= 0) fold_smoothing(model, l, g, best_s);
      report.push_back({{"layer", l}, {"input", input_group_name(g)},
                        {"alpha", best_a < 0 ? nlohmann::json(nullptr) : nlohmann::json(best_a)},
                        {"scales", rotate ? "(rms/colnorm)^alpha" : "absmax^alpha/wmax^(1-alpha)"}, {"tried", tried}});
    }
  }
  return report;
}

}  // namespace loopq::quant
