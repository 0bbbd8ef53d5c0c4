// Small hand-checked tokenizers: BPE merge order, added tokens, pre-tokenizer behaviours,
// byte-level mapping, UTF-8 repair and load errors.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "io/tokenizer/byte_level.h"
#include "io/tokenizer/pretokenizer.h"
#include "io/tokenizer/tokenizer.h"
#include "io/tokenizer/utf8.h"
#include "util/error.h"

namespace {

using loopq::Error;
using loopq::tok::Tokenizer;
using Ids = std::vector<int32_t>;

// Tiny byte-level BPE. "Ġ" (U+0120) is the byte-level form of a space.
std::string tiny_json(
    const std::string& merges = R"(["h e", "l l", "he ll", "hell o", "Ġ w", "o r", "Ġw or"])",
    const std::string& normalizer = "null",
    const std::string& pre_tokenizer =
        R"({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true})") {
  return R"({
    "version": "1.0", "truncation": null, "padding": null,
    "added_tokens": [
      {"id": 20, "content": "<|end|>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
      {"id": 21, "content": "<|end|>x", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": false}
    ],
    "normalizer": )" +
         normalizer + R"(,
    "pre_tokenizer": )" +
         pre_tokenizer + R"(,
    "post_processor": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true},
    "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
    "model": {"type": "BPE", "dropout": null, "unk_token": "<unk>", "continuing_subword_prefix": null,
      "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
      "vocab": {"h": 0, "e": 1, "l": 2, "o": 3, "Ġ": 4, "w": 5, "r": 6, "d": 7, "he": 8, "ll": 9,
                "hell": 10, "hello": 11, "Ġw": 12, "or": 13, "Ġwor": 14, "<unk>": 15, "é": 16,
                "Ã": 17, "©": 18},
      "merges": )" +
         merges + R"(}
  })";
}

std::unique_ptr<Tokenizer> tiny(const std::string& json = tiny_json()) {
  return Tokenizer::from_json_text(json, "tiny.json");
}

TEST(TokenizerTiny, MergesByRank) {
  auto t = tiny();
  // "hello": he(0) -> ll(1) -> hell(2) -> hello(3). " world": Ġw(4) -> or(5) -> Ġwor(6), l, d.
  EXPECT_EQ(t->encode("hello world"), (Ids{11, 14, 2, 7}));
  EXPECT_EQ(t->decode({11, 14, 2, 7}), "hello world");
  // Without the "hell o" merge "hello" stops at hell + o.
  auto t2 = tiny(tiny_json(R"(["h e", "l l", "he ll"])"));
  EXPECT_EQ(t2->encode("hello"), (Ids{10, 3}));
  EXPECT_EQ(t->vocab_size(), 22u);
  EXPECT_EQ(t->token_to_id("hell"), 10);
  EXPECT_EQ(t->token_to_id("<|end|>"), 20);
  EXPECT_FALSE(t->token_to_id("zzz").has_value());
}

TEST(TokenizerTiny, MergesAsPairsEqualMergesAsStrings) {
  auto pairs = tiny(tiny_json(
      R"([["h","e"],["l","l"],["he","ll"],["hell","o"],["Ġ","w"],["o","r"],["Ġw","or"]])"));
  EXPECT_EQ(pairs->encode("hello world"), (Ids{11, 14, 2, 7}));
}

TEST(TokenizerTiny, UnknownCharactersUseUnk) {
  auto t = tiny();
  // 'i' and 'x' are not in the vocab; fuse_unk=false gives one <unk> each.
  EXPECT_EQ(t->encode("hix"), (Ids{0, 15, 15}));
  // é is two bytes, shown as "Ã" + "©" in the byte-level alphabet.
  EXPECT_EQ(t->encode("\xC3\xA9"), (Ids{17, 18}));
  EXPECT_EQ(t->decode({17, 18}), "\xC3\xA9");
}

TEST(TokenizerTiny, AddedTokensLongestMatchFirst) {
  auto t = tiny();
  EXPECT_EQ(t->encode("hello<|end|>hello"), (Ids{11, 20, 11}));
  EXPECT_EQ(t->encode("<|end|>xhello"), (Ids{21, 11}));  // longer token wins
  EXPECT_EQ(t->encode("<|end|><|end|>"), (Ids{20, 20}));
  EXPECT_TRUE(t->is_special(20));
  EXPECT_FALSE(t->is_special(21));
  EXPECT_EQ(t->decode({11, 20, 11}), "hello<|end|>hello");
  EXPECT_EQ(t->decode({11, 20, 11}, true), "hellohello");
  EXPECT_EQ(t->decode({21}, true), "<|end|>x");  // not special: kept
  EXPECT_THROW(t->decode({99}), Error);
}

TEST(TokenizerTiny, AddedTokenFlags) {
  auto json = tiny_json();
  auto set = [&](const std::string& from, const std::string& to) {
    json.replace(json.find(from), from.size(), to);
  };
  set(R"("content": "<|end|>", "single_word": false, "lstrip": false, "rstrip": false)",
      R"("content": "<|end|>", "single_word": false, "lstrip": true, "rstrip": true)");
  auto t = tiny(json);
  // lstrip/rstrip swallow the spaces around the token.
  EXPECT_EQ(t->encode("hello <|end|> hello"), (Ids{11, 20, 11}));

  json = tiny_json();
  set(R"("content": "<|end|>", "single_word": false)",
      R"("content": "<|end|>", "single_word": true)");
  auto sw = tiny(json);
  EXPECT_EQ(sw->encode("hello <|end|> hello"), (Ids{11, 4, 20, 4, 11}));
  // Inside a word the token is not matched: '<', '|', ... are unknown here.
  auto inside = sw->encode("hello<|end|>");
  EXPECT_EQ(std::count(inside.begin(), inside.end(), 20), 0);
}

TEST(TokenizerTiny, ByteLevelPrefixSpace) {
  auto t = tiny(tiny_json(R"(["h e", "l l", "he ll", "hell o", "Ġ w", "o r", "Ġw or"])", "null",
                          R"({"type": "ByteLevel", "add_prefix_space": true, "use_regex": true})"));
  EXPECT_EQ(t->encode("world"), (Ids{14, 2, 7}));
  EXPECT_EQ(t->encode(" world"), (Ids{14, 2, 7}));  // no second space
}

TEST(TokenizerTiny, NfcNormalizer) {
  auto t =
      tiny(tiny_json(R"(["h e"])", R"({"type": "Sequence", "normalizers": [{"type": "NFC"}]})"));
  // e + combining acute (U+0301) becomes é (U+00E9) = bytes C3 A9 = "Ã" "©".
  EXPECT_EQ(t->encode("e\xCC\x81"), (Ids{17, 18}));
  auto raw = tiny(tiny_json(R"(["h e"])"));
  EXPECT_EQ(raw->encode("e\xCC\x81"), (Ids{1, 15, 15}));  // CC and 81 are unknown bytes
}

TEST(TokenizerTiny, InvalidUtf8IsReplacedDeterministically) {
  auto t = tiny();
  // U+FFFD is three unknown byte-level symbols.
  EXPECT_EQ(t->encode("h\xFF"), (Ids{0, 15, 15, 15}));
  EXPECT_EQ(t->encode("h\xFF"), t->encode("h\xEF\xBF\xBD"));
  EXPECT_TRUE(t->encode("").empty());
}

TEST(Utf8, SanitizeReplacesMaximalInvalidSubparts) {
  using loopq::tok::sanitize_utf8;
  const std::string r = "\xEF\xBF\xBD";
  EXPECT_EQ(sanitize_utf8("plain"), "plain");
  EXPECT_EQ(sanitize_utf8("\x80"), r);
  EXPECT_EQ(sanitize_utf8("a\xE2\x82"), "a" + r);  // truncated 3-byte sequence
  EXPECT_EQ(sanitize_utf8("\xE2\x82z"), r + "z");
  EXPECT_EQ(sanitize_utf8("\xC0\xAF"), r + r);                  // overlong: both bytes bad
  EXPECT_EQ(sanitize_utf8("\xED\xA0\x80"), r + r + r);          // surrogate
  EXPECT_EQ(sanitize_utf8("\xF4\x90\x80\x80"), r + r + r + r);  // > U+10FFFF
  EXPECT_EQ(sanitize_utf8("\xF0\x9F\x98\x80"), "\xF0\x9F\x98\x80");
  EXPECT_EQ(sanitize_utf8(std::string("a\0b", 3)), std::string("a\0b", 3));
}

TEST(ByteLevel, AlphabetRoundTrips) {
  std::string all;
  for (int b = 0; b < 256; ++b) all += static_cast<char>(b);
  std::string mapped = loopq::tok::to_byte_level(all);
  EXPECT_EQ(loopq::tok::byte_level_char(' '), "\xC4\xA0");   // Ġ
  EXPECT_EQ(loopq::tok::byte_level_char('\n'), "\xC4\x8A");  // Ċ
  EXPECT_EQ(loopq::tok::byte_level_char('A'), "A");
  std::string back;
  ASSERT_TRUE(loopq::tok::from_byte_level(mapped, back));
  EXPECT_EQ(back, all);
  EXPECT_FALSE(loopq::tok::from_byte_level("\xE2\x82\xAC", back));  // € is not in the alphabet
}

// Pieces produced by a Split pre-tokenizer on "the-final--countdown" (HF documentation example).
std::vector<std::string> split_dash(loopq::tok::SplitBehavior b, bool invert = false) {
  loopq::tok::SplitPreTokenizer s(nullptr, "-", b, invert);
  std::vector<std::string> pieces{"the-final--countdown"};
  s.pre_tokenize(pieces);
  return pieces;
}

TEST(PreTokenizer, SplitBehaviours) {
  using B = loopq::tok::SplitBehavior;
  using V = std::vector<std::string>;
  EXPECT_EQ(split_dash(B::Removed), (V{"the", "final", "countdown"}));
  EXPECT_EQ(split_dash(B::Isolated), (V{"the", "-", "final", "-", "-", "countdown"}));
  EXPECT_EQ(split_dash(B::MergedWithPrevious), (V{"the-", "final-", "-", "countdown"}));
  EXPECT_EQ(split_dash(B::MergedWithNext), (V{"the", "-final", "-", "-countdown"}));
  EXPECT_EQ(split_dash(B::Contiguous), (V{"the", "-", "final", "--", "countdown"}));
  // invert: the non-dash stretches become the delimiters and are removed.
  EXPECT_EQ(split_dash(B::Removed, true), (V{"-", "-", "-"}));
}

TEST(PreTokenizer, RegexSplitAndDigits) {
  using V = std::vector<std::string>;
  loopq::tok::SplitPreTokenizer re(std::make_unique<loopq::tok::Regex>(R"(\p{N}+)"), "",
                                   loopq::tok::SplitBehavior::Removed, true);
  V p{"ab12cd3"};
  re.pre_tokenize(p);
  EXPECT_EQ(p, (V{"12", "3"}));

  V d1{"Call 123 please"}, d2{"Call 123 please"};
  loopq::tok::DigitsPreTokenizer(true).pre_tokenize(d1);
  loopq::tok::DigitsPreTokenizer(false).pre_tokenize(d2);
  EXPECT_EQ(d1, (V{"Call ", "1", "2", "3", " please"}));
  EXPECT_EQ(d2, (V{"Call ", "123", " please"}));

  // GPT-2 regex: contractions, letters, numbers, punctuation, trailing-space handling.
  loopq::tok::Regex gpt2(loopq::tok::kGpt2Pattern);
  V g{"I'm  ok 42!!\u00a0\u3000x"};
  loopq::tok::SplitPreTokenizer(std::make_unique<loopq::tok::Regex>(loopq::tok::kGpt2Pattern), "",
                                loopq::tok::SplitBehavior::Isolated, false)
      .pre_tokenize(g);
  EXPECT_EQ(g, (V{"I", "'m", " ", " ok", " 42", "!!", "\u00a0", "\u3000", "x"}));
}

// ---- load errors -------------------------------------------------------------------------

std::string temp_file(const std::string& name, const std::string& content) {
  auto dir = std::filesystem::temp_directory_path() / "loopq_tok_test";
  std::filesystem::create_directories(dir);
  auto p = dir / name;
  std::ofstream(p, std::ios::binary) << content;
  return p.string();
}

// Runs f, expects loopq::Error, and returns its message.
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "no loopq::Error thrown";
  return "";
}

TEST(TokenizerErrors, UnsupportedComponents) {
  auto msg = error_of([] { tiny(tiny_json(R"([])", R"({"type": "Lowercase"})")); });
  EXPECT_NE(msg.find("Lowercase"), std::string::npos) << msg;
  EXPECT_NE(msg.find("tiny.json"), std::string::npos) << msg;
  msg = error_of([] {
    tiny(tiny_json(R"([])", R"({"type": "Sequence", "normalizers": [{"type": "NFKC"}]})"));
  });
  EXPECT_NE(msg.find("NFKC"), std::string::npos) << msg;
  msg = error_of([] { tiny(tiny_json(R"([])", "null", R"({"type": "Whitespace"})")); });
  EXPECT_NE(msg.find("Whitespace"), std::string::npos) << msg;
  msg = error_of([] {
    tiny(tiny_json(
        R"([])", "null",
        R"({"type": "Split", "pattern": {"Regex": "("}, "behavior": "Isolated", "invert": false})"));
  });
  EXPECT_NE(msg.find("regex"), std::string::npos) << msg;
  msg = error_of([] {
    tiny(tiny_json(R"([])", "null",
                   R"({"type": "Split", "pattern": {"String": "x"}, "behavior": "Sideways"})"));
  });
  EXPECT_NE(msg.find("Sideways"), std::string::npos) << msg;

  std::string j = tiny_json();
  j.replace(j.find(R"("dropout": null)"), 15, R"("dropout": 0.1)");
  msg = error_of([&] { tiny(j); });
  EXPECT_NE(msg.find("dropout"), std::string::npos) << msg;
  j = tiny_json();
  j.replace(j.find(R"("type": "BPE")"), 13, R"("type": "WordPiece")");
  msg = error_of([&] { tiny(j); });
  EXPECT_NE(msg.find("WordPiece"), std::string::npos) << msg;
  j = tiny_json();
  const std::string dec = R"("decoder": {"type": "ByteLevel")";
  j.replace(j.find(dec), dec.size(), R"("decoder": {"type": "WordPiece")");
  msg = error_of([&] { tiny(j); });
  EXPECT_NE(msg.find("decoder"), std::string::npos) << msg;
}

TEST(TokenizerErrors, BadFilesAndFields) {
  auto msg = error_of([] { Tokenizer::load("/nonexistent/tokenizer.json"); });
  EXPECT_NE(msg.find("/nonexistent/tokenizer.json"), std::string::npos) << msg;

  std::string bad = temp_file("bad.json", "{\"model\": {\"vocab\": ");
  msg = error_of([&] { Tokenizer::load(bad); });
  EXPECT_NE(msg.find("bad.json"), std::string::npos) << msg;
  EXPECT_NE(msg.find("malformed JSON"), std::string::npos) << msg;

  msg = error_of([] { tiny(tiny_json(R"(["h e", "x y"])")); });  // merge of unknown tokens
  EXPECT_NE(msg.find("'x'"), std::string::npos) << msg;
  msg = error_of([] { tiny(tiny_json(R"(["h e l"])")); });
  EXPECT_NE(msg.find("model.merges[0]"), std::string::npos) << msg;
  msg = error_of([] { tiny(tiny_json(R"([["h", 1]])")); });
  EXPECT_NE(msg.find("model.merges[0]"), std::string::npos) << msg;

  std::string j = tiny_json();
  j.replace(j.find(R"("h": 0)"), 6, R"("h": "zero")");
  msg = error_of([&] { tiny(j); });
  EXPECT_NE(msg.find("model.vocab"), std::string::npos) << msg;
  j = tiny_json();
  j.replace(j.find(R"("id": 20)"), 8, R"("id": -3)");
  msg = error_of([&] { tiny(j); });
  EXPECT_NE(msg.find("added_tokens[0].id"), std::string::npos) << msg;
  j = tiny_json();
  j.replace(j.find(R"("lstrip": false)"), 15, R"("lstrip": "no")");
  msg = error_of([&] { tiny(j); });
  EXPECT_NE(msg.find("added_tokens[0].lstrip"), std::string::npos) << msg;
  msg = error_of([] { Tokenizer::from_json_text("[1, 2]", "arr.json"); });
  EXPECT_NE(msg.find("arr.json"), std::string::npos) << msg;
  msg = error_of([] { Tokenizer::from_json_text("{\"version\": \"1.0\"}", "nomodel.json"); });
  EXPECT_NE(msg.find("model"), std::string::npos) << msg;

  // An encoder.json without vocab.bpe beside it, and a directory with neither format.
  std::string enc = temp_file("lonely/encoder.json", "{\"a\": 0}");
  (void)enc;
  auto dir = std::filesystem::temp_directory_path() / "loopq_tok_test" / "empty_dir";
  std::filesystem::create_directories(dir);
  msg = error_of([&] { Tokenizer::load(dir.string()); });
  EXPECT_NE(msg.find("empty_dir"), std::string::npos) << msg;
}

TEST(TokenizerErrors, Gpt2Files) {
  auto dir = std::filesystem::temp_directory_path() / "loopq_tok_test" / "gpt2ish";
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "encoder.json") << R"({"a": 0, "b": 1, "ab": 2, "Ġ": 3})";
  std::ofstream(dir / "vocab.bpe") << "#version: 0.2\na b\n";
  auto t = Tokenizer::load(dir.string());
  EXPECT_EQ(t->encode("ab ab"), (Ids{2, 3, 2}));  // " ab" is Ġ + ab: there is no "Ġ a" merge
  EXPECT_EQ(t->decode({2, 3, 2}), "ab ab");

  std::ofstream(dir / "vocab.bpe") << "#version: 0.2\na c\n";
  auto msg = error_of([&] { Tokenizer::load((dir / "encoder.json").string()); });
  EXPECT_NE(msg.find("vocab.bpe"), std::string::npos) << msg;
  EXPECT_NE(msg.find("'c'"), std::string::npos) << msg;
  std::ofstream(dir / "vocab.bpe") << "#version: 0.2\nabc\n";
  msg = error_of([&] { Tokenizer::load(dir.string()); });
  EXPECT_NE(msg.find("line 2"), std::string::npos) << msg;
  std::ofstream(dir / "vocab.bpe") << "a b\n";
  std::ofstream(dir / "encoder.json") << R"({"a": 0, "b": [1]})";
  msg = error_of([&] { Tokenizer::load(dir.string()); });
  EXPECT_NE(msg.find("encoder.json"), std::string::npos) << msg;
}

}  // namespace
