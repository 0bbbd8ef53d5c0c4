// GPT-2 encoder.json + vocab.bpe loader, then encode/decode. Input: encoder.json text, NUL,
// vocab.bpe text, NUL, bytes to encode.
#include <string>
#include <vector>

#include "fuzz/fuzz_common.h"
#include "io/tokenizer/json_fields.h"
#include "io/tokenizer/loaders.h"
#include "io/tokenizer/tokenizer.h"
#include "io/tokenizer/tokenizer_parts.h"
#include "util/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto parts = loopq::fuzz::split_nul(data, size, 3);
  if (parts.size() < 2) return 0;
  std::unique_ptr<loopq::tok::Tokenizer> t;
  try {
    const auto encoder = loopq::tok::parse_json(parts[0], "fuzz/encoder.json");
    t = std::make_unique<loopq::tok::Tokenizer>(
        loopq::tok::parts_from_gpt2_text(encoder, "fuzz/encoder.json", parts[1], "fuzz/vocab.bpe"));
  } catch (const loopq::Error&) {
    return 0;
  }
  const std::string text = parts.size() > 2 ? parts[2] : std::string("Hello world, it's 2024!");
  const std::vector<int32_t> ids = t->encode(text);
  for (int32_t id : ids)
    if (id < 0 || static_cast<size_t>(id) >= t->vocab_size()) __builtin_trap();
  (void)t->decode(ids);
  return 0;
}
