// Reproduces the reference id sequences for Qwen3 (tokenizer.json) and GPT-2
// (encoder.json + vocab.bpe) produced by independent implementations.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "io/tokenizer/json_fields.h"
#include "io/tokenizer/tokenizer.h"
#include "io/tokenizer/utf8.h"
#include "reference_tokenizers.h"
#include "util/error.h"

namespace {

using loopq::tok::Tokenizer;
namespace fs = std::filesystem;

const std::string kShared = LOOPQ_SHARED_DIR;
const std::string& kTok = loopq::testing::kTokenizerDir;
using loopq::testing::gpt2;
using loopq::testing::qwen3;

const nlohmann::json& reference() {
  static nlohmann::json j = loopq::tok::parse_json(
      loopq::tok::read_text_file(kTok + "/reference-encodings.json"), "reference-encodings.json");
  return j;
}

// The reference names files as "../shared/<dir>/<file>"; they live under shared/data/.
std::string resolve(const std::string& ref_path) {
  std::string rest = ref_path;
  const std::string prefix = "../shared/";
  if (rest.rfind(prefix, 0) == 0) rest = rest.substr(prefix.size());
  for (const std::string& base : {kShared + "/data/", kShared + "/"})
    if (fs::exists(base + rest)) return base + rest;
  ADD_FAILURE() << "cannot find " << ref_path;
  return "";
}

// First n code points of s.
std::string first_chars(const std::string& s, size_t n) {
  size_t i = 0;
  for (size_t k = 0; k < n && i < s.size(); ++k) i += loopq::tok::utf8_step(s, i).len;
  return s.substr(0, i);
}

std::string entry_text(const nlohmann::json& e) {
  if (e.contains("text")) return e["text"].get<std::string>();
  std::string all = loopq::tok::read_text_file(resolve(e["text_file"].get<std::string>()));
  return first_chars(all, e["first_chars"].get<size_t>());
}

void check_all(const Tokenizer& tok, const char* name) {
  const auto& entries = reference().at(name);
  ASSERT_GE(entries.size(), 17u);
  for (const auto& e : entries) {
    const std::string text = entry_text(e);
    const std::string label =
        e.contains("text") ? text.substr(0, 60) : e["text_file"].get<std::string>();
    const auto expected = e["ids"].get<std::vector<int32_t>>();
    const auto got = tok.encode(text);
    EXPECT_EQ(got, expected) << name << ": " << label;
    if (e["decoded_equals_input"].get<bool>()) {
      EXPECT_EQ(tok.decode(got), text) << name << " round trip: " << label;
    }
  }
}

TEST(TokenizerReference, Qwen3MatchesReferenceIds) { check_all(qwen3(), "qwen3"); }
TEST(TokenizerReference, Gpt2MatchesReferenceIds) { check_all(gpt2(), "gpt2"); }

TEST(TokenizerReference, LoadFromDirectoryPicksTheRightFormat) {
  auto q = Tokenizer::load(kTok + "/qwen3");
  auto g = Tokenizer::load(kTok + "/gpt2");
  EXPECT_EQ(q->vocab_size(), 151669u);
  EXPECT_EQ(g->vocab_size(), 50257u);
  EXPECT_EQ(q->encode("Hello, my dog is cute"), qwen3().encode("Hello, my dog is cute"));
  EXPECT_EQ(g->encode("Hello, my dog is cute"), gpt2().encode("Hello, my dog is cute"));
}

TEST(TokenizerReference, Qwen3SpecialTokens) {
  const Tokenizer& t = qwen3();
  EXPECT_EQ(t.token_to_id("<|endoftext|>"), 151643);
  EXPECT_TRUE(t.is_special(151643));
  EXPECT_FALSE(t.is_special(151667));  // <think> is added but not special
  EXPECT_FALSE(t.is_special(9707));
  EXPECT_EQ(t.id_to_token(151643), "<|endoftext|>");
  EXPECT_EQ(t.id_to_token(9707), "Hello");
  EXPECT_EQ(t.id_to_token(220), "\xC4\xA0");  // "Ġ"
  EXPECT_THROW(t.id_to_token(151669), loopq::Error);
  EXPECT_THROW(t.id_to_token(-1), loopq::Error);

  auto ids = t.encode("a<|endoftext|>b<|im_end|><|endoftext|>");
  ASSERT_EQ(ids.size(), 5u);
  EXPECT_EQ(ids[1], 151643);
  EXPECT_EQ(ids[3], 151645);
  EXPECT_EQ(ids[4], 151643);
  EXPECT_EQ(t.decode(ids), "a<|endoftext|>b<|im_end|><|endoftext|>");
  EXPECT_EQ(t.decode(ids, /*skip_special_tokens=*/true), "ab");
  EXPECT_EQ(std::count(ids.begin(), ids.end(), 151643), 2);
  // A prefix of a special token is ordinary text.
  for (int32_t id : t.encode("<|endoftext")) EXPECT_LT(id, 151643);
}

TEST(TokenizerReference, EmptyAndInvalidUtf8) {
  for (const Tokenizer* t : {&qwen3(), &gpt2()}) {
    EXPECT_TRUE(t->encode("").empty());
    EXPECT_EQ(t->decode({}), "");
    // Each maximal invalid subpart becomes one U+FFFD before tokenization.
    const std::string bad =
        "ab\xff"
        "c\xe2\x82"
        "d\xc0\xaf"
        "e";
    const std::string repaired =
        "ab\xEF\xBF\xBD"
        "c\xEF\xBF\xBD"
        "d\xEF\xBF\xBD\xEF\xBF\xBD"
        "e";
    auto ids = t->encode(bad);
    EXPECT_EQ(ids, t->encode(bad));
    EXPECT_EQ(ids, t->encode(repaired));
    EXPECT_EQ(t->decode(ids), repaired);
  }
}

TEST(TokenizerReference, DecodeRepairsSplitMultibyteTokens) {
  // GPT-2 splits 😀 into byte tokens; a prefix of them decodes to U+FFFD, all of them to 😀.
  const Tokenizer& t = gpt2();
  auto ids = t.encode("\xF0\x9F\x98\x80");
  ASSERT_GE(ids.size(), 2u);
  EXPECT_EQ(t.decode(ids), "\xF0\x9F\x98\x80");
  std::vector<int32_t> head(ids.begin(), ids.end() - 1);
  EXPECT_EQ(t.decode(head), "\xEF\xBF\xBD");
}

TEST(TokenizerReference, StreamDecoderMatchesDecode) {
  for (const Tokenizer* t : {&qwen3(), &gpt2()}) {
    const std::string text = "Emoji 😀👍🏽 🇺🇸, 日本語 and <|endoftext|> café\n";
    auto ids = t->encode(text);
    loopq::tok::StreamDecoder sd(*t);
    std::string streamed;
    for (int32_t id : ids) {
      std::string piece = sd.push(id);
      EXPECT_TRUE(loopq::tok::is_valid_utf8(piece));
      streamed += piece;
    }
    streamed += sd.flush();
    EXPECT_EQ(streamed, t->decode(ids));
    EXPECT_EQ(streamed, text);
  }
}

TEST(TokenizerReference, StreamDecoderHoldsBackIncompleteCharacters) {
  const Tokenizer& t = gpt2();
  auto ids = t.encode("\xF0\x9F\x98\x80!");  // byte tokens for 😀, then "!"
  loopq::tok::StreamDecoder sd(t);
  std::string out;
  for (size_t i = 0; i + 1 < ids.size(); ++i) out += sd.push(ids[i]);
  EXPECT_EQ(out, "\xF0\x9F\x98\x80");
  EXPECT_EQ(sd.push(ids.back()), "!");
  // A dangling lead byte is released as U+FFFD on flush.
  loopq::tok::StreamDecoder sd2(t);
  EXPECT_EQ(sd2.push(ids[0]), "");
  EXPECT_EQ(sd2.flush(), "\xEF\xBF\xBD");
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

TEST(TokenizerReference, SpeedOnWikitext) {
#if defined(__SANITIZE_ADDRESS__)  // gcc; ASan makes this 3-5x slower, the bounds mean nothing
  GTEST_SKIP() << "timing bounds do not apply to a sanitizer build";
#endif
  const std::string text = loopq::tok::read_text_file(kShared + "/data/text/wikitext2-test.txt");
  auto t0 = std::chrono::steady_clock::now();
  auto q = Tokenizer::load(kTok + "/qwen3/tokenizer.json");
  double load_q = seconds_since(t0);
  t0 = std::chrono::steady_clock::now();
  auto ids = q->encode(text);
  double enc_q = seconds_since(t0);
  t0 = std::chrono::steady_clock::now();
  auto ids2 = q->encode(text);  // warm word cache
  double enc_q2 = seconds_since(t0);
  EXPECT_EQ(ids, ids2);
  EXPECT_EQ(q->decode(ids), text);
  t0 = std::chrono::steady_clock::now();
  auto g = Tokenizer::load(kTok + "/gpt2");
  double load_g = seconds_since(t0);
  t0 = std::chrono::steady_clock::now();
  auto gids = g->encode(text);
  double enc_g = seconds_since(t0);
  std::printf(
      "[ speed    ] wikitext2-test %zu bytes: qwen3 load %.3fs, encode %.3fs cold / %.3fs warm "
      "(%zu ids); gpt2 load %.3fs, encode %.3fs (%zu ids)\n",
      text.size(), load_q, enc_q, enc_q2, ids.size(), load_g, enc_g, gids.size());
  // Generous bounds so a loaded machine does not fail the suite; typical numbers are far lower.
  EXPECT_LT(load_q, 10.0);
  EXPECT_LT(enc_q, 20.0);
}

}  // namespace
