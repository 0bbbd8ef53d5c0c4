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
      int64_t row_count = 0;
      for (int64_t t = 0; t < T; ++t) {
        y[size_t(t)] = samples.rows(t, l, g).to(at::kCPU, at::kDouble);
        const at::Tensor Ct = at::matmul(y[size_t(t)].t(), y[size_t(t)]);
        row_count += y[size_t(t)].size(0);
        if (loop_balanced) {
          const at::Tensor Cm = Ct / double(y[size_t(t)].size(0));
          C += Cm / (Cm * G).sum().clamp_min(1e-300);  // tr(C_t G): loop t's output energy per row
        } else {
          C += Ct;
        }
      }
      if (!loop_balanced) C /= double(row_count);
      const at::Tensor Tm = shaping_transform(C, G, damp);
      const at::Tensor Ti = at::linalg_inv(Tm);
      const at::Tensor P = at::matmul(Tm, Tm);
      const double predicted = (at::matmul(P, C).trace() * at::matmul(at::linalg_inv(P), G).trace() /
                                (C.trace() * G.trace())).item<double>();
      // Measured, loop by loop, as the site will run (RTN weights, the mode's quantizer).
      const at::Tensor Wf = W.to(at::kFloat), Wt = at::matmul(W, Ti).to(at::kFloat), Tf = Tm.to(at::kFloat);
      std::vector<at::Tensor> rows_f;
      for (const at::Tensor& v : y) rows_f.push_back(v.to(at::kFloat));
      const BasisErrors e = compare_bases(
          rows_f, [&](const at::Tensor& v) { return at::matmul(v, Tf); }, Wf, Wt, w_grid, act, loop_balanced);
      keep[size_t(gi)] = e.sum_b < e.sum_a;
      choice.report.push_back({{"layer", l}, {"input", input_group_name(g)}, {"transform", keep[size_t(gi)]},
                               {"predicted_noise_ratio", predicted}, {"rel_error_transformed", e.b},
                               {"rel_error_rotated", e.a}});
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
