// FP-target GPTQ (quant/gptq_fp_target.h) against closed forms: the target is the least-squares
// solution, the FP-target error of any quantized weight is its H̃-weighted distance to the target
// plus a constant, identical inputs give back W, and the paired statistics of a model against
// itself are its rotated Hessian.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "quant/calibration.h"
#include "quant/gptq.h"
#include "quant/gptq_fp_target.h"
#include "quant/ptq.h"
#include "quant/quarot.h"
#include "test_helpers.h"
#include "util/error.h"

using namespace loopq;
using namespace loopq::quant;

namespace {

struct Pair {
  at::Tensor x, xq;  // FP inputs, quantized-model inputs [n, d] (fp64)
};

Pair noisy_inputs(int64_t n = 400, int64_t d = 12, uint64_t seed = 3) {
  at::manual_seed(int64_t(seed));
  const at::Tensor x = at::randn({n, d}, at::kDouble).mm(at::randn({d, d}, at::kDouble));
  // Quantized inputs: a distortion correlated with x plus independent noise.
  const at::Tensor xq = x.mm(at::eye(d, at::kDouble) + 0.1 * at::randn({d, d}, at::kDouble)) +
                        0.3 * at::randn({n, d}, at::kDouble);
  return {x, xq};
}

PairedInputStats stats_of(const Pair& p) {
  const double k = 2.0 / double(p.x.size(0));
  return {p.xq.t().mm(p.xq) * k, p.xq.t().mm(p.x) * k, p.x.size(0)};
}

double fp_target_error(const Pair& p, const at::Tensor& w, const at::Tensor& q) {
  return (p.x.mm(w.t().to(at::kDouble)) - p.xq.mm(q.t().to(at::kDouble))).pow(2).sum().item<double>();
}

}  // namespace

TEST(GptqFpTarget, TargetIsTheLeastSquaresSolution) {
  const Pair p = noisy_inputs();
  at::manual_seed(11);
  const at::Tensor w = at::randn({5, 12});
  const at::Tensor v = fp_target_weight(w, stats_of(p), /*percdamp=*/0.0);
  // argmin_V ||X Wᵀ - X̃ Vᵀ||² by an independent solver.
  const at::Tensor ref = std::get<0>(at::linalg_lstsq(p.xq, p.x.mm(w.t().to(at::kDouble)))).t();
  EXPECT_LT((v.to(at::kDouble) - ref).abs().max().item<double>(), 1e-4);
  // It beats W itself on the FP-target error (X̃ ≠ X).
  EXPECT_LT(fp_target_error(p, w, v), fp_target_error(p, w, w) * 0.99);
}

TEST(GptqFpTarget, ErrorIsTheTargetDistancePlusAConstant) {
  const Pair p = noisy_inputs();
  at::manual_seed(12);
  const at::Tensor w = at::randn({4, 12});
  const PairedInputStats s = stats_of(p);
  const at::Tensor v = fp_target_weight(w, s, 0.0).to(at::kDouble);
  // For any Ŵ: ||X Wᵀ - X̃ Ŵᵀ||² - ||X̃ (V - Ŵ)ᵀ||² is the same constant.
  std::vector<double> gaps;
  for (int i = 0; i < 3; ++i) {
    const at::Tensor q = w + 0.2 * at::randn({4, 12});
    const double dist = p.xq.mm((v - q.to(at::kDouble)).t()).pow(2).sum().item<double>();
    gaps.push_back(fp_target_error(p, w, q) - dist);
  }
  EXPECT_NEAR(gaps[0], gaps[1], 1e-6 * std::abs(gaps[0]) + 1e-6);
  EXPECT_NEAR(gaps[0], gaps[2], 1e-6 * std::abs(gaps[0]) + 1e-6);
}

TEST(GptqFpTarget, IdenticalInputsGiveBackTheWeight) {
  const Pair p = noisy_inputs();
  const Pair same{p.x, p.x};
  at::manual_seed(13);
  const at::Tensor w = at::randn({6, 12});
  // Damping does not shrink W: the correction is H⁻¹ (C - H̃) Wᵀ, which is zero here.
  EXPECT_LT((fp_target_weight(w, stats_of(same), 0.01) - w).abs().max().item<double>(), 1e-5);
}

TEST(GptqFpTarget, GptqOnTheTargetBeatsGptqOnTheWeight) {
  const Pair p = noisy_inputs(800, 32, 5);
  at::manual_seed(14);
  const at::Tensor w = at::randn({16, 32});
  const PairedInputStats s = stats_of(p);
  GptqOptions o;
  o.grid = Grid{4, true};
  const at::Tensor plain = gptq_quantize(w, s.hessian, o).dequantized;
  const at::Tensor target = gptq_quantize(fp_target_weight(w, s, o.percdamp), s.hessian, o).dequantized;
  EXPECT_LT(fp_target_error(p, w, target), 0.9 * fp_target_error(p, w, plain));
}

TEST(GptqFpTarget, RejectsMismatchedStatistics) {
  const PairedInputStats s = stats_of(noisy_inputs());
  EXPECT_THROW(fp_target_weight(at::randn({3, 5}), s, 0.01), Error);
}

TEST(GptqFpTarget, PairedStatisticsOfAModelWithItselfAreItsRotatedHessian) {
  OuroModel m = loopq::testing::tiny_model(4);
  quarot_rotate_model(m, 0);
  const at::Tensor windows = loopq::testing::random_ids(3, 16, 9);
  const std::set<LayerGroup> wanted{{0, InputGroup::AttnIn}, {1, InputGroup::DownIn}, {1, InputGroup::OIn}};
  const auto paired = paired_calibration(m, m, windows, wanted, ActQuant{}, {}, 2);
  CalibrationCollector ref(m.config().num_layers, m.config().total_ut_steps, CalibrationOptions{});
  run_calibration(m, windows, m.config().total_ut_steps, ref, 2);
  for (const LayerGroup& key : wanted) {
    const PairedInputStats& s = paired.at(key);
    EXPECT_EQ(s.rows, 3 * 16 * m.config().total_ut_steps);
    const InputRotation rot = linear_parts(m.weights().layers[size_t(key.first)].linear(sites_of(key.second).front())).rotation;
    at::Tensor H = ref.pooled(key.first, key.second).hessian();
    if (rot.active()) {
      const at::Tensor M = rot.matrix(H.size(0));
      H = M.t().mm(H).mm(M);
    }
    const double scale = H.abs().max().item<double>();
    EXPECT_LT((s.hessian - H).abs().max().item<double>(), 1e-5 * scale);
    EXPECT_LT((s.cross - s.hessian).abs().max().item<double>(), 1e-9 * scale);
  }
}
