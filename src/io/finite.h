#pragma once
// NaN/Inf detection in checkpoint tensors, without converting them. A NaN or Inf weight makes
// every downstream number garbage (perplexity "nan", quantization scales of inf), so loaders
// check each float tensor once, by its raw bits, and name the tensor.
#include <cstddef>
#include <optional>
#include <string>

#include "io/dtype.h"
#include "io/safetensors.h"

namespace loopq::io {

// Index of the first NaN or +-Inf among n elements of a float dtype at src (which may be
// unaligned), or nullopt. Integer and bool dtypes are always finite.
std::optional<size_t> find_non_finite(DType dtype, const void* src, size_t n);

// Throws loopq::Error "<where>tensor 'NAME' has NaN at element I of N" (or Inf). With
// `release`, a memory-mapped tensor's pages are dropped from the resident set as the scan passes
// them (release_pages), so scanning a whole checkpoint never holds more than a few MiB of it.
void check_finite(const TensorInfo& tensor, const std::string& where = "", bool release = false);

}  // namespace loopq::io
