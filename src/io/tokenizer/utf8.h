#pragma once
// UTF-8 helpers shared by the tokenizer: validation with replacement, code point iteration and
// the few Unicode character classes the HF pre-tokenizers rely on.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace loopq::tok {

// One step of UTF-8 decoding starting at s[i].
struct Utf8Step {
  char32_t cp;     // decoded code point, U+FFFD when !valid
  uint32_t len;    // bytes consumed (>= 1)
  bool valid;      // false: s[i, i+len) is a maximal invalid subpart
  bool truncated;  // !valid only because the input ended inside a well-formed prefix
};
Utf8Step utf8_step(std::string_view s, size_t i);

// Replaces every maximal invalid subpart (Unicode 3.9 "substitution of maximal subparts", the
// rule of Python's errors='replace' and Rust's from_utf8_lossy) with U+FFFD. Valid input is
// returned unchanged, so both encoding and decoding are total and deterministic.
std::string sanitize_utf8(std::string_view s);
bool is_valid_utf8(std::string_view s);

void append_utf8(std::string& out, char32_t cp);

// Unicode White_Space (what Rust's char::is_whitespace and regex \s use).
bool is_white_space(char32_t cp);
// Rust's \w: letters, marks, decimal/letter numbers, connector punctuation, joiners.
bool is_word_char(char32_t cp);
// Rust's char::is_numeric: general categories Nd, Nl, No.
bool is_numeric(char32_t cp);

}  // namespace loopq::tok
