#include "io/tokenizer/bpe_model.h"

#include <cstdio>
#include <queue>

#include "io/tokenizer/utf8.h"
#include "util/error.h"

namespace loopq::tok {

namespace {
constexpr int32_t kMaxVocabId = (1 << 24) - 1;  // guards the dense id -> token table
constexpr size_t kMaxMerges = size_t(1) << 24;
// The id -> token table is dense, so ids may not be much sparser than the vocabulary: a 1 KB
// file with one token at id 16M would otherwise cost 500 MB of empty strings.
size_t max_dense_ids(size_t vocab_entries) { return 4 * vocab_entries + 65536; }
}

BpeModel::BpeModel(std::unordered_map<std::string, int32_t> vocab, const MergeList& merges,
                   BpeOptions options, const std::string& where)
    : vocab_(std::move(vocab)), options_(std::move(options)) {
  int32_t max_id = -1;
  for (const auto& [tok, id] : vocab_) {
    if (id < 0 || id > kMaxVocabId)
      throw Error(where + ": vocab id " + std::to_string(id) + " of token '" + tok +
                  "' is out of range [0, " + std::to_string(kMaxVocabId) + "]");
    max_id = std::max(max_id, id);
  }
  if (static_cast<size_t>(max_id + 1) > max_dense_ids(vocab_.size()))
    throw Error(where + ": vocab ids are too sparse: max id " + std::to_string(max_id) + " for " +
                std::to_string(vocab_.size()) + " tokens");
  if (merges.size() > kMaxMerges)
    throw Error(where + ": " + std::to_string(merges.size()) + " merges, over the limit of " +
                std::to_string(kMaxMerges));
  id_to_token_.resize(static_cast<size_t>(max_id + 1));
  has_id_.assign(static_cast<size_t>(max_id + 1), false);
  for (const auto& [tok, id] : vocab_) {
    // Several tokens may share an id; keep the smallest string so the choice is deterministic.
    if (!has_id_[id] || tok < id_to_token_[id]) id_to_token_[id] = tok;
    has_id_[id] = true;
  }

  merges_.reserve(merges.size());
  const std::string& prefix = options_.continuing_subword_prefix;
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    // Not a structured binding: C++17 lambdas cannot capture those (clang rejects it).
    const std::string& a = merges[rank].first;
    const std::string& b = merges[rank].second;
    auto find = [&](const std::string& t) {
      auto it = vocab_.find(t);
      if (it == vocab_.end())
        throw Error(where + ": merge " + std::to_string(rank + 1) + " ('" + a + "' '" + b +
                    "') refers to token '" + t + "' which is not in the vocab");
      return it->second;
    };
    int32_t ida = find(a), idb = find(b);
    // With a continuing-subword prefix, "a" + "##b" merges into "ab".
    bool strip = !prefix.empty() && b.compare(0, prefix.size(), prefix) == 0;
    int32_t idm = find(a + (strip ? b.substr(prefix.size()) : b));
    // A repeated pair keeps its last rank, as HF's hash map build does.
    merges_[key(ida, idb)] = Merge{static_cast<int32_t>(rank), idm};
  }

  if (options_.unk_token) {
    // Checked here rather than on the first unknown character, so that encode() of a loaded
    // tokenizer never fails (HF errors only when the unk token is needed).
    auto it = vocab_.find(*options_.unk_token);
    if (it == vocab_.end())
      throw Error(where + ": BPE unk_token '" + *options_.unk_token + "' is not in the vocab");
    unk_id_ = it->second;
  }
}

std::optional<int32_t> BpeModel::token_to_id(const std::string& token) const {
  auto it = vocab_.find(token);
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

const std::string* BpeModel::id_to_token(int32_t id) const {
  if (id < 0 || static_cast<size_t>(id) >= id_to_token_.size() || !has_id_[id]) return nullptr;
  return &id_to_token_[id];
}

std::vector<int32_t> BpeModel::initial_symbols(const std::string& word) const {
  std::vector<int32_t> ids;
  ids.reserve(word.size());
  // Pending unknown symbol; fuse_unk lets consecutive unknowns share one.
  bool pending_unk = false;
  auto flush_unk = [&] {
    if (pending_unk) ids.push_back(*unk_id_);
    pending_unk = false;
  };
  std::string sym;
  for (size_t i = 0; i < word.size();) {
    size_t len = utf8_step(word, i).len;
    bool last = i + len >= word.size();
    sym.clear();
    if (i > 0) sym += options_.continuing_subword_prefix;
    sym.append(word, i, len);
    if (last) sym += options_.end_of_word_suffix;
    i += len;

    auto it = vocab_.find(sym);
    if (it != vocab_.end()) {
      flush_unk();
      ids.push_back(it->second);
      continue;
    }
    if (options_.byte_fallback) {
      std::vector<int32_t> bytes;
      for (unsigned char c : sym) {
        char name[8];
        std::snprintf(name, sizeof(name), "<0x%02X>", c);
        auto bt = vocab_.find(name);
        if (bt == vocab_.end()) break;
        bytes.push_back(bt->second);
      }
      if (bytes.size() == sym.size()) {
        flush_unk();
        ids.insert(ids.end(), bytes.begin(), bytes.end());
        continue;
      }
    }
    if (options_.unk_token) {
      if (!unk_id_) throw Error("BPE unk_token '" + *options_.unk_token + "' is not in the vocab");
      if (!options_.fuse_unk) flush_unk();
      pending_unk = true;
    }
    // Without unk_token, HF silently drops symbols that are not in the vocab.
  }
  flush_unk();
  return ids;
}

void BpeModel::merge_all(std::vector<int32_t>& ids) const {
  if (ids.size() < 2) return;
  const int32_t n = static_cast<int32_t>(ids.size());
  // Doubly linked list over the symbols; merged-away symbols are marked dead.
  std::vector<int32_t> prev(n), next(n);
  std::vector<char> alive(n, 1);
  for (int32_t i = 0; i < n; ++i) prev[i] = i - 1, next[i] = i + 1 < n ? i + 1 : -1;

  struct Cand {
    int32_t rank, pos, new_id;
    bool operator<(const Cand& o) const {  // priority_queue pops the largest: invert
      return rank != o.rank ? rank > o.rank : pos > o.pos;
    }
  };
  std::priority_queue<Cand> queue;
  auto push = [&](int32_t pos) {
    int32_t nx = next[pos];
    if (nx < 0) return;
    auto it = merges_.find(key(ids[pos], ids[nx]));
    if (it != merges_.end()) queue.push({it->second.rank, pos, it->second.new_id});
  };
  for (int32_t i = 0; i + 1 < n; ++i) push(i);

  while (!queue.empty()) {
    Cand c = queue.top();
    queue.pop();
    int32_t nx = next[c.pos];
    if (!alive[c.pos] || nx < 0) continue;
    // Stale entry: one side changed since it was queued.
    auto it = merges_.find(key(ids[c.pos], ids[nx]));
    if (it == merges_.end() || it->second.new_id != c.new_id) continue;
    ids[c.pos] = c.new_id;
    alive[nx] = 0;
    next[c.pos] = next[nx];
    if (next[nx] >= 0) prev[next[nx]] = c.pos;
    if (prev[c.pos] >= 0) push(prev[c.pos]);
    push(c.pos);
  }
  size_t w = 0;
  for (int32_t i = 0; i < n; ++i)
    if (alive[i]) ids[w++] = ids[i];
  ids.resize(w);
}

void BpeModel::tokenize(const std::string& piece, std::vector<int32_t>& out) const {
  if (piece.empty()) return;
  if (options_.ignore_merges) {
    auto it = vocab_.find(piece);
    if (it != vocab_.end()) {
      out.push_back(it->second);
      return;
    }
  }
  const bool cacheable = piece.size() <= kMaxCachedWordBytes;
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cache_mutex_);
    auto it = cache_.find(piece);
    if (it != cache_.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  std::vector<int32_t> ids = initial_symbols(piece);
  merge_all(ids);
  out.insert(out.end(), ids.begin(), ids.end());
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cache_mutex_);
    if (cache_.size() < kCacheCapacity) cache_.emplace(piece, std::move(ids));
  }
}

}  // namespace loopq::tok
