#pragma once
// lm-evaluation-harness request tokenization (HFLM._encode_pair). Torch-free.
//
//   1. Trailing spaces of the context move to the front of the continuation
//      ("Answer: " + "B" -> "Answer:" + " B").
//   2. ctx = enc(context); whole = enc(context + continuation); continuation ids = whole[len(ctx):].
//      The model input is ctx + continuation ids (not `whole`), so requests that share a context
//      share exactly the same prefix tokens.
//   3. An empty context becomes a single "prefix" token (the tokenizer's <|endoftext|>) and the
//      continuation is encoded on its own.
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace loopq::eval {

using EncodeFn = std::function<std::vector<int32_t>(const std::string&)>;

struct TokenizedRequest {
  std::vector<int64_t> context;       // never empty
  std::vector<int64_t> continuation;  // never empty
};

// Throws loopq::Error when the continuation encodes to no tokens, or when the context is empty
// and there is no `empty_context_token`.
TokenizedRequest encode_request(const std::string& context, const std::string& continuation,
                                const EncodeFn& encode, std::optional<int64_t> empty_context_token);

}  // namespace loopq::eval
