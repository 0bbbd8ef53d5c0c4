#include "io/tokenizer/pretokenizer.h"

#include <algorithm>

#include "io/tokenizer/byte_level.h"
#include "io/tokenizer/utf8.h"

namespace loopq::tok {

const char* const kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

namespace {

const Regex& gpt2_regex() {
  static const Regex re(kGpt2Pattern);
  return re;
}

// Spans covering s: the given matches plus the gaps between them.
std::vector<Span> cover(std::string_view s, const std::vector<std::pair<size_t, size_t>>& matches,
                        bool invert) {
  std::vector<Span> spans;
  spans.reserve(matches.size() * 2 + 1);
  size_t prev = 0;
  for (auto [b, e] : matches) {
    if (b != prev) spans.push_back({prev, b, invert});
    spans.push_back({b, e, !invert});
    prev = e;
  }
  if (prev != s.size()) spans.push_back({prev, s.size(), invert});
  return spans;
}

std::vector<std::pair<size_t, size_t>> find_literal(std::string_view s, const std::string& lit) {
  std::vector<std::pair<size_t, size_t>> out;
  if (lit.empty()) return out;
  for (size_t p = s.find(lit); p != std::string_view::npos; p = s.find(lit, p + lit.size()))
    out.emplace_back(p, p + lit.size());
  return out;
}

template <typename F>
void for_each_piece(std::vector<std::string>& pieces, F&& split_one) {
  std::vector<std::string> out;
  out.reserve(pieces.size());
  for (const std::string& p : pieces) split_one(p, out);
  pieces.swap(out);
}

}  // namespace

void split_spans(std::string_view s, const std::vector<Span>& spans, SplitBehavior behavior,
                 std::vector<std::string>& out) {
  // Merge spans into [begin, end) ranges first, then emit the non-empty ones.
  std::vector<std::pair<size_t, size_t>> ranges;
  ranges.reserve(spans.size());
  bool prev_match = false;
  switch (behavior) {
    case SplitBehavior::Removed:
      for (const Span& sp : spans)
        if (!sp.is_match) ranges.emplace_back(sp.begin, sp.end);
      break;
    case SplitBehavior::Isolated:
      for (const Span& sp : spans) ranges.emplace_back(sp.begin, sp.end);
      break;
    case SplitBehavior::MergedWithPrevious:
      for (const Span& sp : spans) {
        if (sp.is_match && !prev_match && !ranges.empty())
          ranges.back().second = sp.end;
        else
          ranges.emplace_back(sp.begin, sp.end);
        prev_match = sp.is_match;
      }
      break;
    case SplitBehavior::MergedWithNext:
      // Mirror image of MergedWithPrevious: walk backwards.
      for (size_t k = spans.size(); k-- > 0;) {
        const Span& sp = spans[k];
        if (sp.is_match && !prev_match && !ranges.empty())
          ranges.back().first = sp.begin;
        else
          ranges.emplace_back(sp.begin, sp.end);
        prev_match = sp.is_match;
      }
      std::reverse(ranges.begin(), ranges.end());
      break;
    case SplitBehavior::Contiguous:
      for (size_t k = 0; k < spans.size(); ++k) {
        const Span& sp = spans[k];
        if (k > 0 && sp.is_match == prev_match)
          ranges.back().second = sp.end;
        else
          ranges.emplace_back(sp.begin, sp.end);
        prev_match = sp.is_match;
      }
      break;
  }
  for (auto [b, e] : ranges)
    if (e > b) out.emplace_back(s.substr(b, e - b));
}

void SplitPreTokenizer::pre_tokenize(std::vector<std::string>& pieces) const {
  for_each_piece(pieces, [&](const std::string& p, std::vector<std::string>& out) {
    auto matches = regex_ ? regex_->find_all(p) : find_literal(p, literal_);
    split_spans(p, cover(p, matches, invert_), behavior_, out);
  });
}

void ByteLevelPreTokenizer::pre_tokenize(std::vector<std::string>& pieces) const {
  for_each_piece(pieces, [&](const std::string& p, std::vector<std::string>& out) {
    // HF adds the prefix space to every piece that reaches this step, not just the first.
    std::string text = add_prefix_space_ && (p.empty() || p[0] != ' ') ? " " + p : p;
    size_t first = out.size();
    if (use_regex_)
      split_spans(text, cover(text, gpt2_regex().find_all(text), false), SplitBehavior::Isolated,
                  out);
    else if (!text.empty())
      out.push_back(std::move(text));
    for (size_t k = first; k < out.size(); ++k) out[k] = to_byte_level(out[k]);
  });
}

void DigitsPreTokenizer::pre_tokenize(std::vector<std::string>& pieces) const {
  for_each_piece(pieces, [&](const std::string& p, std::vector<std::string>& out) {
    // Every numeric character is its own match; Contiguous then glues runs of digits.
    std::vector<std::pair<size_t, size_t>> matches;
    for (size_t i = 0; i < p.size();) {
      Utf8Step st = utf8_step(p, i);
      if (is_numeric(st.cp)) matches.emplace_back(i, i + st.len);
      i += st.len;
    }
    split_spans(p, cover(p, matches, false),
                individual_ ? SplitBehavior::Isolated : SplitBehavior::Contiguous, out);
  });
}

void SequencePreTokenizer::pre_tokenize(std::vector<std::string>& pieces) const {
  for (const auto& s : steps_) s->pre_tokenize(pieces);
}

}  // namespace loopq::tok
