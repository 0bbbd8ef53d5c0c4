#pragma once
// Pre-tokenizers cut normalized text into pieces that BPE encodes independently
// (HF tokenizers semantics: Split, ByteLevel, Digits, Sequence).
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "io/tokenizer/regex.h"

namespace loopq::tok {

// GPT-2's word-splitting pattern, used by ByteLevel(use_regex=true) and encoder.json tokenizers.
extern const char* const kGpt2Pattern;

enum class SplitBehavior { Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous };

// A stretch of a piece: either a delimiter match or the text between matches.
struct Span {
  size_t begin, end;
  bool is_match;
};

// Turns spans covering `s` in order into pieces per `behavior`, appending the non-empty ones
// to `out` (HF NormalizedString::split).
void split_spans(std::string_view s, const std::vector<Span>& spans, SplitBehavior behavior,
                 std::vector<std::string>& out);

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  // Replaces every piece by its sub-pieces; empty pieces are dropped.
  virtual void pre_tokenize(std::vector<std::string>& pieces) const = 0;
};

class SplitPreTokenizer : public PreTokenizer {
 public:
  // Exactly one of regex / literal is used: a null regex means "split on the literal string".
  SplitPreTokenizer(std::unique_ptr<Regex> regex, std::string literal, SplitBehavior behavior,
                    bool invert)
      : regex_(std::move(regex)),
        literal_(std::move(literal)),
        behavior_(behavior),
        invert_(invert) {}
  void pre_tokenize(std::vector<std::string>& pieces) const override;

 private:
  std::unique_ptr<Regex> regex_;
  std::string literal_;
  SplitBehavior behavior_;
  bool invert_;
};

class ByteLevelPreTokenizer : public PreTokenizer {
 public:
  ByteLevelPreTokenizer(bool add_prefix_space, bool use_regex)
      : add_prefix_space_(add_prefix_space), use_regex_(use_regex) {}
  void pre_tokenize(std::vector<std::string>& pieces) const override;

 private:
  bool add_prefix_space_, use_regex_;
};

class DigitsPreTokenizer : public PreTokenizer {
 public:
  explicit DigitsPreTokenizer(bool individual_digits) : individual_(individual_digits) {}
  void pre_tokenize(std::vector<std::string>& pieces) const override;

 private:
  bool individual_;
};

class SequencePreTokenizer : public PreTokenizer {
 public:
  explicit SequencePreTokenizer(std::vector<std::unique_ptr<PreTokenizer>> steps)
      : steps_(std::move(steps)) {}
  void pre_tokenize(std::vector<std::string>& pieces) const override;

 private:
  std::vector<std::unique_ptr<PreTokenizer>> steps_;
};

}  // namespace loopq::tok
