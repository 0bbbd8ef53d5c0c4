#include "io/tokenizer/bpe_trainer.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <nlohmann/json.hpp>
#include <queue>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "io/tokenizer/byte_level.h"
#include "io/tokenizer/pretokenizer.h"
#include "io/tokenizer/regex.h"
#include "io/tokenizer/utf8.h"
#include "util/error.h"

namespace loopq::tok {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

const Regex& gpt2_regex() {
  static const Regex re(kGpt2Pattern);
  return re;
}

// ---------------------------------------------------------------------------------------------
// Pre-token counting

// Cuts `text` into the stretches between special-token occurrences (leftmost match first, the
// longest special token on ties, like the added-token matcher).
std::vector<std::string_view> split_on_specials(std::string_view text,
                                                const std::vector<std::string>& specials) {
  std::vector<std::string_view> out;
  std::vector<size_t> next(specials.size());
  for (size_t k = 0; k < specials.size(); ++k)
    next[k] = specials[k].empty() ? std::string_view::npos : text.find(specials[k]);
  size_t pos = 0;
  while (true) {
    size_t best = std::string_view::npos, best_len = 0;
    for (size_t k = 0; k < specials.size(); ++k) {
      if (next[k] != std::string_view::npos && next[k] < pos) next[k] = text.find(specials[k], pos);
      if (next[k] == std::string_view::npos) continue;
      if (next[k] < best || (next[k] == best && specials[k].size() > best_len))
        best = next[k], best_len = specials[k].size();
    }
    if (best == std::string_view::npos) break;
    if (best > pos) out.push_back(text.substr(pos, best - pos));
    pos = best + best_len;
  }
  if (pos < text.size()) out.push_back(text.substr(pos));
  return out;
}

bool ascii_graphic(char c) { return c >= 0x21 && c <= 0x7E; }

// Cuts one special-free segment into chunks of about `target` bytes. A cut goes right after a
// "\n" that sits between two printable ASCII characters: the GPT-2 regex split never crosses
// such a point and its lookahead (\s+(?!\S)) sees the same thing at the end of a chunk as in
// the whole text, so the pieces are exactly those of the uncut segment.
void chunk_segment(std::string_view seg, size_t target, std::vector<std::string_view>& out) {
  size_t begin = 0;
  while (seg.size() - begin > target) {
    size_t cut = std::string_view::npos;
    for (size_t p = begin + target; p < seg.size(); ++p) {
      if (seg[p - 1] == '\n' && p >= 2 && ascii_graphic(seg[p - 2]) && ascii_graphic(seg[p])) {
        cut = p;
        break;
      }
      if (p - begin > 8 * target) break;  // no safe point nearby: keep the rest whole
    }
    if (cut == std::string_view::npos) break;
    out.push_back(seg.substr(begin, cut - begin));
    begin = cut;
  }
  if (begin < seg.size()) out.push_back(seg.substr(begin));
}

using RawCounts = std::unordered_map<std::string_view, uint64_t>;

void count_chunk(std::string_view chunk, RawCounts& counts) {
  size_t prev = 0;
  auto add = [&](size_t b, size_t e) {
    if (e > b) ++counts[chunk.substr(b, e - b)];
  };
  // Gaps between matches are pieces too (ByteLevel uses Isolated); the pattern covers every
  // character, so in practice there are none.
  for (auto [b, e] : gpt2_regex().find_all(chunk)) {
    add(prev, b);
    add(b, e);
    prev = e;
  }
  add(prev, chunk.size());
}

// ---------------------------------------------------------------------------------------------
// Merge training

uint64_t pair_key(int32_t a, int32_t b) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
}
int32_t key_left(uint64_t k) { return static_cast<int32_t>(k >> 32); }
int32_t key_right(uint64_t k) { return static_cast<int32_t>(k & 0xffffffffu); }

struct Word {
  std::vector<int32_t> sym;
  uint64_t count;
};

void validate_options(const BpeTrainerOptions& o) {
  std::unordered_set<std::string> seen;
  for (const std::string& s : o.special_tokens) {
    if (s.empty()) throw Error("BPE training: empty special token");
    if (!is_valid_utf8(s)) throw Error("BPE training: special token is not valid UTF-8");
    if (!seen.insert(s).second) throw Error("BPE training: duplicate special token '" + s + "'");
  }
  const size_t min_vocab = o.special_tokens.size() + 256;
  if (o.vocab_size < min_vocab)
    throw Error("vocab size " + std::to_string(o.vocab_size) + " is too small: it must be at least " +
                std::to_string(min_vocab) + " (" + std::to_string(o.special_tokens.size()) +
                " special tokens + 256 byte symbols)");
  if (o.vocab_size > (1u << 24))
    throw Error("vocab size " + std::to_string(o.vocab_size) + " is too large (max 16777216)");
}

std::string quote(const std::string& s) { return nlohmann::json(s).dump(); }

}  // namespace

std::vector<std::string> default_special_tokens() {
  return {"<|endoftext|>", "<|im_start|>", "<|im_end|>"};
}

std::vector<WordCount> count_pretokens(std::string_view raw,
                                       const std::vector<std::string>& special_tokens,
                                       int threads) {
  const std::string text = is_valid_utf8(raw) ? std::string(raw) : sanitize_utf8(raw);
  std::vector<std::string_view> chunks;
  constexpr size_t kChunk = 1 << 20;
  for (std::string_view seg : split_on_specials(text, special_tokens))
    chunk_segment(seg, kChunk, chunks);

  size_t n_threads = threads > 0 ? size_t(threads) : std::max(1u, std::thread::hardware_concurrency());
  n_threads = std::max<size_t>(1, std::min(n_threads, chunks.size()));
  std::vector<RawCounts> local(n_threads);
  std::atomic<size_t> next_chunk{0};
  std::vector<std::exception_ptr> errors(n_threads);
  auto worker = [&](size_t t) {
    try {
      for (size_t c; (c = next_chunk.fetch_add(1)) < chunks.size();) count_chunk(chunks[c], local[t]);
    } catch (...) {
      errors[t] = std::current_exception();
    }
  };
  if (n_threads == 1) {
    worker(0);
  } else {
    std::vector<std::thread> pool;
    for (size_t t = 0; t < n_threads; ++t) pool.emplace_back(worker, t);
    for (auto& th : pool) th.join();
  }
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);

  // Sums are order independent; the output is sorted, so neither the thread count nor the
  // hash-map order shows.
  RawCounts& total = local[0];
  for (size_t t = 1; t < n_threads; ++t)
    for (const auto& [w, c] : local[t]) total[w] += c;
  std::vector<WordCount> words;
  words.reserve(total.size());
  for (const auto& [w, c] : total) words.push_back({to_byte_level(w), c});
  std::sort(words.begin(), words.end(),
            [](const WordCount& a, const WordCount& b) { return a.word < b.word; });
  return words;
}

BpeTrainResult train_bpe_from_counts(const std::vector<WordCount>& input,
                                     const BpeTrainerOptions& opt) {
  validate_options(opt);
  const auto t0 = Clock::now();
  BpeTrainResult r;
  r.num_special = opt.special_tokens.size();

  // Initial vocab: special tokens, then the byte symbols.
  std::unordered_map<std::string, int32_t> token_id;
  auto add_token = [&](const std::string& s) {
    int32_t id = static_cast<int32_t>(r.vocab.size());
    r.vocab.push_back(s);
    token_id.emplace(s, id);
    return id;
  };
  for (const std::string& s : opt.special_tokens) add_token(s);
  std::array<int32_t, 324> byte_symbol;  // code point of a byte-level char -> id
  byte_symbol.fill(-1);
  for (int b = 0; b < 256; ++b) {
    const std::string& ch = byte_level_char(static_cast<unsigned char>(b));
    if (token_id.count(ch))
      throw Error("BPE training: special token '" + ch + "' collides with a byte symbol");
    byte_symbol[utf8_step(ch, 0).cp] = add_token(ch);
  }

  // Words as symbol ids.
  std::vector<Word> words;
  words.reserve(input.size());
  for (const WordCount& wc : input) {
    Word w{{}, wc.count};
    w.sym.reserve(wc.word.size());
    for (size_t i = 0; i < wc.word.size();) {
      Utf8Step st = utf8_step(wc.word, i);
      int32_t id = st.valid && st.cp < byte_symbol.size() ? byte_symbol[st.cp] : -1;
      if (id < 0) throw Error("BPE training: word '" + wc.word + "' is not in byte-level form");
      w.sym.push_back(id);
      i += st.len;
    }
    r.total_words += wc.count;
    words.push_back(std::move(w));
  }
  r.unique_words = words.size();

  // Pair statistics.
  const uint64_t min_freq = std::max<uint64_t>(1, opt.min_frequency);
  std::unordered_map<uint64_t, uint64_t> pair_count;
  std::unordered_map<uint64_t, std::vector<int32_t>> where;  // may hold stale/duplicate entries
  for (size_t w = 0; w < words.size(); ++w) {
    const Word& word = words[w];
    if (word.count == 0) continue;
    for (size_t i = 0; i + 1 < word.sym.size(); ++i) {
      uint64_t k = pair_key(word.sym[i], word.sym[i + 1]);
      pair_count[k] += word.count;
      auto& v = where[k];
      if (v.empty() || v.back() != static_cast<int32_t>(w)) v.push_back(static_cast<int32_t>(w));
    }
  }

  // Max-heap on (count, then the smallest (left, right) token strings). Entries are lazily
  // invalidated: a pair's count only decreases after the step that created it, so an entry
  // whose stored count differs from the current one is refreshed and pushed back.
  struct Entry {
    uint64_t count;
    uint64_t pair;
  };
  const std::vector<std::string>& vocab = r.vocab;
  auto lower_priority = [&vocab](const Entry& x, const Entry& y) {
    if (x.count != y.count) return x.count < y.count;
    const std::string &xl = vocab[key_left(x.pair)], &yl = vocab[key_left(y.pair)];
    if (xl != yl) return xl > yl;
    return vocab[key_right(x.pair)] > vocab[key_right(y.pair)];
  };
  std::priority_queue<Entry, std::vector<Entry>, decltype(lower_priority)> heap(lower_priority);
  {
    std::vector<uint64_t> keys;
    keys.reserve(pair_count.size());
    for (const auto& [k, c] : pair_count)
      if (c >= min_freq) keys.push_back(k);
    std::sort(keys.begin(), keys.end());
    for (uint64_t k : keys) heap.push({pair_count[k], k});
  }

  std::vector<std::pair<uint64_t, int64_t>> deltas;
  std::vector<uint64_t> increased;
  std::vector<int32_t> merged;
  while (r.vocab.size() < opt.vocab_size && !heap.empty()) {
    Entry top = heap.top();
    heap.pop();
    auto pc = pair_count.find(top.pair);
    uint64_t current = pc == pair_count.end() ? 0 : pc->second;
    if (current != top.count) {
      if (current >= min_freq) heap.push({current, top.pair});
      continue;
    }
    if (current < min_freq) break;  // the best remaining pair is too rare
    const int32_t a = key_left(top.pair), b = key_right(top.pair);
    std::string joined = r.vocab[a] + r.vocab[b];
    if (token_id.count(joined)) continue;  // already a token: never merged (see header)
    const int32_t new_id = add_token(joined);
    r.merges.emplace_back(r.vocab[a], r.vocab[b]);

    std::vector<int32_t> affected = std::move(where[top.pair]);
    where.erase(top.pair);
    std::sort(affected.begin(), affected.end());
    affected.erase(std::unique(affected.begin(), affected.end()), affected.end());
    increased.clear();
    for (int32_t w : affected) {
      Word& word = words[w];
      std::vector<int32_t>& s = word.sym;
      bool found = false;
      for (size_t i = 0; i + 1 < s.size() && !found; ++i) found = s[i] == a && s[i + 1] == b;
      if (!found) continue;  // stale index entry
      const int64_t c = static_cast<int64_t>(word.count);
      deltas.clear();
      for (size_t i = 0; i + 1 < s.size(); ++i) deltas.emplace_back(pair_key(s[i], s[i + 1]), -c);
      merged.clear();
      for (size_t i = 0; i < s.size();) {
        if (i + 1 < s.size() && s[i] == a && s[i + 1] == b) {
          merged.push_back(new_id);
          i += 2;
        } else {
          merged.push_back(s[i++]);
        }
      }
      s.assign(merged.begin(), merged.end());
      for (size_t i = 0; i + 1 < s.size(); ++i) deltas.emplace_back(pair_key(s[i], s[i + 1]), c);
      std::sort(deltas.begin(), deltas.end());
      for (size_t i = 0; i < deltas.size();) {
        const uint64_t k = deltas[i].first;
        int64_t d = 0;
        for (; i < deltas.size() && deltas[i].first == k; ++i) d += deltas[i].second;
        if (d > 0) {
          pair_count[k] += static_cast<uint64_t>(d);
          auto& v = where[k];
          if (v.empty() || v.back() != w) v.push_back(w);
          increased.push_back(k);
        } else if (d < 0) {
          auto it = pair_count.find(k);
          it->second -= static_cast<uint64_t>(-d);
          if (it->second == 0) {
            pair_count.erase(it);
            if (k != top.pair) where.erase(k);
          }
        }
      }
    }
    std::sort(increased.begin(), increased.end());
    increased.erase(std::unique(increased.begin(), increased.end()), increased.end());
    for (uint64_t k : increased) {
      uint64_t c = pair_count[k];
      if (c >= min_freq) heap.push({c, k});
    }
  }
  r.merge_seconds = seconds_since(t0);

  if (opt.keep_segmentation) {
    r.words = input;
    r.segmentation.reserve(words.size());
    for (Word& w : words) r.segmentation.push_back(std::move(w.sym));
  }
  return r;
}

BpeTrainResult train_bpe(std::string_view text, const BpeTrainerOptions& options) {
  validate_options(options);
  const auto t0 = Clock::now();
  std::vector<WordCount> words = count_pretokens(text, options.special_tokens, options.threads);
  const double count_seconds = seconds_since(t0);
  BpeTrainResult r = train_bpe_from_counts(words, options);
  r.count_seconds = count_seconds;
  r.input_bytes = text.size();
  return r;
}

std::string bpe_tokenizer_json(const BpeTrainResult& r) {
  std::string out;
  out.reserve(64 * r.vocab.size() + 4096);
  out +=
      "{\n"
      "  \"version\": \"1.0\",\n"
      "  \"truncation\": null,\n"
      "  \"padding\": null,\n"
      "  \"added_tokens\": [";
  for (size_t i = 0; i < r.num_special; ++i) {
    out += i ? ",\n" : "\n";
    out += "    {\n      \"id\": " + std::to_string(i) + ",\n      \"content\": " +
           quote(r.vocab[i]) +
           ",\n"
           "      \"single_word\": false,\n"
           "      \"lstrip\": false,\n"
           "      \"rstrip\": false,\n"
           "      \"normalized\": false,\n"
           "      \"special\": true\n"
           "    }";
  }
  out += r.num_special ? "\n  ],\n" : "],\n";
  out +=
      "  \"normalizer\": null,\n"
      "  \"pre_tokenizer\": {\n"
      "    \"type\": \"ByteLevel\",\n"
      "    \"add_prefix_space\": false,\n"
      "    \"trim_offsets\": true,\n"
      "    \"use_regex\": true\n"
      "  },\n"
      "  \"post_processor\": {\n"
      "    \"type\": \"ByteLevel\",\n"
      "    \"add_prefix_space\": true,\n"
      "    \"trim_offsets\": false,\n"
      "    \"use_regex\": true\n"
      "  },\n"
      "  \"decoder\": {\n"
      "    \"type\": \"ByteLevel\",\n"
      "    \"add_prefix_space\": true,\n"
      "    \"trim_offsets\": true,\n"
      "    \"use_regex\": true\n"
      "  },\n"
      "  \"model\": {\n"
      "    \"type\": \"BPE\",\n"
      "    \"dropout\": null,\n"
      "    \"unk_token\": null,\n"
      "    \"continuing_subword_prefix\": null,\n"
      "    \"end_of_word_suffix\": null,\n"
      "    \"fuse_unk\": false,\n"
      "    \"byte_fallback\": false,\n"
      "    \"ignore_merges\": false,\n"
      "    \"vocab\": {";
  for (size_t i = 0; i < r.vocab.size(); ++i) {
    out += i ? ",\n      " : "\n      ";
    out += quote(r.vocab[i]) + ": " + std::to_string(i);
  }
  out += r.vocab.empty() ? "},\n" : "\n    },\n";
  out += "    \"merges\": [";
  for (size_t i = 0; i < r.merges.size(); ++i) {
    out += i ? ",\n      [" : "\n      [";
    out += quote(r.merges[i].first) + ", " + quote(r.merges[i].second) + "]";
  }
  out += r.merges.empty() ? "]\n" : "\n    ]\n";
  out += "  }\n}\n";
  return out;
}

std::string bpe_tokenizer_config_json(const BpeTrainResult& r, size_t model_max_length) {
  nlohmann::ordered_json cfg;
  cfg["add_prefix_space"] = false;
  nlohmann::ordered_json decoder = nlohmann::ordered_json::object();
  nlohmann::ordered_json additional = nlohmann::ordered_json::array();
  for (size_t i = 0; i < r.num_special; ++i) {
    nlohmann::ordered_json t;
    t["content"] = r.vocab[i];
    t["lstrip"] = false;
    t["normalized"] = false;
    t["rstrip"] = false;
    t["single_word"] = false;
    t["special"] = true;
    decoder[std::to_string(i)] = t;
    if (i > 0) additional.push_back(r.vocab[i]);
  }
  cfg["added_tokens_decoder"] = decoder;
  cfg["additional_special_tokens"] = additional;
  const nlohmann::ordered_json first =
      r.num_special ? nlohmann::ordered_json(r.vocab[0]) : nlohmann::ordered_json(nullptr);
  cfg["bos_token"] = first;
  cfg["clean_up_tokenization_spaces"] = false;
  cfg["eos_token"] = first;
  cfg["model_max_length"] = model_max_length;
  cfg["pad_token"] = first;
  cfg["tokenizer_class"] = "PreTrainedTokenizerFast";
  cfg["unk_token"] = first;
  return cfg.dump(2) + "\n";
}

}  // namespace loopq::tok
