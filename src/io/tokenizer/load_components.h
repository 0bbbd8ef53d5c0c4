#pragma once
// Builds the pipeline stages from their tokenizer.json sections. Anything we do not implement
// exactly is an error: a tokenizer that silently differs from HF would corrupt every id.
#include <memory>

#include "io/tokenizer/decoder.h"
#include "io/tokenizer/json_fields.h"
#include "io/tokenizer/normalizer.h"
#include "io/tokenizer/pretokenizer.h"

namespace loopq::tok {

std::unique_ptr<Normalizer> normalizer_from_json(const JsonAt& j);       // null -> nullptr
std::unique_ptr<PreTokenizer> pre_tokenizer_from_json(const JsonAt& j);  // null -> nullptr
DecoderKind decoder_from_json(const JsonAt& j);

}  // namespace loopq::tok
