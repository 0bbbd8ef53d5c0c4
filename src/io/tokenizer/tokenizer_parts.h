#pragma once
// The pipeline stages a loader assembles into a Tokenizer.
#include <memory>
#include <vector>

#include "io/tokenizer/added_tokens.h"
#include "io/tokenizer/bpe_model.h"
#include "io/tokenizer/decoder.h"
#include "io/tokenizer/normalizer.h"
#include "io/tokenizer/pretokenizer.h"

namespace loopq::tok {

struct TokenizerParts {
  std::unique_ptr<Normalizer> normalizer;       // null: text is used as is
  std::unique_ptr<PreTokenizer> pre_tokenizer;  // null: each text segment is one piece
  std::unique_ptr<BpeModel> model;              // required
  std::vector<AddedToken> added_tokens;
  DecoderKind decoder = DecoderKind::ByteLevel;
};

}  // namespace loopq::tok
