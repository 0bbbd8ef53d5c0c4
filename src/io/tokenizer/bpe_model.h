#pragma once
// BPE model: turns one pre-tokenized piece into vocabulary ids by repeatedly applying the
// lowest-ranked merge (HF tokenizers' BPE, without dropout).
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace loopq::tok {

struct BpeOptions {
  std::optional<std::string> unk_token;
  std::string continuing_subword_prefix;  // added to every symbol but the first of a word
  std::string end_of_word_suffix;         // added to the last symbol of a word
  bool fuse_unk = false;                  // consecutive unknown symbols become one unk
  bool byte_fallback = false;             // unknown symbols become <0xNN> byte tokens
  bool ignore_merges = false;             // a piece that is itself in the vocab is used as is
};

// Token pairs in merge order (rank = index).
using MergeList = std::vector<std::pair<std::string, std::string>>;

class BpeModel {
 public:
  // Throws loopq::Error prefixed with `where` (the file) when a merge names an unknown token.
  BpeModel(std::unordered_map<std::string, int32_t> vocab, const MergeList& merges,
           BpeOptions options, const std::string& where);

  // Appends the ids of `piece`. Thread-safe.
  void tokenize(const std::string& piece, std::vector<int32_t>& out) const;

  std::optional<int32_t> token_to_id(const std::string& token) const;
  // nullptr when no vocabulary entry has this id.
  const std::string* id_to_token(int32_t id) const;
  // Largest id in the vocabulary, -1 when empty.
  int32_t max_id() const { return static_cast<int32_t>(id_to_token_.size()) - 1; }
  size_t merge_count() const { return merges_.size(); }

 private:
  struct Merge {
    int32_t rank, new_id;
  };
  static uint64_t key(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }
  std::vector<int32_t> initial_symbols(const std::string& word) const;
  void merge_all(std::vector<int32_t>& ids) const;

  std::unordered_map<std::string, int32_t> vocab_;
  std::vector<std::string> id_to_token_;
  std::vector<bool> has_id_;
  std::unordered_map<uint64_t, Merge> merges_;
  BpeOptions options_;
  std::optional<int32_t> unk_id_;

  // Words repeat a lot in text; caching their ids makes encoding several times faster.
  static constexpr size_t kCacheCapacity = 200000;
  static constexpr size_t kMaxCachedWordBytes = 256;
  mutable std::mutex cache_mutex_;
  mutable std::unordered_map<std::string, std::vector<int32_t>> cache_;
};

}  // namespace loopq::tok
