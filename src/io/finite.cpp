#include "io/finite.h"

#include <algorithm>

#include "io/mapped_file.h"

#include <cstdint>
#include <cstring>

#include "util/error.h"

namespace loopq::io {
namespace {

// All-ones exponent <=> NaN or Inf; a zero mantissa under it is Inf.
template <typename U>
std::optional<size_t> scan(const uint8_t* p, size_t n, U exp_mask) {
  for (size_t i = 0; i < n; ++i) {
    U v;
    std::memcpy(&v, p + i * sizeof(U), sizeof(U));
    if ((v & exp_mask) == exp_mask) return i;
  }
  return std::nullopt;
}

template <typename U>
bool is_nan(const uint8_t* p, U exp_mask, U sign_mask) {
  U v;
  std::memcpy(&v, p, sizeof(U));
  return (v & ~sign_mask & ~exp_mask) != 0;
}

}  // namespace

std::optional<size_t> find_non_finite(DType dtype, const void* src, size_t n) {
  const auto* p = static_cast<const uint8_t*>(src);
  switch (dtype) {
    case DType::F64: return scan<uint64_t>(p, n, 0x7ff0000000000000ull);
    case DType::F32: return scan<uint32_t>(p, n, 0x7f800000u);
    case DType::F16: return scan<uint16_t>(p, n, 0x7c00u);
    case DType::BF16: return scan<uint16_t>(p, n, 0x7f80u);
    default: return std::nullopt;
  }
}

void check_finite(const TensorInfo& t, const std::string& where, bool release) {
  const size_t n = static_cast<size_t>(t.numel()), size = dtype_size(t.dtype);
  std::optional<size_t> bad;
  constexpr size_t kChunk = size_t(1) << 20;  // elements per scan step
  for (size_t off = 0; off < n && !bad; off += kChunk) {
    const size_t len = std::min(kChunk, n - off);
    if (const auto b = find_non_finite(t.dtype, t.data + off * size, len)) bad = off + *b;
    if (release) release_pages(t.data + off * size, len * size);
  }
  if (!bad) return;
  const uint8_t* e = t.data + *bad * dtype_size(t.dtype);
  bool nan = false;
  switch (t.dtype) {
    case DType::F64: nan = is_nan<uint64_t>(e, 0x7ff0000000000000ull, 1ull << 63); break;
    case DType::F32: nan = is_nan<uint32_t>(e, 0x7f800000u, 1u << 31); break;
    case DType::F16: nan = is_nan<uint16_t>(e, 0x7c00u, 0x8000u); break;
    default: nan = is_nan<uint16_t>(e, 0x7f80u, 0x8000u); break;
  }
  throw Error(where + "tensor '" + t.name.substr(0, 200) + "' has " + (nan ? "NaN" : "Inf") +
              " at element " + std::to_string(*bad) + " of " + std::to_string(n));
}

}  // namespace loopq::io
