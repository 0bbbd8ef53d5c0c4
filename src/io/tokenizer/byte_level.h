#pragma once
// GPT-2's byte-level alphabet: every byte is shown as a printable code point so that BPE
// vocabularies can be stored as text (bytes_to_unicode in the GPT-2 release).
#include <string>
#include <string_view>

namespace loopq::tok {

// UTF-8 encoding of the code point that stands for byte b.
const std::string& byte_level_char(unsigned char b);

// Maps every byte of `bytes` to its byte-level character.
std::string to_byte_level(std::string_view bytes);

// Inverse of to_byte_level for one token. Returns false (out untouched) if some character is
// not in the alphabet; HF's ByteLevel decoder then keeps the token's own UTF-8 bytes.
bool from_byte_level(std::string_view token, std::string& out);

}  // namespace loopq::tok
