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
      // RTN in each basis, once: the weights do not depend on the loop.
      const at::Tensor wq_rot = fake_quant_weight(W, w_grid, 0, true), wq_plain = fake_quant_weight(W_plain, w_grid, 0, true);
      // Static scales as calibrate_acts will choose them: per loop, or once from all loops.
      const Grid ag{act.bits, act.symmetric};
      const bool search = act.enabled() && act.static_scale;
      double pooled_rot = 0, pooled_plain = 0;
      if (search && !per_loop) {
        const at::Tensor all = samples.rows(-1, l, g).to(W.device());
        pooled_rot = search_static_scale(all, W, ag);
        pooled_plain = search_static_scale(at::matmul(all, M.t()), W_plain, ag);
      }
      std::vector<double> with, without;
      double sum_with = 0, sum_without = 0;
      for (int64_t t = 0; t < T; ++t) {
        const at::Tensor y = samples.rows(t, l, g).to(W.device());  // rotated rows
        const at::Tensor x = at::matmul(y, M.t());                   // the same rows, plain
        const at::Tensor fp_out = at::linear(y, W);
        const double s_rot = search && per_loop ? search_static_scale(y, W, ag) : pooled_rot;
        const double s_plain = search && per_loop ? search_static_scale(x, W_plain, ag) : pooled_plain;
        with.push_back(relative_site_error(y, wq_rot, fp_out, act, s_rot));
        without.push_back(relative_site_error(x, wq_plain, fp_out, act, s_plain));
        sum_with += with.back(), sum_without += without.back();
      }
      keep[size_t(gi)] = sum_with <= sum_without;
      choice.report.push_back({{"layer", l}, {"input", input_group_name(g)}, {"rotate", keep[size_t(gi)]},
                               {"rel_error_rotated", with}, {"rel_error_plain", without}});
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
