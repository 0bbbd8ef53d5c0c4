#include "quant/input_transform.h"

#include <ATen/core/grad_mode.h>

#include <tuple>

#include "quant/ptq.h"
#include "util/error.h"

namespace loopq::quant {
namespace {

// f(S) for a symmetric S through its eigendecomposition (float64).
template <class F>
at::Tensor spectral(const at::Tensor& S, F f) {
  at::Tensor e, V;
  std::tie(e, V) = at::linalg_eigh(0.5 * (S + S.t()));
  return at::matmul(V * f(e).unsqueeze(0), V.t());
}

at::Tensor damped(const at::Tensor& S, double damp) {
  const double shift = damp * S.diagonal().mean().item<double>();
  return S + shift * at::eye(S.size(0), S.options());
}

}  // namespace

at::Tensor shaping_transform(const at::Tensor& C_in, const at::Tensor& G_in, double damp) {
  if (C_in.dim() != 2 || C_in.size(0) != C_in.size(1) || !C_in.sizes().equals(G_in.sizes()))
    throw Error("shaping_transform: C and G must be square and of one size");
  const at::Tensor C = damped(C_in.to(at::kDouble), damp), G = damped(G_in.to(at::kDouble), damp);
  auto clamp = [](const at::Tensor& e) { return e.clamp_min(1e-300); };
  const at::Tensor Ch = spectral(C, [&](const at::Tensor& e) { return clamp(e).sqrt(); });
  const at::Tensor Cih = spectral(C, [&](const at::Tensor& e) { return clamp(e).rsqrt(); });
  const at::Tensor mid = spectral(at::matmul(at::matmul(Ch, G), Ch), [&](const at::Tensor& e) { return clamp(e).sqrt(); });
  at::Tensor P = at::matmul(at::matmul(Cih, mid), Cih);
  P = P / (P.diagonal().mean());  // scale is free (the weight takes T⁻¹): mean eigenvalue 1
  return spectral(P, [&](const at::Tensor& e) { return clamp(e).sqrt(); });
}

TransformChoice shape_input_transforms(OuroModel& model, const ActivationSampler& samples, const Grid& w_grid,
                                       const ActQuant& act, const std::array<bool, 4>& which, bool loop_balanced,
                                       double damp) {
  at::NoGradGuard no_grad;
  const int64_t T = samples.loops();
  auto& layers = model.weights().layers;
  TransformChoice choice;
  choice.report = nlohmann::json::array();
  const Grid ag{act.bits, act.symmetric};
  const bool search = act.enabled() && act.static_scale;
  for (int64_t l = 0; l < int64_t(layers.size()); ++l) {
    LayerWeights& L = layers[size_t(l)];
    std::array<bool, 4> keep{};
    for (int gi = 0; gi < kNumInputGroups; ++gi) {
      if (!which[size_t(gi)]) continue;
      const InputGroup g = InputGroup(gi);
      for (LinearSite s : sites_of(g))
        if (!dynamic_cast<const ActQuantDenseLinear*>(L.linear(s).get()) && !dynamic_cast<const DenseLinear*>(L.linear(s).get()))
          throw Error("input transforms: expects dense linears (run before weight quantization)");
      const LinearParts parts = linear_parts(L.linear(sites_of(g).front()));
      const at::Tensor W = group_weight(L, g).to(at::kCPU, at::kDouble);  // rotated basis [out, in]
      const int64_t n = W.size(1);
      const at::Tensor G = at::matmul(W.t(), W);
      std::vector<at::Tensor> y(static_cast<size_t>(T));
      at::Tensor C = at::zeros({n, n}, W.options());
      int64_t rows = 0;
      for (int64_t t = 0; t < T; ++t) {
        y[size_t(t)] = samples.rows(t, l, g).to(at::kCPU, at::kDouble);
        const at::Tensor Ct = at::matmul(y[size_t(t)].t(), y[size_t(t)]);
        rows += y[size_t(t)].size(0);
        if (loop_balanced) {
          const at::Tensor Cm = Ct / double(y[size_t(t)].size(0));
          C += Cm / (Cm * G).sum().clamp_min(1e-300);  // tr(C_t G): loop t's output energy per row
        } else {
          C += Ct;
        }
      }
      if (!loop_balanced) C /= double(rows);
      const at::Tensor Tm = shaping_transform(C, G, damp);
      const at::Tensor Ti = at::linalg_inv(Tm);
      const at::Tensor P = at::matmul(Tm, Tm);
      const double predicted = (at::matmul(P, C).trace() * at::matmul(at::linalg_inv(P), G).trace() /
                                (C.trace() * G.trace())).item<double>();
      // Measured, loop by loop, as the site will run (RTN weights, the mode's quantizer).
      const at::Tensor Wf = W.to(at::kFloat), Wt = at::matmul(W, Ti).to(at::kFloat);
      const at::Tensor wq_plain = fake_quant_weight(Wf, w_grid, 0, true), wq_t = fake_quant_weight(Wt, w_grid, 0, true);
      const at::Tensor Tf = Tm.to(at::kFloat);
      double pooled_plain = 0, pooled_t = 0;
      if (search && !loop_balanced) {
        at::Tensor all = at::cat(y).to(at::kFloat);
        pooled_plain = search_static_scale(all, Wf, ag);
        pooled_t = search_static_scale(at::matmul(all, Tf), Wt, ag);
      }
      std::vector<double> with, without;
      double sum_with = 0, sum_without = 0;
      for (int64_t t = 0; t < T; ++t) {
        const at::Tensor v = y[size_t(t)].to(at::kFloat), vt = at::matmul(v, Tf);
        const at::Tensor fp_out = at::linear(v, Wf);
        const double s_plain = search && loop_balanced ? search_static_scale(v, Wf, ag) : pooled_plain;
        const double s_t = search && loop_balanced ? search_static_scale(vt, Wt, ag) : pooled_t;
        without.push_back(relative_site_error(v, wq_plain, fp_out, act, s_plain));
        with.push_back(relative_site_error(vt, wq_t, fp_out, act, s_t));
        sum_with += with.back(), sum_without += without.back();
      }
      keep[size_t(gi)] = sum_with < sum_without;
      choice.report.push_back({{"layer", l}, {"input", input_group_name(g)}, {"transform", keep[size_t(gi)]},
                               {"predicted_noise_ratio", predicted}, {"rel_error_transformed", with},
                               {"rel_error_rotated", without}});
      if (!keep[size_t(gi)]) continue;
      const at::Tensor M = parts.rotation.matrix(n).to(at::kDouble);
      InputRotation rot;
      rot.kind = InputRotation::Kind::Dense;
      rot.dense = at::matmul(M, Tm).to(at::kFloat).contiguous();  // x M T, then quantize
      for (LinearSite s : sites_of(g)) {
        const at::Tensor w = at::matmul(L.linear(s)->dense_weight().to(at::kCPU, at::kDouble), Ti).to(at::kFloat);
        L.linear(s) = std::make_shared<ActQuantDenseLinear>(w, ActQuant{}, rot);
      }
    }
    choice.groups.push_back(keep);
  }
  return choice;
}

}  // namespace loopq::quant
