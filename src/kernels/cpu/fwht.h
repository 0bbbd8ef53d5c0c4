#pragma once
// Fast Walsh-Hadamard transform for online rotations, torch-free. Sizes n = K * 2^m with the
// K x K core (1, or a Paley matrix as quant/hadamard.cpp builds it) passed in by the caller.
// Normalized like quant::HadamardTransform::apply: y = (x ⊙ s) (H_K ⊗ H_{2^m}) / sqrt(n) on row
// vectors, with H_{2^m} the Sylvester matrix in natural order.
#include <cstdint>

namespace loopq::kernels {

// In place over `rows` rows of length n (row stride ld). hk: K x K row-major ±1 (nullptr when
// K = 1); signs: ±1 [n] or nullptr. inverse: x -> (x Hᵀ / sqrt(n)) ⊙ s, undoing the forward.
// Throws loopq::Error if n != K * 2^m or hk is not ±1.
void fwht(float* x, int64_t rows, int64_t n, int64_t ld, const float* hk, int64_t k,
          const float* signs, bool inverse = false);

}  // namespace loopq::kernels
