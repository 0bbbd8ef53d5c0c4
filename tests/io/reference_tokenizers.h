#pragma once
// The reference tokenizers in ../shared/data/tokenizers, loaded once per test binary.
#include <string>

#include "io/tokenizer/tokenizer.h"

namespace loopq::testing {

inline const std::string kTokenizerDir = std::string(LOOPQ_SHARED_DIR) + "/data/tokenizers";

inline const tok::Tokenizer& qwen3() {
  static auto t = tok::Tokenizer::load(kTokenizerDir + "/qwen3/tokenizer.json");
  return *t;
}
inline const tok::Tokenizer& gpt2() {
  static auto t = tok::Tokenizer::load(kTokenizerDir + "/gpt2/encoder.json");
  return *t;
}

}  // namespace loopq::testing
