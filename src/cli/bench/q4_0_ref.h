#pragma once
// The benchmark's peer: a llama.cpp-style Q4_0 x Q8_0 matrix-vector product, one weight row at a
// time (ggml's stock, non-repacked layout): blocks of 32, fp16 block scale, weights as unsigned
// nibbles q + 8 (element j low nibble of byte j, element j + 16 high nibble), activations
// quantized on the fly to Q8_0. Plain AVX2 and AVX-512 dot products as in ggml-cpu-quants.c,
// chosen with the kernels' dispatch (loopq::kernels::active_path()).
#include <cstdint>
#include <vector>

namespace loopq::cli::q40 {

struct BlockQ4 {
  uint16_t d;  // fp16
  uint8_t qs[16];
};
struct BlockQ8 {
  uint16_t d;  // fp16
  int8_t qs[32];
};
static_assert(sizeof(BlockQ4) == 18 && sizeof(BlockQ8) == 34, "ggml block sizes");

uint16_t fp32_to_fp16(float f);
float fp16_to_fp32(uint16_t h);

// ggml quantize_row_q4_0_ref / quantize_row_q8_0_ref; k % 32 == 0.
void quantize_q4_0(const float* x, int64_t k, BlockQ4* out);
void quantize_q8_0(const float* x, int64_t k, BlockQ8* out);

// y[o] = row o of w (rows x k/32 blocks) . x, for rows [r0, r1).
void gemv(const BlockQ4* w, const BlockQ8* x, int64_t k, float* y, int64_t r0, int64_t r1);

// Per-ISA dot products of one row (nb blocks); AVX files are entered after a cpuid check.
float dot_scalar(const BlockQ4* w, const BlockQ8* x, int64_t nb);
float dot_avx2(const BlockQ4* w, const BlockQ8* x, int64_t nb);
float dot_avx512(const BlockQ4* w, const BlockQ8* x, int64_t nb);

}  // namespace loopq::cli::q40
