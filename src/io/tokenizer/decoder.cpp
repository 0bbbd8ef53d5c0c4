#include "io/tokenizer/decoder.h"

#include "io/tokenizer/byte_level.h"

namespace loopq::tok {

void decode_token(DecoderKind kind, std::string_view token, bool first, std::string& out) {
  switch (kind) {
    case DecoderKind::ByteLevel:
      // Tokens outside the byte alphabet keep their own UTF-8 bytes, as HF's ByteLevel does.
      if (!from_byte_level(token, out)) out.append(token);
      break;
    case DecoderKind::Join:
      if (!first) out += ' ';
      out.append(token);
      break;
  }
}

}  // namespace loopq::tok
