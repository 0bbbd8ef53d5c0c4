#pragma once
// Byte-level BPE training (GPT-2 / HF ByteLevelBPETokenizer style) that produces an HF
// tokenizer.json the loader in this directory reads back.
//
// Pipeline:
//   1. Text: invalid UTF-8 -> U+FFFD (as Tokenizer::encode does); occurrences of the special
//      tokens are cut out and never counted, like HF's added-token extraction.
//   2. Pre-tokenization: ByteLevel(add_prefix_space=false, use_regex=true), i.e. the GPT-2 regex
//      split, each piece's bytes mapped to the GPT-2 alphabet. Pieces are counted in a hash map
//      (word -> count), in parallel over chunks cut where the regex split is context-free.
//   3. Vocab: special tokens (ids 0..), then the 256 byte symbols in byte order, then one token
//      per merge.
//   4. Merges: repeatedly the adjacent pair with the highest count over the word table, with
//      incremental pair-count updates, pair -> words index and a lazily invalidated max-heap.
//
// Merge choice (deterministic, independent of hash-map order and of the thread count):
//   - highest count first;
//   - ties: the lexicographically smallest pair (left token string, then right token string),
//     comparing the byte-level token strings as written in the vocab (byte-wise, i.e. UTF-8
//     code-unit order); e.g. ("a","b") < ("a","bc") < ("ab","c") < ("Ġ","a").
//   - a pair whose concatenation is already a token is never merged. With merges applied to
//     every word at each step, plain BPE never builds one string twice, so in practice this
//     only keeps merges from spelling a special token (HF would reuse the special token's id).
//     Every merge therefore adds exactly one new token (merge k has id n_special + 256 + k),
//     and training's segmentation of every word equals the greedy lowest-rank-first encoding
//     that the loader (and HF) perform.
//   Training stops when the vocab reaches vocab_size or when no mergeable pair has a count of
//   at least min_frequency.
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "io/tokenizer/bpe_model.h"

namespace loopq::tok {

// Special tokens of SmolLM2 / Ouro, ids 0, 1, 2.
std::vector<std::string> default_special_tokens();

struct BpeTrainerOptions {
  size_t vocab_size = 4096;      // must be >= special_tokens.size() + 256
  uint64_t min_frequency = 2;    // a pair needs at least this count to be merged
  std::vector<std::string> special_tokens = default_special_tokens();
  int threads = 0;               // pre-tokenization threads; 0 = hardware concurrency
  bool keep_segmentation = false;  // fill BpeTrainResult::segmentation
};

// A pre-token in byte-level form with its number of occurrences.
struct WordCount {
  std::string word;
  uint64_t count;
};

struct BpeTrainResult {
  std::vector<std::string> vocab;  // id -> token (byte-level form); specials first
  MergeList merges;                // rank order; merges[k] produced vocab[n_special + 256 + k]
  size_t num_special = 0;

  // Statistics.
  uint64_t input_bytes = 0;        // text bytes trained on
  uint64_t total_words = 0;        // pre-tokens counted
  size_t unique_words = 0;
  double count_seconds = 0, merge_seconds = 0;

  // With keep_segmentation: words (sorted) and each word's final ids after training.
  std::vector<WordCount> words;
  std::vector<std::vector<int32_t>> segmentation;
};

// Splits `text` (already valid UTF-8 or not) into pre-tokens and counts them; the result is
// sorted by word. Special-token occurrences are removed first.
std::vector<WordCount> count_pretokens(std::string_view text,
                                       const std::vector<std::string>& special_tokens,
                                       int threads = 0);

// Learns merges from a word-frequency table (words in byte-level form). Throws loopq::Error on
// invalid options (vocab too small, duplicate or empty special tokens, words that are not
// made of byte-level characters).
BpeTrainResult train_bpe_from_counts(const std::vector<WordCount>& words,
                                     const BpeTrainerOptions& options);

// count_pretokens + train_bpe_from_counts.
BpeTrainResult train_bpe(std::string_view text, const BpeTrainerOptions& options);

// tokenizer.json (HF format: ByteLevel pre-tokenizer/post-processor/decoder, BPE model,
// special tokens as added tokens). Deterministic text, one vocab entry / merge per line.
std::string bpe_tokenizer_json(const BpeTrainResult& result);

// tokenizer_config.json for transformers' PreTrainedTokenizerFast: bos/eos/pad/unk are the
// first special token, the others are additional special tokens.
std::string bpe_tokenizer_config_json(const BpeTrainResult& result, size_t model_max_length);

}  // namespace loopq::tok
