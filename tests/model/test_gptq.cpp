// GPTQ (quantization-reference.md §3.3) against closed forms and properties: with no input
// correlation it is RTN, with correlation it beats RTN on the layer output, and its codes,
// params and column order are consistent.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <string>
#include <tuple>
#include <vector>

#include "quant/gptq.h"
#include "quant/quantizer.h"
#include "util/error.h"

using namespace loopq::quant;

namespace {

// Correlated calibration inputs X = Z A (fixed seed) and their GPTQ Hessian 2 X^T X / n.
at::Tensor correlated_inputs(int64_t n = 512, int64_t d = 64, uint64_t seed = 7) {
  at::manual_seed(seed);
  return at::randn({n, d}).mm(at::randn({d, d}));
}
at::Tensor hessian_of(const at::Tensor& x) { return x.t().mm(x) * (2.0 / x.size(0)); }

double output_error(const at::Tensor& x, const at::Tensor& w, const at::Tensor& q) {
  return (x.mm(w.t()) - x.mm(q.t())).norm().item<double>();
}

GptqOptions opts(Grid g, bool act_order, int64_t group_size = 0, bool static_groups = false) {
  GptqOptions o;
  o.grid = g;
  o.act_order = act_order;
  o.group_size = group_size;
  o.static_groups = static_groups;
  return o;
}

// Codes are integers on the grid and reproduce `dequantized` exactly through the params.
void expect_consistent(const GptqResult& r, const Grid& g) {
  const int64_t rows = r.codes.size(0), cols = r.codes.size(1), groups = r.params.scale.size(1);
  ASSERT_EQ(r.params.scale.sizes(), (std::vector<int64_t>{rows, groups, 1}));
  EXPECT_TRUE(r.codes.equal(at::round(r.codes)));
  EXPECT_GE(r.codes.min().item<double>(), double(g.qmin()));
  EXPECT_LE(r.codes.max().item<double>(), double(g.qmax()));
  EXPECT_TRUE(dequantize(r.codes.view({rows, groups, cols / groups}), r.params).view({rows, cols}).equal(r.dequantized));
}

const std::vector<Grid> kGrids = {{4, true}, {4, false}, {3, true}, {3, false}};

}  // namespace

TEST(Gptq, IdentityHessianIsRtn) {
  // H = I: damping only scales U, its off-diagonal stays exactly 0, so no error propagates.
  at::manual_seed(1);
  const at::Tensor w = at::randn({16, 64});
  const at::Tensor h = at::eye(64);
  for (const Grid& g : kGrids) {
    for (auto [act, gs, stat] : {std::tuple{false, 0, false}, {true, 0, false}, {false, 16, false},
                                 {false, 16, true}, {true, 16, true}}) {
      SCOPED_TRACE("bits " + std::to_string(g.bits) + " sym " + std::to_string(g.symmetric) + " act " +
                   std::to_string(act) + " gs " + std::to_string(gs) + " static " + std::to_string(stat));
      const GptqResult r = gptq_quantize(w, h, opts(g, act, gs, stat));
      expect_consistent(r, g);
      EXPECT_TRUE(r.dequantized.equal(fake_quant_weight(w, g, gs, true)));
      const QParams p = weight_params(w, g, gs, true);
      EXPECT_TRUE(r.params.scale.equal(p.scale));
      EXPECT_TRUE(r.params.zero.equal(p.zero));
      // hessian_error = sum (w - q)^2 / d^2 / 2 with d^2 = 1 / (1 + percdamp).
      EXPECT_NEAR(r.hessian_error, 0.5 * 1.01 * (w - r.dequantized).square().sum().item<double>(),
                  1e-4 * r.hessian_error);
    }
  }
}

TEST(Gptq, DiagonalHessianIsRtn) {
  at::manual_seed(2);
  const at::Tensor w = at::randn({8, 32});
  const at::Tensor h = at::diag(at::rand({32}) * 10 + 0.1).to(at::kDouble);  // any float dtype
  for (const Grid& g : kGrids) {
    for (bool act : {false, true}) {
      EXPECT_TRUE(gptq_quantize(w, h, opts(g, act)).dequantized.equal(fake_quant_weight(w, g, 0, true)));
      EXPECT_TRUE(gptq_quantize(w, h, opts(g, act, 8, true)).dequantized.equal(fake_quant_weight(w, g, 8, true)));
    }
  }
}

TEST(Gptq, BeatsRtnOnCorrelatedInputs) {
  const at::Tensor x = correlated_inputs();
  const at::Tensor h = hessian_of(x);
  at::manual_seed(3);
  const at::Tensor w = at::randn({48, 64});
  for (const Grid& g : kGrids) {
    const double rtn = output_error(x, w, fake_quant_weight(w, g, 0, true));
    const double rtn_g = output_error(x, w, fake_quant_weight(w, g, 16, true));
    for (bool act : {false, true}) {
      SCOPED_TRACE("bits " + std::to_string(g.bits) + " sym " + std::to_string(g.symmetric) + " act " +
                   std::to_string(act));
      const GptqResult r = gptq_quantize(w, h, opts(g, act));
      expect_consistent(r, g);
      EXPECT_LT(output_error(x, w, r.dequantized), 0.9 * rtn);  // measured 0.71..0.74
      // Grouped: static groups with act_order, runtime groups without.
      const GptqResult rg = gptq_quantize(w, h, opts(g, act, 16, act));
      expect_consistent(rg, g);
      EXPECT_LT(output_error(x, w, rg.dequantized), 0.9 * rtn_g);  // measured 0.75..0.80
    }
  }
}

TEST(Gptq, ActOrderResultIsInOriginalColumnOrder) {
  // Columns spaced ~8 quantization steps apart, so any column mix-up is visible.
  at::manual_seed(4);
  const int64_t rows = 8, cols = 32;
  const at::Tensor w = at::linspace(-4, 4, cols).unsqueeze(0) + 0.05 * at::randn({rows, cols});
  const at::Tensor target = at::randperm(cols).to(at::kFloat) + 1;  // diag(H): a permutation of 1..32
  ASSERT_FALSE(at::argsort(target, true, 0, true).equal(at::arange(cols)));
  const Grid g{8, true};
  const QParams p = weight_params(w, g, 0, true);
  const at::Tensor step = p.scale.view({rows, 1});

  // Diagonal H: act_order only reorders, so codes are RTN's codes column for column.
  const GptqResult diag = gptq_quantize(w, at::diag(target), opts(g, true));
  EXPECT_TRUE(diag.codes.equal(quantize_codes(w.view({rows, 1, cols}), p, g).view({rows, cols})));
  EXPECT_TRUE(((diag.dequantized - w).abs() <= step / 2 * (1 + 1e-5)).all().item<bool>());

  // Correlated inputs rescaled to the same diag(H): error propagation moves each column by a
  // few steps at most (2.6 measured), far less than the ~8-step spacing between columns.
  const at::Tensor x0 = correlated_inputs(512, cols);
  const at::Tensor x = x0 * (target / hessian_of(x0).diagonal()).sqrt().unsqueeze(0);
  const GptqResult r = gptq_quantize(w, hessian_of(x), opts(g, true));
  expect_consistent(r, g);
  const double moved = ((r.dequantized - w).abs() / step).max().item<double>();
  EXPECT_LT(moved, 4.0) << "a column moved by " << moved << " steps";
  EXPECT_LT(output_error(x, w, r.dequantized), output_error(x, w, fake_quant_weight(w, g, 0, true)));
}

TEST(Gptq, TwoColumnsClosedForm) {
  // in = 2, diag(H) = (1, 4): act_order quantizes column 1 first (RTN), then the OBS update
  // moves column 0 by H01 / H00 * (w1 - q1) before it is rounded; without act_order the roles
  // swap. Damping 0.01 * mean(diag) = 0.025 enters H00 and H11.
  at::manual_seed(9);
  const at::Tensor w = at::randn({64, 2});
  const at::Tensor h = at::tensor({1.0, 1.5, 1.5, 4.0}, at::kDouble).view({2, 2});
  const double damp = 0.025;
  for (const Grid& g : kGrids) {
    const QParams p = weight_params(w, g, 0, true);
    const QParams p2{p.scale.view({-1, 1}), p.zero.view({-1, 1})};
    const at::Tensor rtn = fake_quant(w, p2, g);
    for (bool act : {true, false}) {
      const int64_t first = act ? 1 : 0, second = 1 - first;
      const double ratio = 1.5 / (h[second][second].item<double>() + damp);
      const at::Tensor moved = w.select(1, second) + ratio * (w.select(1, first) - rtn.select(1, first));
      const GptqResult r = gptq_quantize(w, h, opts(g, act));
      EXPECT_TRUE(r.dequantized.select(1, first).equal(rtn.select(1, first))) << "act " << act;
      EXPECT_TRUE(r.codes.select(1, second).equal(quantize_codes(moved.unsqueeze(1), p2, g).squeeze(1)))
          << "act " << act;
    }
  }
}

TEST(Gptq, DeadColumnsAreZero) {
  at::Tensor x = correlated_inputs();
  x.select(1, 5).zero_();  // inputs 5 and 20 never active: H row/column is 0
  x.select(1, 20).zero_();
  at::manual_seed(5);
  at::Tensor w = at::randn({16, 64});
  w.select(1, 5).fill_(100.0);  // must not widen the grid either
  at::Tensor live = w.clone();
  live.select(1, 5).zero_();
  live.select(1, 20).zero_();
  for (const Grid& g : kGrids) {
    for (bool act : {false, true}) {
      const GptqResult r = gptq_quantize(w, hessian_of(x), opts(g, act));
      expect_consistent(r, g);
      EXPECT_EQ(r.dequantized.select(1, 5).abs().max().item<double>(), 0.0);
      EXPECT_EQ(r.dequantized.select(1, 20).abs().max().item<double>(), 0.0);
      EXPECT_TRUE(r.params.scale.equal(weight_params(live, g, 0, true).scale));
    }
  }
}

TEST(Gptq, StaticGroupParamsComeFromTheOriginalWeight) {
  const at::Tensor x = correlated_inputs();
  at::manual_seed(6);
  const at::Tensor w = at::randn({16, 64});
  for (const Grid& g : kGrids) {
    const GptqResult r = gptq_quantize(w, hessian_of(x), opts(g, true, 16, true));
    expect_consistent(r, g);
    const QParams p = weight_params(w, g, 16, true);
    EXPECT_TRUE(r.params.scale.equal(p.scale));
    EXPECT_TRUE(r.params.zero.equal(p.zero));
  }
}

TEST(Gptq, HessianErrorIsTheDampedQuadraticForm) {
  // OBS: each step adds exactly (w - q)^2 / [H^-1]_ii, with U_ii^2 = [H^-1]_ii, so the summed
  // losses are half of tr((W - Q) H_damped (W - Q)^T) for the final Q.
  const at::Tensor x = correlated_inputs();
  const at::Tensor h = hessian_of(x);
  const at::Tensor hd = h + 0.01 * h.diagonal().mean() * at::eye(64);
  at::manual_seed(7);
  const at::Tensor w = at::randn({16, 64});
  for (const Grid& g : kGrids) {
    for (bool act : {false, true}) {
      GptqOptions o = opts(g, act);
      o.block_size = 24;  // also crosses blocks that do not divide the width
      const GptqResult r = gptq_quantize(w, h, o);
      const at::Tensor d = (w - r.dequantized).to(at::kDouble);
      const double quad = 0.5 * (d.mm(hd.to(at::kDouble)) * d).sum().item<double>();
      EXPECT_NEAR(r.hessian_error, quad, 1e-5 * quad);  // measured ~1e-7
    }
  }
}

TEST(Gptq, BlockSizeOnlyChangesRounding) {
  // Lazy block updates are exact algebra; only float rounding may flip a few codes.
  const at::Tensor x = correlated_inputs();
  const at::Tensor h = hessian_of(x);
  at::manual_seed(8);
  const at::Tensor w = at::randn({32, 64});
  const Grid g{4, true};
  GptqOptions o = opts(g, true);
  const GptqResult ref = gptq_quantize(w, h, o);  // one block
  const double ref_err = output_error(x, w, ref.dequantized);
  for (int64_t bs : {1, 5, 16}) {
    o.block_size = bs;
    const GptqResult r = gptq_quantize(w, h, o);
    EXPECT_LT((r.codes != ref.codes).sum().item<int64_t>(), ref.codes.numel() / 100) << "block " << bs;
    EXPECT_NEAR(output_error(x, w, r.dequantized), ref_err, 0.01 * ref_err) << "block " << bs;
  }
}

TEST(Gptq, BadInputsThrow) {
  const at::Tensor w = at::randn({4, 8});
  const at::Tensor h = at::eye(8);
  const GptqOptions ok = opts(Grid{4, true}, false);
  EXPECT_NO_THROW(gptq_quantize(w, h, ok));
  EXPECT_THROW(gptq_quantize(w.view({4, 2, 4}), h, ok), loopq::Error);       // weight not 2-D
  EXPECT_THROW(gptq_quantize(w, at::eye(8).narrow(0, 0, 4), ok), loopq::Error);  // not square
  EXPECT_THROW(gptq_quantize(w, at::eye(6), ok), loopq::Error);               // wrong size
  EXPECT_THROW(gptq_quantize(w, h, opts(Grid{4, true}, false, 3)), loopq::Error);  // 3 does not divide 8
  EXPECT_THROW(gptq_quantize(w, h, opts(Grid{4, true}, true, 4, false)), loopq::Error);  // needs static
  EXPECT_NO_THROW(gptq_quantize(w, h, opts(Grid{4, true}, true, 4, true)));
  GptqOptions bad = ok;
  bad.block_size = 0;
  EXPECT_THROW(gptq_quantize(w, h, bad), loopq::Error);
  bad = ok;
  bad.percdamp = -0.1;
  EXPECT_THROW(gptq_quantize(w, h, bad), loopq::Error);
  // Indefinite H (eigenvalues 3 and -1 in the leading block): no damping, no Cholesky.
  at::Tensor indefinite = at::eye(8);
  indefinite[0][1] = 2.0;
  indefinite[1][0] = 2.0;
  bad = ok;
  bad.percdamp = 0.0;
  try {
    gptq_quantize(w, indefinite, bad);
    ADD_FAILURE() << "no throw";
  } catch (const loopq::Error& e) {
    EXPECT_NE(std::string(e.what()).find("not positive definite"), std::string::npos) << e.what();
  }
}
