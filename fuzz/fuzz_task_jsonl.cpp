// Zero-shot task JSONL reader: every document it returns satisfies the invariants the scorer
// relies on (non-empty requests and continuations, gold in range), or it throws loopq::Error.
#include <string>

#include "eval/task_data.h"
#include "util/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  // The first byte picks a --limit, so the partial-read path is fuzzed too.
  const int64_t limit = size > 0 ? data[0] % 4 : 0;
  try {
    const auto docs = loopq::eval::parse_task_jsonl(text, "fuzz/task.jsonl", limit);
    if (docs.empty() || (limit > 0 && static_cast<int64_t>(docs.size()) > limit)) __builtin_trap();
    for (const auto& d : docs) {
      if (d.requests.empty() || d.gold < 0 || d.gold >= static_cast<int64_t>(d.requests.size()))
        __builtin_trap();
      for (const auto& r : d.requests)
        if (r.continuation.empty()) __builtin_trap();
    }
  } catch (const loopq::Error&) {
  }
  return 0;
}
