#include "eval/request_encoding.h"

#include "util/error.h"

namespace loopq::eval {

TokenizedRequest encode_request(const std::string& context_in, const std::string& continuation_in,
                                const EncodeFn& encode, std::optional<int64_t> empty_context_token) {
  TokenizedRequest r;
  if (context_in.empty()) {
    if (!empty_context_token)
      throw Error("empty context and the tokenizer has no <|endoftext|> token to stand for it");
    r.context = {*empty_context_token};
    for (int32_t v : encode(continuation_in)) r.continuation.push_back(v);
  } else {
    std::string context = context_in, continuation = continuation_in;
    // Python's rstrip() strips all whitespace, but lm-eval counts with len(context.rstrip()) and
    // moves that many characters; we follow it for ASCII whitespace.
    size_t keep = context.find_last_not_of(" \t\n\r\f\v");
    size_t n_spaces = keep == std::string::npos ? context.size() : context.size() - keep - 1;
    if (n_spaces > 0) {
      continuation = context.substr(context.size() - n_spaces) + continuation;
      context.resize(context.size() - n_spaces);
    }
    std::vector<int32_t> whole = encode(context + continuation);
    std::vector<int32_t> ctx = context.empty() ? std::vector<int32_t>{} : encode(context);
    for (int32_t v : ctx) r.context.push_back(v);
    for (size_t i = ctx.size(); i < whole.size(); ++i) r.continuation.push_back(whole[i]);
    if (r.context.empty()) {
      // An all-whitespace context: it moved entirely into the continuation.
      if (!empty_context_token)
        throw Error("context is only whitespace and the tokenizer has no <|endoftext|> token");
      r.context = {*empty_context_token};
    }
  }
  if (r.continuation.empty()) throw Error("continuation encodes to no tokens");
  return r;
}

}  // namespace loopq::eval
