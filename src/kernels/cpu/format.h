#pragma once
// Plain data types of the packed low-bit CPU kernels. Torch-free: kernels see buffers, shapes
// and scales, never a model.
//
// Weights are kept on an unsigned code u with an integer zero z per (row, group):
//   w = scale * (u - z)
// A symmetric int4 code c in [-8, 7] is stored as u = c + 8 with z = 8, an int8 code c in
// [-128, 127] as u = c + 128 with z = 128; asymmetric codes (0..15 / 0..255) are stored as they
// are with their own zero point. One form serves both grids, and u8 x s8 is exactly what
// vpdpbusd / maddubs multiply: the kernel accumulates sum(u * x) and subtracts z * sum(x).
//
// Activations are signed int8 lanes. W4A4 activations are codes on the int4 grid [-8, 7]
// carried in int8 lanes: no x86 instruction multiplies int4 by int4 (VNNI's smallest operand is
// a byte), so W4A4 runs the W4A8 kernel on narrower values; it saves no weight bandwidth.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

namespace loopq::kernels {

// Rows of the output dimension interleaved per tile: one zmm holds 16 int32 accumulators, one
// per output row, so one broadcast activation dword feeds 16 rows.
constexpr int64_t kTileRows = 16;

// 64-byte aligned byte storage (one zmm load per weight block).
struct AlignedBytes {
  struct Free {
    void operator()(void* p) const;
  };
  std::unique_ptr<uint8_t, Free> ptr;
  size_t size = 0;
  static AlignedBytes make(size_t bytes);  // zero-filled
  uint8_t* data() const { return ptr.get(); }
};

// Weights packed for the kernels. Layout, tile by tile (tile t = rows 16t .. 16t+15):
//  int4: per 8-column chunk c, 64 bytes; byte 4r+j holds u[r][8c+j] in its low nibble and
//        u[r][8c+4+j] in its high nibble (r = row in the tile, j = 0..3).
//  int8: per 4-column chunk c, 64 bytes; byte 4r+j holds u[r][4c+j].
// Rows past `out` and columns past `in` are zero codes (their activations are zero, and their
// outputs are never written). scales[t][g][r] fp32, zeros[t][g][r] u8 (empty for symmetric).
struct PackedWeight {
  int bits = 4;            // 4 or 8
  bool symmetric = true;   // zero point is the constant 8 / 128, zeros is empty
  int64_t out = 0, in = 0;
  int64_t in_pad = 0;      // in rounded up to the chunk (8 columns int4, 4 int8)
  int64_t group = 0;       // columns per scale; in_pad for one scale per row
  int64_t groups = 1;      // in_pad / group
  int64_t tiles = 0;       // ceil(out / 16)
  AlignedBytes codes;
  std::vector<float> scales;
  std::vector<uint8_t> zeros;

  int64_t chunk_cols() const { return bits == 4 ? 8 : 4; }
  int64_t tile_bytes() const { return kTileRows * in_pad * bits / 8; }
  const uint8_t* tile(int64_t t) const { return codes.data() + t * tile_bytes(); }
  int32_t sym_zero() const { return bits == 4 ? 8 : 128; }
  // Bytes a kernel reads per call: codes, scales and zeros.
  int64_t bytes() const;
};

// Activations quantized per row: x ~= scale[r] * q[r][k], q in int8 lanes (on the int8 or int4
// grid), rows padded with zeros to in_pad columns.
struct QuantAct {
  int64_t rows = 0, in = 0, in_pad = 0;
  int bits = 8;
  std::vector<int8_t> q;       // [rows][in_pad]
  std::vector<float> scale;    // [rows]
  const int8_t* row(int64_t r) const { return q.data() + r * in_pad; }
};

// How a kernel quantizes fp32 activations: dynamic per-token absmax (times clip) or a given
// per-tensor scale (static).
struct ActParams {
  int bits = 8;                // 8 or 4 (int4 grid in int8 lanes)
  bool dynamic = true;
  float clip = 1.0f;           // dynamic only, in (0, 1]
  float static_scale = 0.0f;   // static only, > 0
};

// y[r][o] = (acc[r][o] * x_scale[r] + bias[o]) * out_scale[o] + out_bias[o], where acc is the
// sum over groups of int32 group dot products times the weight scale. Null pointers drop their
// term; out_scale / out_bias are the per-loop affine arrays of the caller.
struct Epilogue {
  const float* bias = nullptr;
  const float* out_scale = nullptr;
  const float* out_bias = nullptr;
};

// The project's file layout for one linear: codes [out, in], scales [out, groups] fp32, zero
// points [out, groups] (asymmetric only, fp32 holding integers in 0..2^b-1). Int4 codes come
// packed two per byte (even column in the low nibble, odd in the high), int8 one per byte, both
// two's complement; asymmetric codes q in 0..2^b-1 are stored as q - 2^(b-1), as
// quant/quantized_io.cpp writes them.
struct FileWeight {
  int bits = 4;
  bool symmetric = true;
  int64_t out = 0, in = 0;
  int64_t group_size = 0;              // 0: one scale per row
  const uint8_t* codes = nullptr;      // int4: [out][in/2]; int8: [out][in]
  const float* scales = nullptr;       // [out][groups]
  const float* zeros = nullptr;        // [out][groups], integer-valued; asymmetric only
};

// Unpacked logical weight for the scalar reference: code[o][k] is the signed code (symmetric) or
// the unsigned code (asymmetric), zero[o][g] is 0 (symmetric) or the zero point.
struct LogicalWeight {
  int bits = 4;
  bool symmetric = true;
  int64_t out = 0, in = 0, group_size = 0;  // 0: per row
  std::vector<int32_t> code;   // [out][in]
  std::vector<float> scale;    // [out][groups]
  std::vector<int32_t> zero;   // [out][groups]
  int64_t group() const { return group_size > 0 ? group_size : in; }
  int64_t groups() const { return in / group(); }
};

// A dense weight [out][in], row-major, fp32 or bf16 (the LM head): read in place, the caller
// owns the storage. bf16 values are widened to fp32 exactly (a 16-bit shift).
struct DenseWeight {
  const void* data = nullptr;
  bool bf16 = false;
  int64_t out = 0, in = 0;
};

}  // namespace loopq::kernels
