// The fast Walsh-Hadamard transform against the dense matrix diag(s) (H_K ⊗ H_{2^m}) / sqrt(n) in
// double, for powers of two and the Paley cores quant/hadamard.cpp uses (12, 20, 28, 44, ...).
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "kernels/cpu/fwht.h"
#include "util/error.h"

namespace loopq::kernels::test {
namespace {

bool is_prime(int q) {
  if (q < 2) return false;
  for (int d = 2; d * d <= q; ++d)
    if (q % d == 0) return false;
  return true;
}

// The same Paley I / II construction as quant/hadamard.cpp (restated: this binary is torch-free).
std::vector<float> paley(int k) {
  const bool one = is_prime(k - 1) && (k - 1) % 4 == 3;
  const int q = one ? k - 1 : k / 2 - 1;
  std::vector<int> chi(size_t(q), -1);
  chi[0] = 0;
  for (int x = 1; x < q; ++x) chi[size_t(x * x % q)] = 1;
  auto c = [&](int i, int j) {
    if (i == 0) return j == 0 ? 0 : 1;
    if (j == 0) return one ? -1 : 1;
    return chi[size_t(((j - i) % q + q) % q)];
  };
  std::vector<float> h(size_t(k * k));
  for (int i = 0; i <= q; ++i)
    for (int j = 0; j <= q; ++j) {
      const int v = c(i, j);
      if (one) {
        h[size_t(i * k + j)] = i == j ? 1.0f : float(v);
        continue;
      }
      for (int di = 0; di < 2; ++di)
        for (int dj = 0; dj < 2; ++dj)
          h[size_t((2 * i + di) * k + 2 * j + dj)] = v == 0 ? (di + dj == 0 ? 1.0f : -1.0f) : float(di && dj ? -v : v);
    }
  return h;
}

double sylvester(int64_t i, int64_t j) { return (__builtin_popcountll(uint64_t(i & j)) & 1) ? -1.0 : 1.0; }

void check(int64_t k, int64_t p2, bool with_signs) {
  const int64_t n = k * p2, rows = 3;
  const std::vector<float> hk = k > 1 ? paley(int(k)) : std::vector<float>{1.0f};
  // The core must be a Hadamard matrix, or the test proves nothing.
  for (int64_t i = 0; i < k; ++i)
    for (int64_t j = 0; j < k; ++j) {
      double dot = 0;
      for (int64_t a = 0; a < k; ++a) dot += double(hk[size_t(i * k + a)]) * hk[size_t(j * k + a)];
      ASSERT_EQ(dot, i == j ? double(k) : 0.0);
    }
  std::mt19937 gen{uint32_t(n)};
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(rows * n)), s(static_cast<size_t>(n));
  for (auto& v : x) v = d(gen);
  for (auto& v : s) v = (gen() & 1) ? 1.0f : -1.0f;
  std::vector<float> y = x;
  fwht(y.data(), rows, n, n, k > 1 ? hk.data() : nullptr, k, with_signs ? s.data() : nullptr);
  const double norm = 1.0 / std::sqrt(double(n));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < n; ++j) {
      double e = 0, mag = 0;
      for (int64_t i = 0; i < n; ++i) {
        const double m = double(hk[size_t((i / p2) * k + j / p2)]) * sylvester(i % p2, j % p2) * norm;
        const double v = double(x[size_t(r * n + i)]) * (with_signs ? s[size_t(i)] : 1.0f) * m;
        e += v;
        mag += std::fabs(v);
      }
      ASSERT_NEAR(y[size_t(r * n + j)], e, 1e-5 * (mag + 1e-3)) << "n " << n << " = " << k << " x " << p2;
    }
  // The inverse undoes the forward.
  fwht(y.data(), rows, n, n, k > 1 ? hk.data() : nullptr, k, with_signs ? s.data() : nullptr, true);
  for (size_t i = 0; i < x.size(); ++i) ASSERT_NEAR(y[i], x[i], 1e-5 * (1.0 + std::fabs(x[i])));
}

TEST(Fwht, PowersOfTwo) {
  for (int64_t n : {1, 2, 4, 8, 64, 256, 1024}) check(1, n, n % 8 == 0);
}

TEST(Fwht, KroneckerPaleyCores) {
  check(12, 1, false);
  check(12, 16, true);
  check(20, 8, true);
  check(28, 4, false);  // Paley II
  check(36, 2, true);   // Paley II
  check(44, 16, true);  // 704 = 44 x 16, an Ouro size
}

TEST(Fwht, BadSizes) {
  std::vector<float> x(48, 1.0f);
  const std::vector<float> h = paley(12);
  EXPECT_THROW(fwht(x.data(), 1, 48, 48, nullptr, 12, nullptr), Error);    // missing core
  EXPECT_THROW(fwht(x.data(), 1, 36, 36, h.data(), 12, nullptr), Error);   // 36 = 12 x 3
  EXPECT_THROW(fwht(x.data(), 1, 24, 24, nullptr, 1, nullptr), Error);     // 24 is not 2^m
  std::vector<float> bad = h;
  bad[3] = 0.5f;
  EXPECT_THROW(fwht(x.data(), 1, 48, 48, bad.data(), 12, nullptr), Error);
}

}  // namespace
}  // namespace loopq::kernels::test
