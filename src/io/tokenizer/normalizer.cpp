#include "io/tokenizer/normalizer.h"

#include <utf8proc.h>

#include <cstdlib>

#include "util/error.h"

namespace loopq::tok {

std::string NfcNormalizer::normalize(std::string text) const {
  // Code points below U+0300 never change under NFC unless a combining mark follows, and all
  // combining marks are >= U+0300, i.e. their UTF-8 starts with a byte >= 0xCC. Text made of
  // bytes < 0xCC (ASCII, Latin-1 range...) is therefore already NFC; skipping it is a big win.
  bool maybe_changes = false;
  for (unsigned char c : text)
    if (c >= 0xCC) {
      maybe_changes = true;
      break;
    }
  if (!maybe_changes) return text;
  utf8proc_uint8_t* out = nullptr;
  utf8proc_ssize_t n =
      utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(text.data()),
                   static_cast<utf8proc_ssize_t>(text.size()), &out,
                   static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
  if (n < 0) throw Error(std::string("NFC normalization failed: ") + utf8proc_errmsg(n));
  std::string result(reinterpret_cast<const char*>(out), static_cast<size_t>(n));
  std::free(out);
  return result;
}

std::string SequenceNormalizer::normalize(std::string text) const {
  for (const auto& s : steps_) text = s->normalize(std::move(text));
  return text;
}

}  // namespace loopq::tok
