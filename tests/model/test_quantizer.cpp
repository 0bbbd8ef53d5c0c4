// Quantizer primitives against closed-form cases (quantization-reference.md §2).
#include <gtest/gtest.h>

#include <ATen/CPUGeneratorImpl.h>

#include "quant/quantizer.h"
#include "util/error.h"

using namespace loopq::quant;

namespace {
at::Tensor row(std::vector<float> v) { return at::tensor(v, at::kFloat).view({1, -1}); }
double max_diff(const at::Tensor& a, const at::Tensor& b) { return (a - b).abs().max().item<double>(); }
}  // namespace

TEST(Quantizer, SymmetricInt4GridIsAbsmaxOver7) {
  Grid g{4, true};
  EXPECT_EQ(g.qmin(), -8);
  EXPECT_EQ(g.qmax(), 7);
  at::Tensor x = row({-7, -3, 0, 2, 5, 7});
  QParams p = row_params(x, g);
  EXPECT_FLOAT_EQ(p.scale.item<float>(), 1.0f);  // absmax 7 / 7
  EXPECT_EQ(max_diff(quantize_codes(x, p, g), x), 0.0);  // integers map to themselves
  // With clipping, negatives saturate at -8 and positives at 7.
  QParams c = row_params(x, g, 0.5);
  EXPECT_FLOAT_EQ(c.scale.item<float>(), 0.5f);
  EXPECT_EQ(max_diff(quantize_codes(x, c, g), row({-8, -6, 0, 4, 7, 7})), 0.0);
}

TEST(Quantizer, RoundsHalfToEven) {
  Grid g{8, true};
  QParams p{at::ones({1, 1}), at::zeros({1, 1})};
  at::Tensor x = row({0.5, 1.5, 2.5, -0.5, -1.5, -2.5});
  EXPECT_EQ(max_diff(quantize_codes(x, p, g), row({0, 2, 2, -0, -2, -2})), 0.0);
}

TEST(Quantizer, AsymmetricGridHasIntegerZeroPoint) {
  Grid g{4, false};
  EXPECT_EQ(g.qmin(), 0);
  EXPECT_EQ(g.qmax(), 15);
  at::Tensor x = row({1, 2, 16});  // range widened to include 0: [0, 16]
  QParams p = row_params(x, g);
  EXPECT_NEAR(p.scale.item<float>(), 16.0 / 15.0, 1e-6);
  EXPECT_EQ(p.zero.item<float>(), 0.0f);
  at::Tensor y = row({-3, -1, 12});  // [-3, 12], s = 1, z = 3
  QParams q = row_params(y, g);
  EXPECT_FLOAT_EQ(q.scale.item<float>(), 1.0f);
  EXPECT_FLOAT_EQ(q.zero.item<float>(), 3.0f);
  EXPECT_EQ(max_diff(fake_quant(y, q, g), y), 0.0);
}

TEST(Quantizer, AllZeroRows) {
  at::Tensor z = at::zeros({2, 8});
  for (bool sym : {true, false}) {
    Grid g{4, sym};
    EXPECT_EQ(max_diff(fake_quant_weight(z, g), z), 0.0);           // weights: range clamped to 1e-5
    EXPECT_EQ(max_diff(fake_quant_activation(z, g), z), 0.0);       // activations: scale 1 / range 2
    EXPECT_TRUE(at::isfinite(fake_quant_activation(z, g)).all().item<bool>());
  }
  Grid sym{4, true};
  EXPECT_FLOAT_EQ(row_params(z, sym, 1.0, /*weight=*/false).scale[0].item<float>(), 1.0f);
}

TEST(Quantizer, MseClipSearchShrinksAroundAnOutlier) {
  // One outlier: shrinking the range trades a clipped outlier for a finer grid on the rest.
  at::Generator gen = at::detail::createCPUGenerator(3);
  at::Tensor w = at::randn({4, 256}, gen);
  w[0][0] = 40.0;
  Grid g{4, true};
  QParams plain = weight_params(w, g, 0, false), searched = weight_params(w, g, 0, true);
  EXPECT_LT(searched.scale[0].item<float>(), plain.scale[0].item<float>());
  auto err = [&](const QParams& p) {
    return (fake_quant(w.view({4, 1, 256}), p, g) - w.view({4, 1, 256})).abs().pow(2.4).sum().item<double>();
  };
  EXPECT_LE(err(searched), err(plain));
}

TEST(Quantizer, GroupsHaveTheirOwnScales) {
  at::Tensor w = at::cat({at::full({1, 4}, 1.0), at::full({1, 4}, 100.0)}, 1);  // [1, 8]
  Grid g{4, true};
  QParams p = weight_params(w, g, 4, false);
  ASSERT_EQ(p.scale.sizes(), (std::vector<int64_t>{1, 2, 1}));
  EXPECT_NEAR(p.scale[0][0][0].item<float>(), 1.0 / 7, 1e-6);
  EXPECT_NEAR(p.scale[0][1][0].item<float>(), 100.0 / 7, 1e-4);
  EXPECT_LT(max_diff(fake_quant_weight(w, g, 4, false), w), 1e-4);
  EXPECT_THROW(weight_params(w, g, 3), loopq::Error);  // 3 does not divide 8
  EXPECT_THROW(row_params(w, Grid{9, true}), loopq::Error);
}

TEST(Quantizer, PerTokenActivationsWithClip) {
  at::Tensor x = at::tensor({1.0f, -2.0f, 4.0f, 0.5f, 10.0f, -10.0f, 5.0f, 0.0f}).view({2, 4});
  Grid g{8, true};
  at::Tensor y = fake_quant_activation(x, g, 1.0);
  EXPECT_LT(max_diff(y[0], x[0]), 4.0 / 127 / 2 + 1e-6);  // each token its own scale
  EXPECT_LT(max_diff(y[1], x[1]), 10.0 / 127 / 2 + 1e-6);
  at::Tensor clipped = fake_quant_activation(x, Grid{4, true}, 0.5);
  EXPECT_FLOAT_EQ(clipped[1][0].item<float>(), 5.0f);  // 10 clipped to 0.5 * 10
}

TEST(Quantizer, Int4PackingLayout) {
  at::Tensor codes = at::arange(-8, 8, at::kInt).view({2, 8});
  at::Tensor packed = pack_int4(codes);
  ASSERT_EQ(packed.sizes(), (std::vector<int64_t>{2, 4}));
  // even column -> low nibble, odd -> high nibble, two's complement: (-8, -7) -> 0x98
  EXPECT_EQ(packed[0][0].item<uint8_t>(), 0x98);
  EXPECT_EQ(packed[1][3].item<uint8_t>(), 0x76);  // (6, 7)
  EXPECT_TRUE(unpack_int4(packed).to(at::kInt).equal(codes));
  EXPECT_THROW(pack_int4(at::full({1, 2}, 8, at::kInt)), loopq::Error);
  EXPECT_THROW(pack_int4(at::zeros({1, 3}, at::kInt)), loopq::Error);
}
