#include "io/tokenizer/tokenizer.h"

#include "io/tokenizer/tokenizer_parts.h"
#include "io/tokenizer/utf8.h"
#include "util/error.h"

namespace loopq::tok {

Tokenizer::Tokenizer(TokenizerParts parts)
    : parts_(std::make_unique<TokenizerParts>(std::move(parts))) {
  if (!parts_->model) throw Error("tokenizer has no model");
  int64_t max_id = parts_->model->max_id();

  // Tokens marked normalized are looked for in normalized text, so normalize them too.
  std::vector<AddedToken> raw, normalized;
  std::vector<std::string> raw_pat, norm_pat;
  for (size_t i = 0; i < parts_->added_tokens.size(); ++i) {
    const AddedToken& t = parts_->added_tokens[i];
    added_by_id_[t.id] = i;
    added_by_content_[t.content] = t.id;
    max_id = std::max<int64_t>(max_id, t.id);
    if (t.normalized && parts_->normalizer) {
      normalized.push_back(t);
      norm_pat.push_back(parts_->normalizer->normalize(t.content));
    } else if (t.normalized) {
      normalized.push_back(t);
      norm_pat.push_back(t.content);
    } else {
      raw.push_back(t);
      raw_pat.push_back(t.content);
    }
  }
  raw_matcher_ = std::make_unique<AddedTokenMatcher>(raw, raw_pat);
  normalized_matcher_ = std::make_unique<AddedTokenMatcher>(normalized, norm_pat);
  vocab_size_ = static_cast<size_t>(max_id + 1);
}

Tokenizer::~Tokenizer() = default;

void Tokenizer::encode_text(const std::string& text, std::vector<int32_t>& out) const {
  std::string norm = parts_->normalizer ? parts_->normalizer->normalize(text) : text;
  std::vector<Segment> segs;
  normalized_matcher_->split(norm, segs);
  std::vector<std::string> pieces;
  for (const Segment& s : segs) {
    if (s.id >= 0) {
      out.push_back(s.id);
      continue;
    }
    pieces.clear();
    pieces.emplace_back(norm, s.begin, s.end - s.begin);
    if (parts_->pre_tokenizer) parts_->pre_tokenizer->pre_tokenize(pieces);
    for (const std::string& p : pieces) parts_->model->tokenize(p, out);
  }
}

std::vector<int32_t> Tokenizer::encode(const std::string& input) const {
  // Invalid UTF-8 is replaced (U+FFFD per maximal invalid subpart) so the regex engine and
  // normalizer only ever see valid text; the result is deterministic for any byte string.
  const std::string text = sanitize_utf8(input);
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 1);
  std::vector<Segment> segs;
  raw_matcher_->split(text, segs);
  for (const Segment& s : segs) {
    if (s.id >= 0)
      ids.push_back(s.id);
    else
      encode_text(text.substr(s.begin, s.end - s.begin), ids);
  }
  return ids;
}

std::string Tokenizer::token_bytes(int32_t id, bool skip_special_tokens, bool first) const {
  std::string out;
  auto added = added_by_id_.find(id);
  if (added != added_by_id_.end()) {
    const AddedToken& t = parts_->added_tokens[added->second];
    if (skip_special_tokens && t.special) return out;
    // Added tokens are plain text, not byte-level strings: emit their content verbatim.
    if (parts_->decoder == DecoderKind::Join && !first) out += ' ';
    out += t.content;
    return out;
  }
  const std::string* tok = parts_->model->id_to_token(id);
  if (!tok)
    throw Error("cannot decode token id " + std::to_string(id) + ": not in the vocabulary (size " +
                std::to_string(vocab_size_) + ")");
  decode_token(parts_->decoder, *tok, first, out);
  return out;
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids, bool skip_special_tokens) const {
  std::string bytes;
  bool first = true;
  for (int32_t id : ids) {
    if (skip_special_tokens && is_special(id)) continue;
    bytes += token_bytes(id, skip_special_tokens, first);
    first = false;
  }
  return sanitize_utf8(bytes);
}

size_t Tokenizer::vocab_size() const { return vocab_size_; }

std::optional<int32_t> Tokenizer::token_to_id(const std::string& token) const {
  auto it = added_by_content_.find(token);
  if (it != added_by_content_.end()) return it->second;
  return parts_->model->token_to_id(token);
}

std::string Tokenizer::id_to_token(int32_t id) const {
  auto added = added_by_id_.find(id);
  if (added != added_by_id_.end()) return parts_->added_tokens[added->second].content;
  const std::string* tok = parts_->model->id_to_token(id);
  if (!tok)
    throw Error("token id " + std::to_string(id) + " is out of range (vocab size " +
                std::to_string(vocab_size_) + ")");
  return *tok;
}

bool Tokenizer::is_special(int32_t id) const {
  auto added = added_by_id_.find(id);
  return added != added_by_id_.end() && parts_->added_tokens[added->second].special;
}

StreamDecoder::StreamDecoder(const Tokenizer& tokenizer, bool skip_special_tokens)
    : tok_(tokenizer), skip_special_(skip_special_tokens) {}

std::string StreamDecoder::push(int32_t id) {
  if (skip_special_ && tok_.is_special(id)) return {};
  pending_ += tok_.token_bytes(id, skip_special_, first_);
  first_ = false;
  // Emit everything up to a trailing sequence that may still be completed by the next token.
  std::string out;
  size_t i = 0;
  while (i < pending_.size()) {
    Utf8Step st = utf8_step(pending_, i);
    if (st.truncated) break;
    if (st.valid)
      out.append(pending_, i, st.len);
    else
      append_utf8(out, 0xFFFD);
    i += st.len;
  }
  pending_.erase(0, i);
  return out;
}

std::string StreamDecoder::flush() {
  std::string out = sanitize_utf8(pending_);
  pending_.clear();
  return out;
}

}  // namespace loopq::tok
