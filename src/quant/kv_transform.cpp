#include "quant/kv_transform.h"

#include <ATen/core/grad_mode.h>

#include <cmath>

#include "quant/hadamard.h"
#include "quant/input_transform.h"
#include "quant/ptq.h"
#include "quant/quantizer.h"
#include "util/error.h"

namespace loopq::quant {
namespace {

// Records evenly spaced token rows of q, k (after RoPE, before any head map) and v per (loop,
// layer), then runs the model's own attention transform, so the sampled forward is the one the
// quantized model runs.
class AttentionSampler final : public AttentionTransform {
 public:
  AttentionSampler(std::shared_ptr<const AttentionTransform> inner, int64_t loops, int64_t layers, int64_t rows_per_call)
      : inner_(std::move(inner)), layers_(layers), rows_per_call_(rows_per_call),
        q_(size_t(loops * layers)), k_(size_t(loops * layers)), v_(size_t(loops * layers)) {}
  void apply(int loop, int layer, at::Tensor& q, at::Tensor& k, at::Tensor& v) const override {
    const int64_t S = q.size(2), n = std::min(S, rows_per_call_), stride = S / n;
    const int64_t shift = (calls_++ * 7919) % std::max<int64_t>(stride, 1);
    const at::Tensor idx = at::arange(n, at::TensorOptions().dtype(at::kLong).device(q.device())) * stride + shift;
    auto rows = [&](const at::Tensor& x) {  // [B, heads, S, hd] -> [B n, heads, hd]
      return x.detach().index_select(2, idx).transpose(1, 2).reshape({-1, x.size(1), x.size(3)}).to(at::kCPU, at::kDouble);
    };
    const size_t slot = size_t(loop * layers_ + layer);
    if (slot >= q_.size()) throw Error("kv transforms: loop index beyond the sampler's loop count");
    q_[slot].push_back(rows(q)), k_[slot].push_back(rows(k)), v_[slot].push_back(rows(v));
    if (inner_) inner_->apply(loop, layer, q, k, v);
  }
  at::Tensor q(int64_t t, int64_t l) const { return at::cat(q_.at(size_t(t * layers_ + l))); }
  at::Tensor k(int64_t t, int64_t l) const { return at::cat(k_.at(size_t(t * layers_ + l))); }
  at::Tensor v(int64_t t, int64_t l) const { return at::cat(v_.at(size_t(t * layers_ + l))); }

 private:
  std::shared_ptr<const AttentionTransform> inner_;
  int64_t layers_, rows_per_call_;
  mutable int64_t calls_ = 0;
  mutable std::vector<std::vector<at::Tensor>> q_, k_, v_;
};

// Puts the model's attention transform back however the sampling ends.
struct RestoreAttention {
  OuroModel& model;
  std::shared_ptr<const AttentionTransform> saved;
  ~RestoreAttention() { model.set_attention_transform(saved); }
};

at::Tensor second_moment(const at::Tensor& x) { return at::matmul(x.t(), x) / double(std::max<int64_t>(1, x.size(0))); }

// Per KV head j: T_j from C_j (keys or values, [rows, KVH, hd] per loop) and G_j, with each loop's
// C divided by its error energy tr(C_t G_t) when balanced; P scaled so tr(P C) = tr(P⁻¹ G).
// Returns the maps [KVH, hd, hd] (float64) and the predicted noise ratio.
std::pair<at::Tensor, double> head_maps(const std::vector<at::Tensor>& x, const std::vector<at::Tensor>& G,
                                        bool balanced, double damp) {
  const int64_t KVH = x.front().size(1), hd = x.front().size(2);
  std::vector<at::Tensor> blocks;
  double num = 0, den = 0;
  for (int64_t j = 0; j < KVH; ++j) {
    at::Tensor C = at::zeros({hd, hd}, at::kDouble);
    int64_t rows = 0;
    for (const at::Tensor& xt : x) {
      const at::Tensor xj = xt.select(1, j);
      if (balanced) {
        const at::Tensor Ct = second_moment(xj);
        C += Ct / (Ct * G[size_t(j)]).sum().clamp_min(1e-300);
      } else {
        C += at::matmul(xj.t(), xj);
        rows += xj.size(0);
      }
    }
    if (!balanced) C /= double(std::max<int64_t>(rows, 1));
    at::Tensor T = shaping_transform(C, G[size_t(j)], damp);
    const at::Tensor P = at::matmul(T, T);
    const double a = at::matmul(P, C).trace().item<double>();
    const double b = at::matmul(at::linalg_inv(P), G[size_t(j)]).trace().item<double>();
    T = T * std::pow(b / a, 0.25);
    num += std::sqrt(a * b);
    den += std::sqrt(C.trace().item<double>() * G[size_t(j)].trace().item<double>());
    blocks.push_back(T);
  }
  return {at::stack(blocks), std::pow(num / std::max(den, 1e-300), 2)};
}

// x [n, KVH, hd] through the KV quantizer as the cache runs it (token rows of KVH * hd).
at::Tensor kv_quantize(const at::Tensor& x, const KVQuantSpec& kv) {
  const at::Tensor flat = x.reshape({x.size(0), -1}).to(at::kFloat);
  return fake_quant_activation(flat, Grid{kv.bits, kv.symmetric}, kv.clip, kv.group_size).view(x.sizes()).to(at::kDouble);
}

// x [n, KVH, hd] mapped per head: x_j M_j.
at::Tensor per_head(const at::Tensor& x, const at::Tensor& M) { return at::matmul(x.transpose(0, 1), M).transpose(0, 1); }

}  // namespace

KVTransformChoice shape_kv_transforms(OuroModel& model, const at::Tensor& windows, int64_t rows_per_site,
                                      int64_t batch_size, const KVQuantSpec& kv, const std::array<bool, 2>& which,
                                      bool loop_balanced, double damp) {
  if (kv.bits >= 16) throw Error("KV transforms: need a quantized KV cache (--kv-bits below 16)");
  at::NoGradGuard no_grad;
  const auto& c = model.config();
  const int64_t T = c.total_ut_steps, nl = c.num_layers, KVH = c.num_kv_heads, hd = c.head_dim;
  const int64_t Gq = c.num_heads / KVH;
  // Sample: the model's own forward with its current attention transform (none during
  // quantization: the cache is still FP there), rows spread over every window.
  const int64_t n = windows.size(0), calls = (n + batch_size - 1) / batch_size;
  auto sampler = std::make_shared<AttentionSampler>(model.attention_transform(), T, nl,
                                                    std::max<int64_t>(1, (rows_per_site + calls - 1) / calls));
  {
    RestoreAttention restore{model, model.attention_transform()};
    model.set_attention_transform(sampler);
    ForwardOptions fo;
    fo.loops = T;
    fo.compute_logits = false;
    for (int64_t i = 0; i < n; i += batch_size) model.forward(windows.narrow(0, i, std::min(batch_size, n - i)), fo);
  }
  // Keys are shaped in R3's basis: k H (H = I without R3).
  const at::Tensor H = kv.rotate_qk ? HadamardTransform(hd).apply(at::eye(hd, at::kDouble)) : at::eye(hd, at::kDouble);
  KVTransformChoice choice;
  choice.report = nlohmann::json::array();
  choice.shaping.k.resize(size_t(nl));
  choice.shaping.v.resize(size_t(nl));
  auto& layers = model.weights().layers;
  for (int64_t l = 0; l < nl; ++l) {
    std::array<bool, 2> keep{};
    if (which[0]) {
      std::vector<at::Tensor> ks, qs;
      for (int64_t t = 0; t < T; ++t) ks.push_back(at::matmul(sampler->k(t, l), H)), qs.push_back(at::matmul(sampler->q(t, l), H));
      // G_j: the second moment of the queries that read head j (pooled over loops).
      std::vector<at::Tensor> G(size_t(KVH), at::zeros({hd, hd}, at::kDouble));
      for (int64_t j = 0; j < KVH; ++j)
        for (const at::Tensor& qt : qs)
          for (int64_t h = j * Gq; h < (j + 1) * Gq; ++h) G[size_t(j)] += second_moment(qt.select(1, h)) / double(T);
      auto [Tk, predicted] = head_maps(ks, G, loop_balanced, damp);
      const at::Tensor Tk32 = Tk.to(at::kFloat).to(at::kDouble), Tk_inv = at::linalg_inv(Tk32);
      // Measured: the logit error of the quantized keys against the sampled queries of each loop.
      std::vector<double> e_plain, e_shaped;
      double sum_plain = 0, sum_shaped = 0;
      for (int64_t t = 0; t < T; ++t) {
        const at::Tensor k = ks[size_t(t)];
        // Every key against up to 256 evenly spaced queries, in fp32: enough to rank two maps.
        const int64_t nq = qs[size_t(t)].size(0), step = std::max<int64_t>(1, nq / 256);
        const at::Tensor q = qs[size_t(t)].index_select(0, at::arange(0, nq, step, at::kLong)).to(at::kFloat);
        const at::Tensor e0 = (kv_quantize(k, kv) - k).to(at::kFloat);
        const at::Tensor e1 = (per_head(kv_quantize(per_head(k, Tk32), kv), Tk_inv) - k).to(at::kFloat);
        const at::Tensor kf = k.to(at::kFloat);
        double ref = 0, a = 0, b = 0;
        for (int64_t h = 0; h < c.num_heads; ++h) {
          const at::Tensor qh = q.select(1, h);
          const int64_t jj = h / Gq;
          ref += at::matmul(qh, kf.select(1, jj).t()).pow(2).sum().item<double>();
          a += at::matmul(qh, e0.select(1, jj).t()).pow(2).sum().item<double>();
          b += at::matmul(qh, e1.select(1, jj).t()).pow(2).sum().item<double>();
        }
        e_plain.push_back(a / std::max(ref, 1e-300)), e_shaped.push_back(b / std::max(ref, 1e-300));
        sum_plain += e_plain.back(), sum_shaped += e_shaped.back();
      }
      keep[0] = sum_shaped < sum_plain;
      choice.report.push_back({{"layer", l}, {"tensor", "k"}, {"transform", keep[0]}, {"predicted_noise_ratio", predicted},
                               {"rel_error_transformed", e_shaped}, {"rel_error_plain", e_plain}});
      if (keep[0]) choice.shaping.k[size_t(l)] = Tk.to(at::kFloat).contiguous();
    }
    if (which[1]) {
      LayerWeights& L = layers[size_t(l)];
      if (!dynamic_cast<const ActQuantDenseLinear*>(L.o.get()) && !dynamic_cast<const DenseLinear*>(L.o.get()))
        throw Error("KV transforms: expects a dense o_proj (run before weight quantization)");
      const LinearParts o = linear_parts(L.o);
      const at::Tensor Wo = o.weight.to(at::kCPU, at::kDouble);  // [out, H hd], after o's rotation M
      const at::Tensor M = o.rotation.matrix(Wo.size(1)).to(at::kDouble);
      const at::Tensor W_eff = at::matmul(Wo, M.t());  // out = attn M Woᵀ = attn W_effᵀ
      std::vector<at::Tensor> G(size_t(KVH), at::zeros({hd, hd}, at::kDouble));
      for (int64_t h = 0; h < c.num_heads; ++h) {
        const at::Tensor col = W_eff.narrow(1, h * hd, hd);
        G[size_t(h / Gq)] += at::matmul(col.t(), col);
      }
      std::vector<at::Tensor> vs;
      for (int64_t t = 0; t < T; ++t) vs.push_back(sampler->v(t, l));
      auto [Tv, predicted] = head_maps(vs, G, loop_balanced, damp);
      const at::Tensor Tv32 = Tv.to(at::kFloat).to(at::kDouble), Tv_inv = at::linalg_inv(Tv32);
      // Measured: the error at o_proj's output, each value row read by its heads' columns.
      auto out_error = [&](const at::Tensor& e) {
        double s = 0;
        for (int64_t h = 0; h < c.num_heads; ++h)
          s += at::matmul(e.select(1, h / Gq), W_eff.narrow(1, h * hd, hd).t()).pow(2).sum().item<double>();
        return s;
      };
      std::vector<double> e_plain, e_shaped;
      double sum_plain = 0, sum_shaped = 0;
      for (const at::Tensor& v : vs) {
        const double ref = std::max(out_error(v), 1e-300);
        e_plain.push_back(out_error(kv_quantize(v, kv) - v) / ref);
        e_shaped.push_back(out_error(per_head(kv_quantize(per_head(v, Tv32), kv), Tv_inv) - v) / ref);
        sum_plain += e_plain.back(), sum_shaped += e_shaped.back();
      }
      keep[1] = sum_shaped < sum_plain;
      choice.report.push_back({{"layer", l}, {"tensor", "v"}, {"transform", keep[1]}, {"predicted_noise_ratio", predicted},
                               {"rel_error_transformed", e_shaped}, {"rel_error_plain", e_plain}});
      if (keep[1]) {
        choice.shaping.v[size_t(l)] = Tv.to(at::kFloat).contiguous();
        // o_proj's input becomes attn B (B: each query head's T_v); W' keeps the output:
        // attn B M W'ᵀ = attn M Woᵀ, so W'ᵀ = M⁻¹ B⁻¹ M Woᵀ.
        std::vector<at::Tensor> inv;
        for (int64_t h = 0; h < c.num_heads; ++h) inv.push_back(Tv_inv[h / Gq]);
        const at::Tensor Binv = at::block_diag(inv);
        const at::Tensor w = at::matmul(Wo, at::matmul(at::matmul(at::linalg_inv(M), Binv), M).t()).to(at::kFloat);
        L.o = std::make_shared<ActQuantDenseLinear>(w, ActQuant{}, o.rotation);
      }
    }
    choice.layers.push_back(keep);
  }
  return choice;
}

}  // namespace loopq::quant
