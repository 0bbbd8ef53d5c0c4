#pragma once
// Public API of the packed low-bit CPU kernels (torch-free). Sizes are checked here and bad ones
// throw loopq::Error; the per-ISA kernels behind dispatch assume checked input.
#include <cstdint>
#include <string>

#include "kernels/cpu/format.h"

namespace loopq::kernels {

// ---- packing (pack.cpp) -------------------------------------------------------------------
// From the file layout (FileWeight) to the kernel layout.
PackedWeight repack(const FileWeight& w);
// From logical codes (used by tests and the benchmark).
PackedWeight pack(const LogicalWeight& w);
// The file layout's code bytes of a logical weight (int4: even column in the low nibble;
// asymmetric codes shifted by -2^(b-1)), the inverse of unpack_file; for tests and tools.
std::vector<uint8_t> file_codes(const LogicalWeight& w);
// Logical weight of a file-layout weight (the reference's input).
LogicalWeight unpack_file(const FileWeight& w);
// Logical weight of a packed one, the inverse of pack (tools that need the dense weight back).
LogicalWeight unpack(const PackedWeight& p);

// ---- activation quantization (act_quant.cpp) -----------------------------------------------
// x: [rows][in] fp32 with row stride ld. Dynamic: per row, scale = max(|min(x,0)|, max(x,0)) *
// clip / qmax (qmax 127 or 7), zero-range rows get scale 1, q = clamp(round_half_even(x / scale),
// -qmax-1, qmax): quant/quantizer.cpp fake_quant_activation (symmetric) to the bit. Static: the
// same with the given per-tensor scale. Rows are split over `threads`.
void quantize_act(const float* x, int64_t rows, int64_t in, int64_t ld, const ActParams& p,
                  int64_t in_pad, QuantAct& out, int threads = 1);

// ---- matmul (dispatch.cpp) -----------------------------------------------------------------
// y[r][o] (row stride ldy) for r < x.rows: the GEMV kernel for 1-4 rows, the tiled GEMM for
// more; `threads` >= 1 workers (the caller's thread count).
void linear(const PackedWeight& w, const QuantAct& x, const Epilogue& ep, float* y, int64_t ldy,
            int threads);
// Fused: quantize fp32 x (dynamic or static) and multiply. `scratch` keeps its buffers.
void linear_f32(const PackedWeight& w, const float* x, int64_t rows, int64_t ldx, const ActParams& a,
                const Epilogue& ep, float* y, int64_t ldy, int threads, QuantAct& scratch);

// ---- dense fp32 / bf16 matmul for decode (dense_linear.cpp) ---------------------------------
// y[r][o] = sum_k x[r][k] * w[o][k], accumulated in fp32 (the LM head of a quantized model, whose
// fp32 BLAS path on one row re-packs the whole matrix per call). Meant for 1-4 rows; more rows
// run in blocks of 4, each streaming the whole weight (prefill should use a BLAS GEMM).
void dense_linear(const DenseWeight& w, const float* x, int64_t rows, int64_t ldx, float* y,
                  int64_t ldy, int threads);

// ---- reference (reference.cpp) -------------------------------------------------------------
// Plain loops over logical codes: int32 group sums of (code - zero) * q, then the epilogue in
// the same fp32 operation order as the kernels.
void reference_linear(const LogicalWeight& w, const QuantAct& x, const Epilogue& ep, float* y,
                      int64_t ldy);

// ---- dispatch (dispatch.cpp) ---------------------------------------------------------------
enum class Path { Scalar, Avx2, Avx512 };
const char* path_name(Path p);
bool path_supported(Path p);  // cpuid (and OS support of the registers)
// The path in use: LOOPQ_KERNELS=scalar|avx2|avx512 if set (error if the CPU lacks it), else
// the best supported one. Read once.
Path active_path();
// The path a LOOPQ_KERNELS value selects (null or empty: the best supported); throws on an
// unknown name or a path the CPU lacks.
Path path_from_setting(const char* value);
// Force a path for the following calls (tests, benchmark); throws if unsupported.
void set_path(Path p);
// The CPU model string and the relevant flags, for benchmark headers.
std::string cpu_description();

}  // namespace loopq::kernels
