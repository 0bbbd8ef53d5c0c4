#pragma once
// Decoders turn token strings back into text. Only what byte-level BPE needs is supported.
#include <string>
#include <string_view>

namespace loopq::tok {

enum class DecoderKind {
  ByteLevel,  // map each byte-level character back to its byte
  Join,       // no decoder in tokenizer.json: HF joins the token strings with spaces
};

// Appends the decoded form of one vocabulary token. `first` tells whether it is the first
// token of the output (Join puts a space before every other token).
void decode_token(DecoderKind kind, std::string_view token, bool first, std::string& out);

}  // namespace loopq::tok
