// Hadamard constructions and the fast Kronecker-factored transform of the QuaRot baseline
// (quantization-reference.md §3.5).
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include "quant/hadamard.h"
#include "util/error.h"

using namespace loopq::quant;

namespace {

double max_diff(const at::Tensor& a, const at::Tensor& b) { return (a - b).abs().max().item<double>(); }
double rel_diff(const at::Tensor& a, const at::Tensor& b) {
  return max_diff(a.to(at::kDouble), b.to(at::kDouble)) / b.abs().max().item<double>();
}

// Entries ±1 and H Hᵀ == n I exactly (integer sums below 2^53 are exact in double).
void expect_hadamard(const at::Tensor& h, int64_t n) {
  ASSERT_EQ(h.sizes(), (at::IntArrayRef{n, n}));
  ASSERT_EQ(h.scalar_type(), at::kDouble);
  EXPECT_TRUE(h.abs().eq(1).all().item<bool>()) << "order " << n;
  EXPECT_EQ(max_diff(h.matmul(h.t()), at::eye(n, at::kDouble) * double(n)), 0.0) << "order " << n;
}

const int64_t kTransformSizes[] = {4, 64, 256, 704, 2048};

}  // namespace

TEST(Hadamard, ExactForConstructibleOrders) {
  // Sylvester (powers of two), Paley I (12, 20, 24 = 12*2, 44, 48, 68), Paley II (36: q = 17,
  // 76: q = 37), and products with 2^m (40 = 20*2, 88 = 44*2, 176, 704 = 44*16, 1408 = 44*32).
  for (int64_t n : {1, 2, 4, 8, 12, 16, 20, 24, 28, 36, 40, 44, 48, 60, 64, 68, 76, 88, 128, 176,
                    704, 1408}) {
    EXPECT_TRUE(hadamard_buildable(n)) << n;
    expect_hadamard(hadamard_matrix(n), n);
  }
}

TEST(Hadamard, KroneckerStructure) {
  // The smallest core is used: 704 = 44 ⊗ 16, 24 = 12 ⊗ 2, and Sylvester splits exactly.
  EXPECT_EQ(max_diff(hadamard_matrix(704), at::kron(hadamard_matrix(44), hadamard_matrix(16))), 0.0);
  EXPECT_EQ(max_diff(hadamard_matrix(24), at::kron(hadamard_matrix(12), hadamard_matrix(2))), 0.0);
  EXPECT_EQ(max_diff(hadamard_matrix(256), at::kron(hadamard_matrix(16), hadamard_matrix(16))), 0.0);
}

TEST(Hadamard, Order5632ForOuroIntermediate) {
  const int64_t n = 5632;  // 44 * 128, Ouro-1.4B intermediate size (R4)
  at::Tensor h = hadamard_matrix(n);
  ASSERT_EQ(h.sizes(), (at::IntArrayRef{n, n}));
  EXPECT_TRUE(h.abs().eq(1).all().item<bool>());
  EXPECT_TRUE(h.equal(at::kron(hadamard_matrix(44), hadamard_matrix(128))));
  // A full n³ product is too slow for a unit test: check the first 128 rows of H Hᵀ exactly,
  // plus Freivalds' test H (Hᵀ R) == n R with integer R (exact in double).
  at::Tensor top = h.slice(0, 0, 128).matmul(h.t());
  EXPECT_EQ(max_diff(top, at::eye(128, n, at::kDouble) * double(n)), 0.0);
  at::manual_seed(3);
  at::Tensor r = at::randint(-3, 4, {n, 8}, at::kDouble);
  EXPECT_EQ(max_diff(h.matmul(h.t().matmul(r)), r * double(n)), 0.0);
}

TEST(Hadamard, UnbuildableOrdersThrow) {
  // 92 and 52 exist (Williamson; Paley II with q = 25, a prime power) but are not built here.
  for (int64_t n : {3, 5, 6, 10, 22, 0, -4, 52, 92}) {
    EXPECT_FALSE(hadamard_buildable(n)) << n;
    EXPECT_THROW(hadamard_matrix(n), loopq::Error) << n;
    EXPECT_THROW(HadamardTransform{n}, loopq::Error) << n;
  }
  try {
    hadamard_matrix(22);
    FAIL() << "no throw";
  } catch (const loopq::Error& e) {
    EXPECT_NE(std::string(e.what()).find("order 22"), std::string::npos) << e.what();
  }
  // Every Ouro size: hidden, intermediate, head_dim, num_heads.
  for (int64_t n : {2048, 256, 512, 5632, 704, 1408, 64, 128, 4, 8, 16}) EXPECT_TRUE(hadamard_buildable(n)) << n;
}

TEST(Hadamard, TransformUsesSmallKroneckerFactors) {
  EXPECT_EQ(HadamardTransform(704).factor_sizes(), (std::vector<int64_t>{44, 16}));
  EXPECT_EQ(HadamardTransform(2048).factor_sizes(), (std::vector<int64_t>{32, 64}));
  EXPECT_EQ(HadamardTransform(256).factor_sizes(), (std::vector<int64_t>{16, 16}));
  EXPECT_EQ(HadamardTransform(5632).factor_sizes(), (std::vector<int64_t>{44, 128}));
  EXPECT_EQ(HadamardTransform(64).factor_sizes(), (std::vector<int64_t>{64}));
  EXPECT_TRUE(HadamardTransform(1).factor_sizes().empty());
}

TEST(Hadamard, ApplyMatchesDenseMatrix) {
  at::manual_seed(0);
  for (int64_t n : kTransformSizes) {
    for (bool with_signs : {false, true}) {
      HadamardTransform t(n, with_signs ? random_signs(n, 7) : at::Tensor());
      EXPECT_EQ(t.size(), n);
      EXPECT_EQ(t.signs().defined(), with_signs);
      at::Tensor m = t.matrix();
      // matrix() is diag(s) H / sqrt(n) with H = hadamard_matrix(n).
      at::Tensor s = with_signs ? random_signs(n, 7).to(at::kDouble) : at::ones({n}, at::kDouble);
      EXPECT_LT(max_diff(m * std::sqrt(double(n)), s.unsqueeze(1) * hadamard_matrix(n)), 1e-12);
      at::Tensor x = at::randn({3, 5, n});
      at::Tensor y = t.apply(x);
      EXPECT_EQ(y.sizes(), x.sizes());
      EXPECT_EQ(y.scalar_type(), at::kFloat);
      at::Tensor ref = x.to(at::kDouble).matmul(m);
      EXPECT_LT(rel_diff(y, ref), 1e-5) << "n " << n << " signs " << with_signs;
      // Double inputs stay in double.
      EXPECT_LT(rel_diff(t.apply(x.to(at::kDouble)), ref), 1e-12) << n;
      // Half precision is computed in fp32 and cast back.
      EXPECT_LT(rel_diff(t.apply(x.to(at::kBFloat16)), ref), 2e-2) << n;
    }
  }
}

TEST(Hadamard, ThreeFactorTransformOnRankOneInputs) {
  // 11264 = 44 ⊗ 16 ⊗ 16 (its dense matrix would take 1 GiB): on x = u ⊗ v ⊗ w the transform
  // must give (u H44) ⊗ (v H16) ⊗ (w H16) / sqrt(n).
  const int64_t n = 11264;
  HadamardTransform t(n);
  ASSERT_EQ(t.factor_sizes(), (std::vector<int64_t>{44, 16, 16}));
  at::manual_seed(4);
  at::Tensor u = at::randn({44}, at::kDouble), v = at::randn({16}, at::kDouble), w = at::randn({16}, at::kDouble);
  at::Tensor x = at::kron(u, at::kron(v, w));
  at::Tensor h16 = hadamard_matrix(16);
  at::Tensor ref = at::kron(u.matmul(hadamard_matrix(44)), at::kron(v.matmul(h16), w.matmul(h16))) / std::sqrt(double(n));
  EXPECT_LT(rel_diff(t.apply(x), ref), 1e-12);
  at::Tensor xs = at::randn({2, n});
  EXPECT_LT(rel_diff(t.apply_inverse(t.apply(xs)), xs), 1e-5);
}

TEST(Hadamard, OrthonormalAndInvertible) {
  at::manual_seed(1);
  for (int64_t n : kTransformSizes) {
    HadamardTransform t(n, random_signs(n, 11));
    at::Tensor m = t.matrix();
    EXPECT_LT(max_diff(m.matmul(m.t()), at::eye(n, at::kDouble)), 1e-10) << n;
    at::Tensor x = at::randn({3, 5, n});
    at::Tensor y = t.apply(x);
    EXPECT_LT(rel_diff(t.apply_inverse(y), x), 1e-5) << n;
    EXPECT_LT(rel_diff(t.apply(t.apply_inverse(x)), x), 1e-5) << n;
    // apply_inverse is x Mᵀ.
    EXPECT_LT(rel_diff(t.apply_inverse(x), x.to(at::kDouble).matmul(m.t())), 1e-5) << n;
    EXPECT_LT(rel_diff(y.norm(2, -1), x.norm(2, -1)), 1e-5) << n;
  }
}

TEST(Hadamard, RandomSignsDeterministicPerSeed) {
  at::Tensor a = random_signs(512, 42);
  EXPECT_EQ(a.scalar_type(), at::kFloat);
  EXPECT_EQ(a.sizes(), (at::IntArrayRef{512}));
  EXPECT_TRUE(a.abs().eq(1).all().item<bool>());
  EXPECT_TRUE(a.equal(random_signs(512, 42)));
  EXPECT_FALSE(a.equal(random_signs(512, 43)));
  // Roughly balanced (a 512-coin sum beyond ±128 has probability ~1e-8).
  EXPECT_LT(std::abs(a.sum().item<double>()), 128.0);
  // Unaffected by the torch RNG.
  at::manual_seed(5);
  at::Tensor b = random_signs(512, 42);
  at::manual_seed(6);
  EXPECT_TRUE(b.equal(random_signs(512, 42)));
}

TEST(Hadamard, FoldingIntoLinearKeepsOutput) {
  at::manual_seed(2);
  for (int64_t n : kTransformSizes) {
    HadamardTransform t(n, random_signs(n, 5));
    at::Tensor w = at::randn({32, n});
    at::Tensor x = at::randn({3, 5, n});
    at::Tensor folded = w.to(at::kDouble).matmul(t.matrix()).to(at::kFloat);  // W' = W M
    at::Tensor out = t.apply(x).matmul(folded.t());
    at::Tensor ref = x.to(at::kDouble).matmul(w.to(at::kDouble).t());
    EXPECT_LT(rel_diff(out, ref), 1e-5) << n;
  }
}

TEST(Hadamard, RejectsBadInputs) {
  EXPECT_THROW(HadamardTransform(8, at::ones({7})), loopq::Error);
  EXPECT_THROW(HadamardTransform(8, at::full({8}, 0.5)), loopq::Error);
  HadamardTransform t(8);
  EXPECT_THROW(t.apply(at::randn({2, 7})), loopq::Error);
  EXPECT_THROW(t.apply(at::ones({2, 8}, at::kLong)), loopq::Error);
  EXPECT_THROW(HadamardTransform().apply(at::randn({2, 8})), loopq::Error);
  EXPECT_THROW(random_signs(-1, 0), loopq::Error);
  // Empty batches and 1-D inputs work.
  EXPECT_EQ(HadamardTransform(704).apply(at::randn({0, 704})).sizes(), (at::IntArrayRef{0, 704}));
  at::Tensor v = at::randn({704});
  EXPECT_LT(rel_diff(HadamardTransform(704).apply(v), v.to(at::kDouble).matmul(HadamardTransform(704).matrix())), 1e-5);
}
