// Arbitrary bytes and pathological inputs: encoding never crashes, is deterministic, and
// decoding gives back the (UTF-8 repaired) input.
#include <gtest/gtest.h>

#include <random>

#include "reference_tokenizers.h"
#include "io/tokenizer/tokenizer.h"
#include "io/tokenizer/utf8.h"

namespace {

using loopq::tok::Tokenizer;
using loopq::testing::gpt2;
using loopq::testing::qwen3;

TEST(TokenizerRobustness, RandomBytesRoundTrip) {
  std::mt19937 rng(1234);
  // Mix of random bytes and bytes biased towards whitespace, ASCII and UTF-8 lead bytes.
  const std::string alphabet = std::string(" \t\n\r'sa1.\xC3\xA9\xE2\x80\x94<|>") + '\0';
  for (int round = 0; round < 300; ++round) {
    std::string s;
    size_t n = rng() % 200;
    for (size_t i = 0; i < n; ++i)
      s += (rng() % 2) ? static_cast<char>(rng() % 256) : alphabet[rng() % alphabet.size()];
    const std::string repaired = loopq::tok::sanitize_utf8(s);
    auto g = gpt2().encode(s);
    EXPECT_EQ(g, gpt2().encode(s));
    EXPECT_EQ(gpt2().decode(g), repaired);
    auto q = qwen3().encode(s);
    EXPECT_EQ(q, qwen3().encode(repaired));
    std::string dq = qwen3().decode(q);
    EXPECT_TRUE(loopq::tok::is_valid_utf8(dq));
    EXPECT_EQ(qwen3().encode(dq), q) << "NFC text must be stable";
  }
}

TEST(TokenizerRobustness, LongRuns) {
  for (const std::string unit :
       {"A", " ", "\n", "\r\n", "!", "1", " a", "\xE2\x80\x94", "\xC3\xA9"}) {
    std::string s;
    while (s.size() < 300000) s += unit;
    for (const Tokenizer* t : {&qwen3(), &gpt2()}) {
      auto ids = t->encode(s);
      EXPECT_FALSE(ids.empty());
      EXPECT_EQ(t->decode(ids), s);
    }
  }
}

}  // namespace
