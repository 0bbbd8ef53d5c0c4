#pragma once
// Element types of the safetensors format, their sizes and names, and scalar conversions between
// f32 and the 16-bit float formats (done by hand so the core library needs no torch).
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

namespace loopq::io {

enum class DType { F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL };

size_t dtype_size(DType dtype);
const char* dtype_name(DType dtype);  // "F32", "BF16", ... as spelled in safetensors headers
DType dtype_from_name(const std::string& name);                   // throws loopq::Error
std::optional<DType> dtype_try_from_name(const std::string& name);  // nullopt if unknown
bool dtype_is_float(DType dtype);  // F64, F32, F16, BF16

// bfloat16 <-> f32: round-to-nearest-even; NaN stays NaN (sign kept, quiet bit forced).
float bf16_to_f32(uint16_t bits);
uint16_t f32_to_bf16(float value);

// IEEE binary16 <-> f32: round-to-nearest-even, subnormals, overflow to inf, NaN stays NaN.
float f16_to_f32(uint16_t bits);
uint16_t f32_to_f16(float value);

// Converts n elements of a float dtype (F32/F16/BF16/F64) to f32. `src` may be unaligned (it
// usually points into a memory-mapped file). Throws loopq::Error for non-float dtypes.
void convert_to_f32(DType src_dtype, const void* src, float* dst, size_t n);

}  // namespace loopq::io
