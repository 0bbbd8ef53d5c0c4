#include "io/tokenizer/added_tokens.h"

#include <algorithm>

#include "io/tokenizer/utf8.h"

namespace loopq::tok {

namespace {

// Last code point of s[0, end), or 0 when empty. s is valid UTF-8.
char32_t last_char(std::string_view s) {
  if (s.empty()) return 0;
  size_t i = s.size() - 1;
  while (i > 0 && (static_cast<unsigned char>(s[i]) & 0xC0) == 0x80) --i;
  return utf8_step(s, i).cp;
}

// Start of the run of whitespace that ends s (s.size() when there is none).
size_t trailing_space_start(std::string_view s) {
  size_t i = s.size();
  while (i > 0) {
    size_t j = i - 1;
    while (j > 0 && (static_cast<unsigned char>(s[j]) & 0xC0) == 0x80) --j;
    if (!is_white_space(utf8_step(s, j).cp)) break;
    i = j;
  }
  return i;
}

size_t leading_space_len(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    Utf8Step st = utf8_step(s, i);
    if (!is_white_space(st.cp)) break;
    i += st.len;
  }
  return i;
}

}  // namespace

AddedTokenMatcher::AddedTokenMatcher(const std::vector<AddedToken>& tokens,
                                     const std::vector<std::string>& patterns)
    : tokens_(tokens) {
  trie_.emplace_back();
  for (size_t t = 0; t < tokens_.size(); ++t) {
    const std::string& p = patterns[t];
    if (p.empty()) continue;  // an empty pattern would match everywhere
    first_byte_[static_cast<unsigned char>(p[0])] = true;
    int32_t node = 0;
    for (unsigned char c : p) {
      auto it = trie_[node].next.find(c);
      if (it == trie_[node].next.end()) {
        trie_.emplace_back();
        int32_t child = static_cast<int32_t>(trie_.size() - 1);
        trie_[node].next.emplace(c, child);
        node = child;
      } else {
        node = it->second;
      }
    }
    trie_[node].token = static_cast<int32_t>(t);  // a later duplicate wins, like a HashMap
  }
}

void AddedTokenMatcher::split(std::string_view text, std::vector<Segment>& out) const {
  size_t start_offset = 0;
  auto emit_text = [&](size_t b, size_t e) {
    if (e > b) out.push_back({b, e, -1});
  };
  size_t pos = 0;
  while (pos < text.size()) {
    if (!first_byte_[static_cast<unsigned char>(text[pos])]) {
      ++pos;
      continue;
    }
    // Longest pattern starting at pos.
    int32_t node = 0, best = -1;
    size_t best_end = 0;
    for (size_t i = pos; i < text.size(); ++i) {
      auto it = trie_[node].next.find(static_cast<unsigned char>(text[i]));
      if (it == trie_[node].next.end()) break;
      node = it->second;
      if (trie_[node].token >= 0) best = trie_[node].token, best_end = i + 1;
    }
    if (best < 0) {
      ++pos;
      continue;
    }
    const AddedToken& tok = tokens_[best];
    size_t start = pos, stop = best_end;
    pos = best_end;  // matching resumes after the raw match, even if it is rejected below
    if (start < start_offset) continue;  // swallowed by the previous token's rstrip
    if (tok.single_word) {
      bool word_before = start > 0 && is_word_char(last_char(text.substr(0, start)));
      bool word_after = stop < text.size() && is_word_char(utf8_step(text, stop).cp);
      if (word_before || word_after) continue;
    }
    if (tok.lstrip) start = std::max(trailing_space_start(text.substr(0, start)), start_offset);
    if (tok.rstrip) stop += leading_space_len(text.substr(stop));
    emit_text(start_offset, start);
    out.push_back({start, stop, tok.id});
    start_offset = stop;
  }
  emit_text(start_offset, text.size());
}

}  // namespace loopq::tok
