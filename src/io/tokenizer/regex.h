#pragma once
// PCRE2 wrapper for the pre-tokenizer patterns (UTF + UCP, JIT when available).
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace loopq::tok {

class Regex {
 public:
  // Throws loopq::Error naming the pattern if it does not compile.
  explicit Regex(const std::string& pattern);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // All non-overlapping matches, left to right, as [begin, end) byte offsets.
  // `s` must be valid UTF-8 (the tokenizer sanitizes its input first).
  std::vector<std::pair<size_t, size_t>> find_all(std::string_view s) const;

  const std::string& pattern() const { return pattern_; }

 private:
  std::string pattern_;
  void* code_ = nullptr;  // pcre2_code_8*, kept opaque so pcre2.h stays out of headers
};

// Rewrites \s and \S to Unicode White_Space, which is what HF's regex engines use; PCRE2's own
// \s also matches U+180E.
std::string translate_pattern(const std::string& pattern);

}  // namespace loopq::tok
