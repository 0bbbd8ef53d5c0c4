#pragma once
// Hadamard matrices and the fast (Kronecker-factored) Hadamard transform of the QuaRot baseline
// (quantization-reference.md §3.5). Orders are built as n = K * 2^m with K = 1 (Sylvester alone)
// or K a Paley order: Paley I gives q + 1 for a prime q ≡ 3 (mod 4), Paley II gives 2(q + 1) for
// a prime q ≡ 1 (mod 4). This reaches every Ouro size (2048, 5632 = 44*128, 704 = 44*16, ...)
// without stored tables; orders needing other constructions (52, 92, ...) throw.
#include <ATen/ATen.h>

#include <cstdint>
#include <vector>

namespace loopq::quant {

// True if hadamard_matrix(n) can be built.
bool hadamard_buildable(int64_t n);

// Exact ±1 Hadamard matrix of order n, double [n, n], H Hᵀ = n I. It is kron(H_K, H_{2^m}) with
// the smallest K (1 or a Paley order) such that n = K * 2^m. Throws loopq::Error otherwise.
at::Tensor hadamard_matrix(int64_t n);

// Deterministic ±1 float [n] from std::mt19937_64 (not the torch RNG, so the same seed gives the
// same signs across libtorch versions and devices).
at::Tensor random_signs(int64_t n, uint64_t seed);

// Orthonormal transform over the last dimension: apply(x) = (x ⊙ s) H_n / sqrt(n), i.e. QuaRot's
// random Hadamard diag(s) H / sqrt(n) acting on row vectors (s = 1 without signs). H_n is
// hadamard_matrix(n), applied as a chain of small Kronecker factors (e.g. 5632 = 44 ⊗ 128,
// 2048 = 32 ⊗ 64), so a row costs O(n (a + b + ...)) instead of O(n²).
class HadamardTransform {
 public:
  HadamardTransform() = default;
  // signs: optional ±1 vector [n] (any floating dtype); undefined means no random diagonal.
  explicit HadamardTransform(int64_t n, at::Tensor signs = {});

  int64_t size() const { return n_; }
  // y = (x ⊙ s) H / sqrt(n) over the last dim. fp32/fp64 inputs are computed in their own dtype,
  // fp16/bf16 in fp32 (as QuaRot's --fp32_had) and cast back. For n = 2^m on the CPU in fp32,
  // outside autograd, it is the fast Walsh-Hadamard transform (kernels/cpu/fwht.h); otherwise
  // the factors are plain GEMMs (differentiable, any device, and faster with a Paley core).
  at::Tensor apply(const at::Tensor& x) const;
  // x -> (x Hᵀ / sqrt(n)) ⊙ s, so apply_inverse(apply(x)) == x.
  at::Tensor apply_inverse(const at::Tensor& x) const;
  // Dense double [n, n] M = diag(s) H / sqrt(n) with apply(x) == x M. Folding: a Linear y = x Wᵀ
  // fed x' = apply(x) needs W' = W M (x' W'ᵀ = x M Mᵀ Wᵀ); compute in float64, then cast.
  at::Tensor matrix() const;
  // The ±1 float [n] diagonal, undefined if none was given.
  const at::Tensor& signs() const { return signs_; }
  // Sizes of the Kronecker factors, outermost first (their product is n; empty for n = 1).
  std::vector<int64_t> factor_sizes() const;
  // Move the cached fp32 factors and signs to a device (e.g. CUDA) so apply does not copy them
  // from the host on every call; other dtypes are converted on use.
  HadamardTransform& to(const at::Device& device);

 private:
  at::Tensor run(const at::Tensor& x, bool inverse) const;

  int64_t n_ = 0;
  at::Tensor signs_;                 // fp32 [n] or undefined
  std::vector<at::Tensor> factors_;  // ±1 fp32 Kronecker factors, outermost first
  bool has_core_ = false;            // n = K * 2^m with a Paley core K > 1
};

}  // namespace loopq::quant
