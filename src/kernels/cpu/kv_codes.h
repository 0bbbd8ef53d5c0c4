#pragma once
// Packed KV-cache rows (torch-free): one row is one token's K or V, n values quantized in groups
// of `group` consecutive values, each group with an fp32 scale and (asymmetric grids) an fp32
// zero point. Codes are stored unsigned, u = c - code_offset (code_offset = qmin: -8 / -128 on
// a symmetric grid, 0 on an asymmetric one), int8 one per byte, int4 two per byte: value 2i in
// the low nibble of byte i, value 2i+1 in its high nibble; an odd tail leaves the
// last high nibble 0. A value reads back as scale * (float(u + code_offset) - zero), the same two
// fp32 operations as quant/quantizer.cpp dequantize(), so it equals the fake-quant value bit for bit.
#include <cstdint>

namespace loopq::kernels {

struct KVRowFormat {
  int bits = 4;             // 4 or 8
  int32_t code_offset = 0;  // grid code = u + code_offset
  int64_t n = 0;            // values per row
  int64_t group = 0;        // values per scale; divides n
  bool has_zero = false;    // asymmetric: one fp32 zero point per group
  int64_t groups() const { return n / group; }
  int64_t code_bytes() const { return bits == 4 ? (n + 1) / 2 : n; }
  // Bytes of one stored row: codes, scales, zeros.
  int64_t row_bytes() const { return code_bytes() + groups() * int64_t(sizeof(float)) * (has_zero ? 2 : 1); }
};

// Throws loopq::Error on a format the kernels lack (bits other than 4/8, a group that does not
// divide n).
void check_kv_format(const KVRowFormat& f);

// n unsigned codes (each < 2^bits) <-> their packed bytes (f.code_bytes() of them).
void kv_pack_codes(int bits, const uint8_t* u, int64_t n, uint8_t* out);
void kv_unpack_codes(int bits, const uint8_t* in, int64_t n, uint8_t* u);

// Quantizes `rows` contiguous fp32 rows of f.n values (row r at x + r * f.n) into codes
// (f.code_bytes() per row), scales and zeros (f.groups() per row; zeros unused without zero
// points) with quant/quantizer.cpp quantize_activation's arithmetic, bit for bit: per group,
// range [min, max] (widened to include 0 when `widen`, i.e. one group per token) times `clip`
// in fp32; symmetric: scale = max(|min|, max) / qmax (1 for a zero range), zero 0; asymmetric:
// scale = (max - min) / qmax with [min, max] = [-1, 1] for a zero range, zero = round(-min /
// scale); code = clamp(round(x / scale) + zero, qmin, qmax), rounding half to even.
void kv_quantize_rows(const KVRowFormat& f, const float* x, int64_t rows, float clip, bool widen,
                      uint8_t* codes, float* scales, float* zeros);

// Dequantizes `rows` consecutive rows (codes: f.code_bytes() per row; scales and zeros:
// f.groups() per row; zeros null without zero points). Value j of row r goes to
// out[r * row_stride + (j / seg) * seg_stride + j % seg]: with seg = head_dim this scatters a
// token's flattened [heads * head_dim] vector into a [heads, tokens, head_dim] block.
void kv_dequant_rows(const KVRowFormat& f, const uint8_t* codes, const float* scales,
                     const float* zeros, int64_t rows, float* out, int64_t row_stride, int64_t seg,
                     int64_t seg_stride);

// Values [begin, begin + count) of one row (e.g. one head's slice of a token), dequantized into
// out[0, count): the same runs and arithmetic as kv_dequant_rows, so the same bits.
void kv_dequant_segment(const KVRowFormat& f, const uint8_t* codes, const float* scales,
                        const float* zeros, int64_t begin, int64_t count, float* out);

}  // namespace loopq::kernels
