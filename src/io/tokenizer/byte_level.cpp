#include "io/tokenizer/byte_level.h"

#include <array>

#include "io/tokenizer/utf8.h"

namespace loopq::tok {

namespace {

struct Tables {
  std::array<std::string, 256> to_char;
  std::array<int, 324> to_byte;  // code points used are < 256 + 68
  Tables() {
    to_byte.fill(-1);
    // Printable Latin-1 bytes keep their own code point; the other 68 bytes are shifted to
    // U+0100.. in byte order.
    auto printable = [](int b) {
      return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    };
    int shifted = 0;
    for (int b = 0; b < 256; ++b) {
      char32_t cp =
          printable(b) ? static_cast<char32_t>(b) : static_cast<char32_t>(256 + shifted++);
      append_utf8(to_char[b], cp);
      to_byte[cp] = b;
    }
  }
};

const Tables& tables() {
  static const Tables t;
  return t;
}

}  // namespace

const std::string& byte_level_char(unsigned char b) { return tables().to_char[b]; }

std::string to_byte_level(std::string_view bytes) {
  const Tables& t = tables();
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char b : bytes) out += t.to_char[b];
  return out;
}

bool from_byte_level(std::string_view token, std::string& out) {
  const Tables& t = tables();
  std::string bytes;
  bytes.reserve(token.size());
  for (size_t i = 0; i < token.size();) {
    Utf8Step st = utf8_step(token, i);
    if (!st.valid || st.cp >= t.to_byte.size() || t.to_byte[st.cp] < 0) return false;
    bytes += static_cast<char>(t.to_byte[st.cp]);
    i += st.len;
  }
  out += bytes;
  return true;
}

}  // namespace loopq::tok
