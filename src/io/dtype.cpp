#include "io/dtype.h"

#include <cstring>

#include "util/error.h"

namespace loopq::io {
namespace {

struct DTypeEntry {
  DType dtype;
  const char* name;
  size_t size;
};

constexpr DTypeEntry kDTypes[] = {
    {DType::F64, "F64", 8}, {DType::F32, "F32", 4}, {DType::F16, "F16", 2},
    {DType::BF16, "BF16", 2}, {DType::I64, "I64", 8}, {DType::I32, "I32", 4},
    {DType::I16, "I16", 2}, {DType::I8, "I8", 1},   {DType::U8, "U8", 1},
    {DType::BOOL, "BOOL", 1},
};

const DTypeEntry& entry(DType dtype) {
  for (const auto& e : kDTypes)
    if (e.dtype == dtype) return e;
  throw Error("invalid DType value " + std::to_string(static_cast<int>(dtype)));
}

uint32_t f32_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

float bits_f32(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// Drops the low `shift` bits of `v`, rounding to nearest with ties to even.
uint32_t shift_right_rne(uint32_t v, int shift) {
  const uint32_t rest = v & ((1u << shift) - 1);
  const uint32_t half = 1u << (shift - 1);
  uint32_t r = v >> shift;
  if (rest > half || (rest == half && (r & 1))) ++r;
  return r;
}

}  // namespace

size_t dtype_size(DType dtype) { return entry(dtype).size; }
const char* dtype_name(DType dtype) { return entry(dtype).name; }

std::optional<DType> dtype_try_from_name(const std::string& name) {
  for (const auto& e : kDTypes)
    if (name == e.name) return e.dtype;
  return std::nullopt;
}

DType dtype_from_name(const std::string& name) {
  if (auto d = dtype_try_from_name(name)) return *d;
  throw Error("unknown dtype '" + name + "'");
}

bool dtype_is_float(DType dtype) {
  return dtype == DType::F64 || dtype == DType::F32 || dtype == DType::F16 || dtype == DType::BF16;
}

float bf16_to_f32(uint16_t bits) { return bits_f32(static_cast<uint32_t>(bits) << 16); }

uint16_t f32_to_bf16(float value) {
  const uint32_t u = f32_bits(value);
  // Rounding could carry a NaN's payload into the exponent (or truncate it to inf): keep it NaN.
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x0040u);
  // Overflow past the largest finite value correctly carries into inf.
  return static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

float f16_to_f32(uint16_t bits) {
  const uint32_t sign = static_cast<uint32_t>(bits & 0x8000u) << 16;
  const uint32_t exp = (bits >> 10) & 0x1fu;
  const uint32_t mant = bits & 0x3ffu;
  if (exp == 0x1f) return bits_f32(sign | 0x7f800000u | (mant << 13));  // inf / NaN (payload kept)
  if (exp != 0) return bits_f32(sign | ((exp + 112) << 23) | (mant << 13));
  // Zero or subnormal: mant * 2^-24, exact in f32.
  const float mag = static_cast<float>(mant) * (1.0f / 16777216.0f);
  return sign ? -mag : mag;
}

uint16_t f32_to_f16(float value) {
  const uint32_t u = f32_bits(value);
  const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  const uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return sign | 0x7e00u | static_cast<uint16_t>((a >> 13) & 0x3ffu);  // NaN
  if (a >= 0x477ff000u) return sign | 0x7c00u;  // >= 65520 (halfway to 65536): rounds to inf
  if (a >= 0x38800000u) {                       // normal half (>= 2^-14): rebias 127 -> 15
    return sign | static_cast<uint16_t>(shift_right_rne(a - 0x38000000u, 13));
  }
  if (a <= 0x33000000u) return sign;  // <= 2^-25: exactly half the smallest subnormal ties to 0
  // Subnormal half: value / 2^-24 = (implicit-1 mantissa) * 2^(exp - 126). A carry out of the
  // subnormal range yields 0x400, which is exactly the smallest normal encoding.
  const uint32_t exp = a >> 23;
  const uint32_t mant = (a & 0x7fffffu) | 0x800000u;
  return sign | static_cast<uint16_t>(shift_right_rne(mant, static_cast<int>(126 - exp)));
}

void convert_to_f32(DType src_dtype, const void* src, float* dst, size_t n) {
  const auto* p = static_cast<const uint8_t*>(src);
  // memcpy per element: src may be unaligned, and memcpy compiles to a plain load.
  switch (src_dtype) {
    case DType::F32:
      if (n) std::memcpy(dst, p, n * 4);
      return;
    case DType::F64:
      for (size_t i = 0; i < n; ++i) {
        double d;
        std::memcpy(&d, p + 8 * i, 8);
        dst[i] = static_cast<float>(d);
      }
      return;
    case DType::F16:
    case DType::BF16: {
      const bool half = src_dtype == DType::F16;
      for (size_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, p + 2 * i, 2);
        dst[i] = half ? f16_to_f32(h) : bf16_to_f32(h);
      }
      return;
    }
    default:
      throw Error(std::string("convert_to_f32: dtype ") + dtype_name(src_dtype) +
                  " is not a floating-point type");
  }
}

}  // namespace loopq::io
