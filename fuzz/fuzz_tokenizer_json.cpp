// tokenizer.json loader, then encode and decode of arbitrary bytes with the loaded tokenizer.
// Input: tokenizer.json text, NUL, bytes to encode (also read as little-endian u16 token ids to
// decode). Without a NUL the sample texts below are encoded.
#include <string>
#include <vector>

#include "fuzz/fuzz_common.h"
#include "io/tokenizer/tokenizer.h"
#include "util/error.h"

namespace {

void exercise(const loopq::tok::Tokenizer& t, const std::string& text) {
  const std::vector<int32_t> ids = t.encode(text);
  for (int32_t id : ids)
    if (id < 0 || static_cast<size_t>(id) >= t.vocab_size()) __builtin_trap();
  // Every id encode() emits has a token, so decoding it never fails; and streaming decode is
  // the same text as decode() (the documented StreamDecoder contract).
  const std::string whole = t.decode(ids);
  loopq::tok::StreamDecoder stream(t);
  std::string pieces;
  for (int32_t id : ids) pieces += stream.push(id);
  pieces += stream.flush();
  if (pieces != whole) __builtin_trap();
  (void)t.decode(ids, /*skip_special_tokens=*/true);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto parts = loopq::fuzz::split_nul(data, size, 2);
  std::unique_ptr<loopq::tok::Tokenizer> t;
  try {
    t = loopq::tok::Tokenizer::from_json_text(parts[0], "fuzz/tokenizer.json");
  } catch (const loopq::Error&) {
    return 0;
  }
  if (parts.size() > 1) {
    exercise(*t, parts[1]);
    // Arbitrary ids: decode either works or names the bad id.
    std::vector<int32_t> ids;
    for (size_t i = 0; i + 1 < parts[1].size(); i += 2)
      ids.push_back(static_cast<uint8_t>(parts[1][i]) | static_cast<uint8_t>(parts[1][i + 1]) << 8);
    try {
      (void)t->decode(ids);
    } catch (const loopq::Error&) {
    }
  } else {
    for (const char* s : {"Hello, world! 123 ", "  \t\n x\xff\xfe y\xc3", "\xe4\xb8\xad\xe6\x96\x87 <|endoftext|>"})
      exercise(*t, s);
  }
  return 0;
}
