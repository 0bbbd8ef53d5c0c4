#pragma once
// Added tokens (special tokens like <|endoftext|> and user additions) are cut out of the text
// before normalization and pre-tokenization, so BPE never sees them.
#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace loopq::tok {

struct AddedToken {
  int32_t id = 0;
  std::string content;
  bool single_word = false;  // only match when not inside a word
  bool lstrip = false;       // the match swallows whitespace on its left
  bool rstrip = false;       // ... and on its right
  bool normalized = true;    // matched in the normalized text rather than the raw input
  bool special = false;      // skipped by decode(skip_special_tokens=true)
};

// A stretch [begin, end) of the text: plain text (id < 0) or one added token.
struct Segment {
  size_t begin, end;
  int32_t id;
};

// Finds added tokens with HF semantics: leftmost-longest non-overlapping matches, then the
// single_word / lstrip / rstrip rules of AddedVocabulary::find_matches.
class AddedTokenMatcher {
 public:
  AddedTokenMatcher() = default;
  // `patterns[i]` is the text to look for for `tokens[i]` (its content, normalized if needed).
  AddedTokenMatcher(const std::vector<AddedToken>& tokens,
                    const std::vector<std::string>& patterns);

  bool empty() const { return tokens_.empty(); }
  // Appends the segments covering `text` to `out`; empty text segments are not emitted.
  void split(std::string_view text, std::vector<Segment>& out) const;

 private:
  struct Node {
    std::unordered_map<unsigned char, int32_t> next;
    int32_t token = -1;  // index into tokens_ when a pattern ends here
  };
  std::vector<AddedToken> tokens_;
  std::vector<Node> trie_;
  std::array<bool, 256> first_byte_{};
};

}  // namespace loopq::tok
