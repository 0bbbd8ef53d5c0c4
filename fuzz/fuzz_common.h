#pragma once
// Shared by the libFuzzer targets. Contract of every target: malformed input may only throw
// loopq::Error (the CLI prints it as a one-line error). Any other exception escapes the target
// and libFuzzer reports it as a crash, as it does for sanitizer findings, timeouts (-timeout) and
// allocations past -malloc_limit_mb.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace loopq::fuzz {

// Splits the input at NUL bytes into at most `max_parts` parts (the last part keeps any further
// NULs). JSON and text files never contain NUL, so one input can carry several files.
inline std::vector<std::string> split_nul(const uint8_t* data, size_t size, size_t max_parts) {
  std::vector<std::string> parts(1);
  for (size_t i = 0; i < size; ++i) {
    if (data[i] == 0 && parts.size() < max_parts) {
      parts.emplace_back();
    } else {
      parts.back().push_back(static_cast<char>(data[i]));
    }
  }
  return parts;
}

}  // namespace loopq::fuzz
