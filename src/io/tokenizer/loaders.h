#pragma once
// File-format loaders; Tokenizer::load picks one from the path it is given.
#include <nlohmann/json.hpp>
#include <string>

#include "io/tokenizer/tokenizer_parts.h"

namespace loopq::tok {

// An HF tokenizer.json document. `file` names it in error messages.
TokenizerParts parts_from_hf_json(const nlohmann::json& root, const std::string& file);

// GPT-2's encoder.json (token -> id) and vocab.bpe (one merge per line after a "#version"
// header), with the GPT-2 regex, byte-level alphabet and no added tokens.
TokenizerParts parts_from_gpt2(const nlohmann::json& encoder, const std::string& encoder_file,
                               const std::string& merges_file);
// The same from the merges file's text (`merges_file` names it in messages); no file is read.
TokenizerParts parts_from_gpt2_text(const nlohmann::json& encoder, const std::string& encoder_file,
                                    const std::string& merges_text, const std::string& merges_file);

}  // namespace loopq::tok
