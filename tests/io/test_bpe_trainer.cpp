// Byte-level BPE training: hand-computed merges, tie-breaking, agreement with a naive trainer,
// exact chunked pre-tokenization, determinism, and round trips through the tokenizer loader.
#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <set>
#include <unistd.h>

#include "io/atomic_file.h"
#include "io/tokenizer/bpe_trainer.h"
#include "io/tokenizer/byte_level.h"
#include "io/tokenizer/json_fields.h"
#include "io/tokenizer/pretokenizer.h"
#include "io/tokenizer/tokenizer.h"
#include "util/error.h"

namespace {

using loopq::Error;
using loopq::tok::BpeTrainerOptions;
using loopq::tok::BpeTrainResult;
using loopq::tok::MergeList;
using loopq::tok::Tokenizer;
using loopq::tok::WordCount;
namespace fs = std::filesystem;

const std::string kShakespeare = std::string(LOOPQ_SHARED_DIR) + "/data/text/tiny-shakespeare.txt";
const std::string kG = "\xC4\xA0";  // "Ġ", the byte-level form of a space

BpeTrainerOptions options(size_t vocab_size, uint64_t min_frequency = 1) {
  BpeTrainerOptions o;
  o.vocab_size = vocab_size;
  o.min_frequency = min_frequency;
  return o;
}

const std::string& shakespeare() {
  static const std::string text = loopq::tok::read_text_file(kShakespeare);
  return text;
}

std::string shakespeare_prefix(size_t n) { return shakespeare().substr(0, n); }

// The 512-token tokenizer trained on the first 300 KB of Shakespeare (shared by several tests).
const BpeTrainResult& trained512() {
  static const BpeTrainResult r = [] {
    BpeTrainerOptions o = options(512, 2);
    o.keep_segmentation = true;
    return loopq::tok::train_bpe(shakespeare_prefix(300000), o);
  }();
  return r;
}

const Tokenizer& tokenizer512() {
  static auto t = Tokenizer::from_json_text(loopq::tok::bpe_tokenizer_json(trained512()), "t512");
  return *t;
}

// Straightforward BPE: recount every pair of every word at every step; same tie and
// duplicate rules as the trainer (see bpe_trainer.h).
MergeList naive_train(const std::vector<WordCount>& counts, size_t n_merges,
                      const std::set<std::string>& reserved) {
  std::vector<std::pair<std::vector<std::string>, uint64_t>> words;
  std::set<std::string> vocab = reserved;
  for (const WordCount& wc : counts) {
    std::vector<std::string> sym;
    for (size_t i = 0; i < wc.word.size();) {
      size_t len = (static_cast<unsigned char>(wc.word[i]) < 0x80) ? 1 : 2;  // alphabet: 1-2 bytes
      sym.push_back(wc.word.substr(i, len));
      i += len;
    }
    words.emplace_back(sym, wc.count);
  }
  for (int b = 0; b < 256; ++b) vocab.insert(loopq::tok::byte_level_char(b));
  MergeList merges;
  std::set<std::pair<std::string, std::string>> banned;
  while (merges.size() < n_merges) {
    std::map<std::pair<std::string, std::string>, uint64_t> count;
    for (const auto& [sym, c] : words)
      for (size_t i = 0; i + 1 < sym.size(); ++i) count[{sym[i], sym[i + 1]}] += c;
    const std::pair<std::string, std::string>* best = nullptr;
    uint64_t best_count = 0;
    for (const auto& [p, c] : count)  // ascending pair order: the first maximum wins ties
      if (!banned.count(p) && c > best_count) best = &p, best_count = c;
    if (!best) break;
    const auto pair = *best;
    const std::string joined = pair.first + pair.second;
    if (vocab.count(joined)) {
      banned.insert(pair);
      continue;
    }
    vocab.insert(joined);
    merges.push_back(pair);
    for (auto& [sym, c] : words) {
      std::vector<std::string> out;
      for (size_t i = 0; i < sym.size();) {
        if (i + 1 < sym.size() && sym[i] == pair.first && sym[i + 1] == pair.second) {
          out.push_back(joined);
          i += 2;
        } else {
          out.push_back(sym[i++]);
        }
      }
      sym.swap(out);
    }
  }
  return merges;
}

// Applies `merges` to one byte-level word, lowest rank first, leftmost on equal rank.
std::vector<std::string> greedy_by_rank(const std::string& word, const MergeList& merges) {
  std::map<std::pair<std::string, std::string>, size_t> rank;
  for (size_t k = 0; k < merges.size(); ++k) rank.emplace(merges[k], k);
  std::vector<std::string> sym;
  for (size_t i = 0; i < word.size();) {
    size_t len = (static_cast<unsigned char>(word[i]) < 0x80) ? 1 : 2;
    sym.push_back(word.substr(i, len));
    i += len;
  }
  while (true) {
    size_t best_rank = SIZE_MAX, best_pos = 0;
    for (size_t i = 0; i + 1 < sym.size(); ++i) {
      auto it = rank.find({sym[i], sym[i + 1]});
      if (it != rank.end() && it->second < best_rank) best_rank = it->second, best_pos = i;
    }
    if (best_rank == SIZE_MAX) return sym;
    sym[best_pos] += sym[best_pos + 1];
    sym.erase(sym.begin() + static_cast<long>(best_pos) + 1);
  }
}

std::vector<std::string> tail_vocab(const BpeTrainResult& r) {
  return std::vector<std::string>(r.vocab.begin() + 259, r.vocab.end());
}

using Merges = std::vector<std::pair<std::string, std::string>>;
using Strings = std::vector<std::string>;

TEST(BpeTrainer, ClosedFormSmallCorpus) {
  // Words: "aaab", "Ġaab", "Ġab" (once each). By hand:
  //   counts (a,a)=3 (a,b)=3 (Ġ,a)=2     -> tie, ("a","a") < ("a","b"): merge a+a
  //   [aa,a,b] [Ġ,aa,b] [Ġ,a,b]: (a,b)=2, the rest 1                  -> merge a+b
  //   [aa,ab] [Ġ,aa,b] [Ġ,ab]: all 1; "aa" < "Ġ" and "ab" < "b"      -> merge aa+ab
  //   [aaab] [Ġ,aa,b] [Ġ,ab]: (aa,b) < (Ġ,aa) < (Ġ,ab)               -> merge aa+b
  //   then Ġ+aab ("aab" < "ab"), then Ġ+ab; no pair is left.
  BpeTrainResult r = loopq::tok::train_bpe("aaab aab ab", options(300));
  EXPECT_EQ(r.merges, (Merges{{"a", "a"},
                              {"a", "b"},
                              {"aa", "ab"},
                              {"aa", "b"},
                              {kG, "aab"},
                              {kG, "ab"}}));
  EXPECT_EQ(tail_vocab(r), (Strings{"aa", "ab", "aaab", "aab", kG + "aab", kG + "ab"}));
  ASSERT_EQ(r.vocab.size(), 265u);
  EXPECT_EQ(r.vocab[0], "<|endoftext|>");
  EXPECT_EQ(r.vocab[1], "<|im_start|>");
  EXPECT_EQ(r.vocab[2], "<|im_end|>");
  EXPECT_EQ(r.vocab[3], loopq::tok::byte_level_char(0));
  EXPECT_EQ(r.vocab[3 + 'a'], "a");
  EXPECT_EQ(r.vocab[3 + ' '], kG);
  EXPECT_EQ(r.total_words, 3u);
  EXPECT_EQ(r.unique_words, 3u);

  // The vocab size and min_frequency both stop training.
  EXPECT_EQ(loopq::tok::train_bpe("aaab aab ab", options(261)).merges,
            (Merges{{"a", "a"}, {"a", "b"}}));
  BpeTrainResult r2 = loopq::tok::train_bpe("aaab aab ab", options(300, 2));
  EXPECT_EQ(r2.merges, (Merges{{"a", "a"}, {"a", "b"}}));
  EXPECT_EQ(r2.vocab.size(), 261u);
  EXPECT_TRUE(loopq::tok::train_bpe("aaab aab ab", options(300, 4)).merges.empty());
}

TEST(BpeTrainer, TieGoesToSmallestLeftTokenThenRightToken) {
  // (b,d)=10 > (a,b)=9: merge b+d, giving [ab][a,bd][bd][a,b,c]; then (a,b)=7 -> [ab][a,bd]
  // [bd][ab,c]. Now (a,bd)=2 and (ab,c)=2 tie: ("a","bd") < ("ab","c") although the joined
  // strings order the other way ("abd" > "abc").
  std::vector<WordCount> words = {{"ab", 5}, {"abc", 2}, {"abd", 2}, {"bd", 8}};
  BpeTrainResult r = loopq::tok::train_bpe_from_counts(words, options(300));
  EXPECT_EQ(r.merges, (Merges{{"b", "d"}, {"a", "b"}, {"a", "bd"}, {"ab", "c"}}));
  // Equal counts, different first tokens.
  r = loopq::tok::train_bpe_from_counts({{"ba", 2}, {"ab", 2}}, options(300));
  EXPECT_EQ(r.merges, (Merges{{"a", "b"}, {"b", "a"}}));
  // Input order of the table does not matter.
  r = loopq::tok::train_bpe_from_counts({{"ab", 2}, {"ba", 2}}, options(300));
  EXPECT_EQ(r.merges, (Merges{{"a", "b"}, {"b", "a"}}));
}

TEST(BpeTrainer, PairSpellingASpecialTokenIsNeverMerged) {
  BpeTrainerOptions o = options(300);
  o.special_tokens = {"<s>", "ab"};
  BpeTrainResult r = loopq::tok::train_bpe_from_counts({{"ab", 9}, {"cd", 2}}, o);
  EXPECT_EQ(r.merges, (Merges{{"c", "d"}}));
  EXPECT_EQ(r.vocab.size(), 2u + 256u + 1u);
  EXPECT_EQ(r.vocab[1], "ab");
}

TEST(BpeTrainer, OverlappingPairsMergeLeftToRight) {
  // "aaaaa": a+a pairs up from the left: [aa,aa,a]. Then (aa,a)=1 ties (aa,aa)=1 and wins
  // ("a" < "aa"): [aa,aaa] -> [aaaaa].
  BpeTrainResult r = loopq::tok::train_bpe_from_counts({{"aaaaa", 1}}, options(300));
  EXPECT_EQ(r.merges, (Merges{{"a", "a"}, {"aa", "a"}, {"aa", "aaa"}}));
}

TEST(BpeTrainer, SpecialTokensInTextAreCutOut) {
  auto words = loopq::tok::count_pretokens("hi<|endoftext|>there<|im_end|>hi",
                                           loopq::tok::default_special_tokens());
  ASSERT_EQ(words.size(), 2u);
  EXPECT_EQ(words[0].word, "hi");
  EXPECT_EQ(words[0].count, 2u);
  EXPECT_EQ(words[1].word, "there");
}

TEST(BpeTrainer, ChunkedParallelCountingIsExact) {
  // > 2 MB so that the text is cut into several chunks.
  std::string text = shakespeare() + "\n  \n\t x'll 12 " + shakespeare();
  auto one = loopq::tok::count_pretokens(text, {}, 1);
  auto many = loopq::tok::count_pretokens(text, {}, 3);
  ASSERT_EQ(one.size(), many.size());
  for (size_t i = 0; i < one.size(); ++i) {
    ASSERT_EQ(one[i].word, many[i].word);
    ASSERT_EQ(one[i].count, many[i].count);
  }
  // Reference: the loader's ByteLevel pre-tokenizer on the whole text as one piece.
  std::vector<std::string> pieces{text};
  loopq::tok::ByteLevelPreTokenizer(false, true).pre_tokenize(pieces);
  std::map<std::string, uint64_t> ref;
  for (const auto& p : pieces) ++ref[p];
  ASSERT_EQ(ref.size(), one.size());
  size_t i = 0;
  for (const auto& [w, c] : ref) {
    ASSERT_EQ(w, one[i].word);
    ASSERT_EQ(c, one[i].count) << w;
    ++i;
  }
}

TEST(BpeTrainer, IncrementalUpdatesMatchNaiveTrainer) {
  auto words = loopq::tok::count_pretokens(shakespeare_prefix(40000) + " caf\xC3\xA9 \xE2\x82\xAC\xE2\x82\xAC",
                                           loopq::tok::default_special_tokens());
  BpeTrainResult r = loopq::tok::train_bpe_from_counts(words, options(259 + 200));
  std::set<std::string> specials(r.vocab.begin(), r.vocab.begin() + 3);
  MergeList naive = naive_train(words, 200, specials);
  ASSERT_EQ(r.merges.size(), 200u);
  EXPECT_EQ(r.merges, naive);
}

TEST(BpeTrainer, DeterministicAcrossRunsAndThreads) {
  const std::string text = shakespeare_prefix(300000);
  BpeTrainerOptions o = options(512, 2);
  o.threads = 1;
  std::string a = loopq::tok::bpe_tokenizer_json(loopq::tok::train_bpe(text, o));
  o.threads = 2;
  std::string b = loopq::tok::bpe_tokenizer_json(loopq::tok::train_bpe(text, o));
  std::string c = loopq::tok::bpe_tokenizer_json(trained512());
  EXPECT_EQ(a, b);
  EXPECT_EQ(a, c);
}

TEST(BpeTrainer, RoundTripThroughLoader) {
  const BpeTrainResult& r = trained512();
  EXPECT_EQ(r.vocab.size(), 512u);
  EXPECT_EQ(r.merges.size(), 512u - 259u);
  const Tokenizer& t = tokenizer512();
  EXPECT_EQ(t.vocab_size(), 512u);
  EXPECT_EQ(t.token_to_id("<|endoftext|>"), 0);
  EXPECT_EQ(t.token_to_id("<|im_start|>"), 1);
  EXPECT_EQ(t.token_to_id("<|im_end|>"), 2);
  EXPECT_TRUE(t.is_special(0) && t.is_special(1) && t.is_special(2));
  EXPECT_EQ(t.encode("<|im_start|>user\nhi<|im_end|><|endoftext|>").front(), 1);
  EXPECT_EQ(t.encode("<|endoftext|>"), (std::vector<int32_t>{0}));

  const std::string mixed =
      "First Citizen:\nBefore we proceed any further, hear me speak.\n\n"
      "  Caf\xC3\xA9 na\xC3\xAFve \xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E \xF0\x9F\x98\x80 "
      "it's 2024-01-01\t\r\nend  ";
  std::vector<int32_t> ids = t.encode(mixed);
  EXPECT_EQ(t.decode(ids), mixed);
  for (int32_t id : ids) EXPECT_LT(id, 512);
  // Merges made the text shorter than its bytes.
  EXPECT_LT(ids.size(), mixed.size());

  // The files as written load through Tokenizer::load (directory form).
  fs::path dir = fs::temp_directory_path() / ("loopq_bpe_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  loopq::io::write_file_atomic((dir / "tokenizer.json").string(), loopq::tok::bpe_tokenizer_json(r));
  loopq::io::write_file_atomic((dir / "tokenizer_config.json").string(),
                               loopq::tok::bpe_tokenizer_config_json(r, 2048));
  auto loaded = Tokenizer::load(dir.string());
  EXPECT_EQ(loaded->encode(mixed), ids);
  auto cfg = loopq::tok::parse_json(
      loopq::tok::read_text_file((dir / "tokenizer_config.json").string()), "cfg");
  EXPECT_EQ(cfg["eos_token"], "<|endoftext|>");
  EXPECT_EQ(cfg["bos_token"], "<|endoftext|>");
  EXPECT_EQ(cfg["pad_token"], "<|endoftext|>");
  EXPECT_EQ(cfg["model_max_length"], 2048);
  EXPECT_EQ(cfg["tokenizer_class"], "PreTrainedTokenizerFast");
  EXPECT_EQ(cfg["added_tokens_decoder"]["2"]["content"], "<|im_end|>");
  fs::remove_all(dir);
}

TEST(BpeTrainer, JsonHasHfFields) {
  auto j = loopq::tok::parse_json(loopq::tok::bpe_tokenizer_json(trained512()), "t512");
  EXPECT_EQ(j["version"], "1.0");
  EXPECT_TRUE(j["truncation"].is_null() && j["padding"].is_null() && j["normalizer"].is_null());
  ASSERT_EQ(j["added_tokens"].size(), 3u);
  EXPECT_EQ(j["added_tokens"][1]["content"], "<|im_start|>");
  EXPECT_EQ(j["added_tokens"][1]["id"], 1);
  EXPECT_EQ(j["added_tokens"][1]["special"], true);
  EXPECT_EQ(j["added_tokens"][1]["normalized"], false);
  EXPECT_EQ(j["pre_tokenizer"]["type"], "ByteLevel");
  EXPECT_EQ(j["pre_tokenizer"]["add_prefix_space"], false);
  EXPECT_EQ(j["pre_tokenizer"]["use_regex"], true);
  EXPECT_EQ(j["post_processor"]["type"], "ByteLevel");
  EXPECT_EQ(j["decoder"]["type"], "ByteLevel");
  const auto& m = j["model"];
  EXPECT_EQ(m["type"], "BPE");
  EXPECT_TRUE(m["dropout"].is_null() && m["unk_token"].is_null());
  EXPECT_EQ(m["byte_fallback"], false);
  EXPECT_EQ(m["vocab"].size(), 512u);
  EXPECT_EQ(m["vocab"]["<|endoftext|>"], 0);
  EXPECT_EQ(m["vocab"][kG], 3 + 32);
  ASSERT_EQ(m["merges"].size(), 253u);
  const auto& first = trained512().merges[0];
  EXPECT_EQ(m["merges"][0], nlohmann::json::array({first.first, first.second}));
  // Merge k made token 259 + k.
  EXPECT_EQ(m["vocab"][first.first + first.second], 259);
}

TEST(BpeTrainer, TrainingSegmentationEqualsGreedyEncoding) {
  const BpeTrainResult& r = trained512();
  const Tokenizer& t = tokenizer512();
  ASSERT_EQ(r.words.size(), r.segmentation.size());
  ASSERT_GT(r.words.size(), 1000u);
  // Every training word encodes (through the loader's full pipeline) to exactly the tokens
  // training left it in.
  for (size_t i = 0; i < r.words.size(); ++i) {
    std::string raw;
    ASSERT_TRUE(loopq::tok::from_byte_level(r.words[i].word, raw));
    ASSERT_EQ(t.encode(raw), r.segmentation[i]) << r.words[i].word;
  }
  // And a straightforward lowest-rank-first application of the merges agrees with both, also
  // on words never seen in training.
  std::vector<std::string> pieces{"Unseen wordsmithery, 12345 r\xC3\xA9sum\xC3\xA9s!!\n\n  x"};
  loopq::tok::ByteLevelPreTokenizer(false, true).pre_tokenize(pieces);
  for (const std::string& p : pieces) {
    std::vector<int32_t> expect;
    for (const std::string& tok : greedy_by_rank(p, r.merges)) expect.push_back(*t.token_to_id(tok));
    std::string raw;
    ASSERT_TRUE(loopq::tok::from_byte_level(p, raw));
    EXPECT_EQ(t.encode(raw), expect) << p;
  }
}

TEST(BpeTrainer, Errors) {
  EXPECT_THROW(loopq::tok::train_bpe("abc", options(258)), Error);
  try {
    loopq::tok::train_bpe("abc", options(10));
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("at least 259"), std::string::npos) << e.what();
  }
  BpeTrainerOptions o = options(300);
  o.special_tokens = {"x", "x"};
  EXPECT_THROW(loopq::tok::train_bpe("abc", o), Error);
  o.special_tokens = {""};
  EXPECT_THROW(loopq::tok::train_bpe("abc", o), Error);
  o.special_tokens = {"a"};  // collides with the byte symbol "a"
  EXPECT_THROW(loopq::tok::train_bpe("abc", o), Error);
  EXPECT_THROW(loopq::tok::train_bpe_from_counts({{"a b", 1}}, options(300)), Error);  // raw space
  // Exactly 259: no merges, still a valid tokenizer.
  BpeTrainResult r = loopq::tok::train_bpe("abc abc", options(259));
  EXPECT_TRUE(r.merges.empty());
  auto t = Tokenizer::from_json_text(loopq::tok::bpe_tokenizer_json(r), "t259");
  EXPECT_EQ(t->decode(t->encode("abc \xE2\x82\xAC")), "abc \xE2\x82\xAC");
  EXPECT_EQ(t->vocab_size(), 259u);
}

}  // namespace
