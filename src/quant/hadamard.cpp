#include "quant/hadamard.h"

#include <ATen/Parallel.h>
#include <ATen/core/grad_mode.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>

#include "kernels/cpu/fwht.h"
#include "util/error.h"

namespace loopq::quant {
namespace {

bool is_prime(int64_t q) {
  if (q < 2) return false;
  for (int64_t d = 2; d * d <= q; ++d)
    if (q % d == 0) return false;
  return true;
}

// Paley I: order q + 1, prime q ≡ 3 (mod 4). Paley II: order 2(q + 1), prime q ≡ 1 (mod 4).
bool paley_one(int64_t k) { return is_prime(k - 1) && (k - 1) % 4 == 3; }
bool paley_two(int64_t k) { return k % 2 == 0 && is_prime(k / 2 - 1) && (k / 2 - 1) % 4 == 1; }

// n = core * 2^m with the smallest core that is 1 or a Paley order; core = 0 if there is none.
struct Decomposition {
  int64_t core = 0;
  int m = 0;
};

Decomposition decompose(int64_t n) {
  if (n < 1) return {};
  int m = 0;
  while ((n >> m) % 2 == 0) ++m;
  for (int j = m; j >= 0; --j) {  // largest power of two first = smallest core
    const int64_t k = n >> j;
    if (k == 1 || paley_one(k) || paley_two(k)) return {k, j};
  }
  return {};
}

std::string unbuildable(int64_t n) {
  return "no Hadamard matrix of order " + std::to_string(n) +
         " can be built (orders are 1, 2 or multiples of 4; this build knows Sylvester 2^m and "
         "Paley I/II times 2^m)";
}

// Sylvester: H_{2^m}[i][j] = (-1)^popcount(i & j), i.e. the recursion [[H, H], [H, -H]]. Hence
// H_{2^a} ⊗ H_{2^b} = H_{2^(a+b)}, which lets the transform split 2^m into smaller factors.
at::Tensor sylvester(int64_t n) {
  at::Tensor h = at::empty({n, n}, at::kDouble);
  auto a = h.accessor<double, 2>();
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j) a[i][j] = (__builtin_popcountll(uint64_t(i & j)) & 1) ? -1.0 : 1.0;
  return h;
}

// Paley constructions from the Jacobsthal matrix Q_ij = chi(j - i) (chi = Legendre symbol mod q),
// bordered as C = [[0, 1ᵀ], [±1, Q]]:
//  I  (q ≡ 3 mod 4, Q skew): C = [[0, 1ᵀ], [-1, Q]] is skew and H = I + C.
//  II (q ≡ 1 mod 4, Q symmetric): C = [[0, 1ᵀ], [1, Q]] is a symmetric conference matrix; each
//     entry becomes a 2x2 block, 0 -> [[1, -1], [-1, -1]] and ±1 -> ±[[1, 1], [1, -1]].
at::Tensor paley(int64_t k) {
  const bool one = paley_one(k);
  const int64_t q = one ? k - 1 : k / 2 - 1;
  std::vector<int> chi(q, -1);
  chi[0] = 0;
  for (int64_t x = 1; x < q; ++x) chi[x * x % q] = 1;
  auto c = [&](int64_t i, int64_t j) {
    if (i == 0) return j == 0 ? 0 : 1;
    if (j == 0) return one ? -1 : 1;
    return chi[((j - i) % q + q) % q];
  };
  at::Tensor h = at::empty({k, k}, at::kDouble);
  auto a = h.accessor<double, 2>();
  for (int64_t i = 0; i <= q; ++i)
    for (int64_t j = 0; j <= q; ++j) {
      const int v = c(i, j);
      if (one) {
        a[i][j] = i == j ? 1.0 : v;
        continue;
      }
      for (int di = 0; di < 2; ++di)
        for (int dj = 0; dj < 2; ++dj)
          a[2 * i + di][2 * j + dj] = v == 0 ? (di + dj == 0 ? 1.0 : -1.0) : (di && dj ? -v : v);
    }
  return h;
}

}  // namespace

bool hadamard_buildable(int64_t n) { return decompose(n).core != 0; }

at::Tensor hadamard_matrix(int64_t n) {
  const Decomposition d = decompose(n);
  if (d.core == 0) throw Error(unbuildable(n));
  at::Tensor h = sylvester(int64_t(1) << d.m);
  return d.core == 1 ? h : at::kron(paley(d.core), h);
}

at::Tensor random_signs(int64_t n, uint64_t seed) {
  if (n < 0) throw Error("random_signs: negative size " + std::to_string(n));
  std::mt19937_64 gen(seed);
  at::Tensor s = at::empty({n}, at::kFloat);
  auto a = s.accessor<float, 1>();
  for (int64_t i = 0; i < n; ++i) a[i] = (gen() >> 63) ? -1.0f : 1.0f;
  return s;
}

HadamardTransform::HadamardTransform(int64_t n, at::Tensor signs) : n_(n) {
  const Decomposition d = decompose(n);
  if (d.core == 0) throw Error(unbuildable(n));
  if (signs.defined()) {
    if (signs.dim() != 1 || signs.size(0) != n || !signs.is_floating_point())
      throw Error("HadamardTransform: signs must be a floating vector [" + std::to_string(n) + "]");
    signs_ = signs.to(at::kFloat).contiguous();
    if (!signs_.abs().eq(1).all().item<bool>()) throw Error("HadamardTransform: signs must be ±1");
  }
  // Factors: the Paley core (if any), then 2^m split evenly into pieces of at most 128
  // (2048 = 32 ⊗ 64, 256 = 16 ⊗ 16, 5632 = 44 ⊗ 128, 704 = 44 ⊗ 16).
  if (d.core > 1) {
    factors_.push_back(paley(d.core).to(at::kFloat));
    has_core_ = true;
  }
  const int pieces = (d.m + 6) / 7;
  for (int p = 0; p < pieces; ++p) {
    const int bits = d.m / pieces + (p >= pieces - d.m % pieces ? 1 : 0);
    factors_.push_back(sylvester(int64_t(1) << bits).to(at::kFloat));
  }
}

std::vector<int64_t> HadamardTransform::factor_sizes() const {
  std::vector<int64_t> sizes;
  for (const auto& f : factors_) sizes.push_back(f.size(0));
  return sizes;
}

HadamardTransform& HadamardTransform::to(const at::Device& device) {
  if (signs_.defined()) signs_ = signs_.to(device);
  for (auto& f : factors_) f = f.to(device);
  return *this;
}

at::Tensor HadamardTransform::apply(const at::Tensor& x) const { return run(x, false); }
at::Tensor HadamardTransform::apply_inverse(const at::Tensor& x) const { return run(x, true); }

at::Tensor HadamardTransform::run(const at::Tensor& x, bool inverse) const {
  if (n_ == 0) throw Error("HadamardTransform: used before construction");
  if (!x.defined() || x.dim() < 1 || x.size(-1) != n_ || !x.is_floating_point())
    throw Error("HadamardTransform: expected a floating tensor with last dim " + std::to_string(n_));
  const auto compute = x.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  const int64_t rows = x.numel() / n_;  // explicit, so empty inputs reshape too
  const bool cpu = x.device().is_cpu() && (!signs_.defined() || signs_.device().is_cpu());
  // Powers of 2 take the fast Walsh-Hadamard transform, in place on a copy (rows are independent,
  // so the thread count never changes a bit). With a Paley core (5632 = 44 x 128) the factored
  // GEMMs below are faster here: the dense 44 x 44 core dominates and BLAS does it better
  // (`loopq bench kernels`, "Online rotation").
  if (compute == at::kFloat && cpu && !has_core_ && !(at::GradMode::is_enabled() && x.requires_grad())) {
    at::Tensor y = x.to(at::kFloat).reshape({rows, n_}).clone(at::MemoryFormat::Contiguous);
    float* data = y.data_ptr<float>();
    const float* signs = signs_.defined() ? signs_.data_ptr<float>() : nullptr;
    at::parallel_for(0, rows, std::max<int64_t>(1, 65536 / n_), [&](int64_t r0, int64_t r1) {
      kernels::fwht(data + r0 * n_, r1 - r0, n_, n_, nullptr, 1, signs, inverse);
    });
    return y.reshape(x.sizes()).to(x.scalar_type());
  }
  at::Tensor y = x.to(compute);
  if (signs_.defined() && !inverse) y = y * signs_.to(y.options());
  // Row vectors times A ⊗ B ⊗ C on the [rows, a, b, c] view: multiply the last axis by its factor
  // (one plain GEMM), then move that axis to the front; after every factor the axes are back in
  // order. The inverse multiplies by (A ⊗ B ⊗ C)ᵀ = Aᵀ ⊗ Bᵀ ⊗ Cᵀ.
  for (auto it = factors_.rbegin(); it != factors_.rend(); ++it) {
    const int64_t f = it->size(0);
    at::Tensor g = it->to(y.options());
    y = at::matmul(y.reshape({rows * (n_ / f), f}), inverse ? g.t() : g).view({rows, n_ / f, f}).transpose(1, 2);
  }
  y = y.reshape(x.sizes()) * (1.0 / std::sqrt(double(n_)));
  if (signs_.defined() && inverse) y = y * signs_.to(y.options());
  return y.to(x.scalar_type());
}

at::Tensor HadamardTransform::matrix() const {
  if (n_ == 0) throw Error("HadamardTransform: used before construction");
  at::Tensor m = hadamard_matrix(n_) / std::sqrt(double(n_));
  if (signs_.defined()) m = signs_.to(at::kCPU, at::kDouble).unsqueeze(1) * m;  // diag(s) H
  return m;
}

}  // namespace loopq::quant
