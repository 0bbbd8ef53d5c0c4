#pragma once
// Byte-level BPE tokenizer compatible with HF `tokenizers` (tokenizer.json) and with GPT-2's
// encoder.json + vocab.bpe.
//
// Encoding pipeline (HF semantics, add_special_tokens=false):
//   invalid UTF-8 -> U+FFFD, added tokens cut out of the raw text, normalizer, added tokens
//   with normalized=true cut out, pre-tokenizer, BPE on every piece.
// Unsupported tokenizer.json features are refused with loopq::Error at load time rather than
// silently producing different ids.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

namespace loopq::tok {

struct TokenizerParts;
class AddedTokenMatcher;

class Tokenizer {
 public:
  // path: a directory (uses tokenizer.json, else encoder.json + vocab.bpe in it), a
  // tokenizer.json file, or an encoder.json file (vocab.bpe must sit beside it).
  static std::unique_ptr<Tokenizer> load(const std::string& path);
  // Builds a tokenizer from tokenizer.json text; `name` labels error messages.
  static std::unique_ptr<Tokenizer> from_json_text(const std::string& json_text,
                                                   const std::string& name);

  explicit Tokenizer(TokenizerParts parts);
  ~Tokenizer();
  Tokenizer(const Tokenizer&) = delete;
  Tokenizer& operator=(const Tokenizer&) = delete;

  // No BOS/EOS is added; added/special tokens written in the text are matched. Thread-safe.
  std::vector<int32_t> encode(const std::string& text) const;
  // Special tokens decode to their content unless skipped. Bytes that do not form valid UTF-8
  // become U+FFFD. Throws loopq::Error for ids that have no token.
  std::string decode(const std::vector<int32_t>& ids, bool skip_special_tokens = false) const;

  size_t vocab_size() const;  // max id + 1 over vocab and added tokens
  std::optional<int32_t> token_to_id(const std::string& token) const;
  std::string id_to_token(int32_t id) const;  // throws loopq::Error on unknown id
  bool is_special(int32_t id) const;

  // Raw bytes that `id` contributes to decode() output (before UTF-8 repair); `first` is whether
  // it is the first emitted token. Empty for skipped special tokens.
  std::string token_bytes(int32_t id, bool skip_special_tokens, bool first) const;

 private:
  void encode_text(const std::string& text, std::vector<int32_t>& out) const;

  std::unique_ptr<TokenizerParts> parts_;
  std::unique_ptr<AddedTokenMatcher> raw_matcher_;         // added tokens with normalized=false
  std::unique_ptr<AddedTokenMatcher> normalized_matcher_;  // normalized=true
  std::unordered_map<int32_t, size_t> added_by_id_;        // id -> index in parts_->added_tokens
  std::unordered_map<std::string, int32_t> added_by_content_;
  size_t vocab_size_ = 0;
};

// Incremental decoding for streaming generation: feed ids one by one and get the newly
// completed UTF-8 text; an incomplete multi-byte sequence at the end is held back until the
// next push() or flush(). Concatenating every push() and flush() equals decode() of all ids.
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tokenizer, bool skip_special_tokens = false);
  std::string push(int32_t id);
  std::string flush();  // emits what is held back (invalid tails become U+FFFD)

 private:
  const Tokenizer& tok_;
  bool skip_special_;
  bool first_ = true;
  std::string pending_;
};

}  // namespace loopq::tok
