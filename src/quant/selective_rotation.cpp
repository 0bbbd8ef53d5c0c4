#include "quant/selective_rotation.h"

#include <ATen/core/grad_mode.h>

#include "quant/ptq.h"
#include "util/error.h"

namespace loopq::quant {

RotationChoice select_rotations(OuroModel& model, const ActivationSampler& samples, const Grid& w_grid,
                                const ActQuant& act, bool per_loop) {
  at::NoGradGuard no_grad;
  const int64_t T = samples.loops();
  auto& layers = model.weights().layers;
  RotationChoice choice;
  choice.report = nlohmann::json::array();
  for (int64_t l = 0; l < int64_t(layers.size()); ++l) {
    LayerWeights& L = layers[size_t(l)];
    std::array<bool, 4> keep{};
    for (int gi = 0; gi < kNumInputGroups; ++gi) {
      const InputGroup g = InputGroup(gi);
      const LinearParts parts = linear_parts(L.linear(sites_of(g).front()));
      if (!parts.rotation.active()) throw Error("select_rotations: expects the fully rotated model");
      const at::Tensor W = group_weight(L, g);                      // rotated basis
      const at::Tensor M = parts.rotation.matrix(W.size(1)).to(W.device(), at::kFloat);  // x_rot = x M
      const at::Tensor W_plain = at::matmul(W, M.t());
      std::vector<at::Tensor> rows;
      for (int64_t t = 0; t < T; ++t) rows.push_back(samples.rows(t, l, g).to(W.device()));  // rotated rows
      const BasisErrors e = compare_bases(
          rows, [&](const at::Tensor& y) { return at::matmul(y, M.t()); }, W, W_plain, w_grid, act, per_loop);
      keep[size_t(gi)] = e.sum_a <= e.sum_b;
      choice.report.push_back({{"layer", l}, {"input", input_group_name(g)}, {"rotate", keep[size_t(gi)]},
                               {"rel_error_rotated", e.a}, {"rel_error_plain", e.b}});
      if (keep[size_t(gi)]) continue;
      for (LinearSite s : sites_of(g)) {
        const at::Tensor w = at::matmul(L.linear(s)->dense_weight().to(at::kDouble), M.t().to(at::kDouble)).to(at::kFloat);
        L.linear(s) = std::make_shared<ActQuantDenseLinear>(w, ActQuant{}, InputRotation{});
      }
    }
    choice.rotate.push_back(keep);
  }
  return choice;
}

}  // namespace loopq::quant
