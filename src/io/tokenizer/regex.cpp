#include "io/tokenizer/regex.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "io/tokenizer/utf8.h"
#include "util/error.h"

namespace loopq::tok {

namespace {

// Per-thread scratch: compiled code is shareable across threads, match data and JIT stacks are
// not. One ovector pair is enough because only the whole match is used.
struct MatchScratch {
  pcre2_match_data* data = pcre2_match_data_create(1, nullptr);
  pcre2_match_context* context = pcre2_match_context_create(nullptr);
  pcre2_jit_stack* stack = pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, nullptr);
  MatchScratch() { pcre2_jit_stack_assign(context, nullptr, stack); }
  ~MatchScratch() {
    pcre2_jit_stack_free(stack);
    pcre2_match_context_free(context);
    pcre2_match_data_free(data);
  }
};

MatchScratch& scratch() {
  thread_local MatchScratch s;
  return s;
}

std::string pcre2_message(int code) {
  PCRE2_UCHAR buf[256];
  pcre2_get_error_message(code, buf, sizeof(buf));
  return reinterpret_cast<const char*>(buf);
}

}  // namespace

std::string translate_pattern(const std::string& p) {
  std::string out;
  out.reserve(p.size() + 32);
  for (size_t i = 0; i < p.size(); ++i) {
    if (p[i] == '\\' && i + 1 < p.size()) {
      char n = p[i + 1];
      if (n == 's')
        out += "\\p{White_Space}";
      else if (n == 'S')
        out += "\\P{White_Space}";
      else
        (out += '\\') += n;  // copies escaped characters (including "\\") verbatim
      ++i;
    } else {
      out += p[i];
    }
  }
  return out;
}

Regex::Regex(const std::string& pattern) : pattern_(pattern) {
  std::string translated = translate_pattern(pattern);
  int err = 0;
  PCRE2_SIZE err_off = 0;
  pcre2_code* code =
      pcre2_compile(reinterpret_cast<PCRE2_SPTR>(translated.data()), translated.size(),
                    PCRE2_UTF | PCRE2_UCP, &err, &err_off, nullptr);
  if (!code)
    throw Error("invalid regex '" + pattern + "': " + pcre2_message(err) + " at offset " +
                std::to_string(err_off));
  pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);  // falls back to the interpreter on failure
  code_ = code;
}

Regex::~Regex() { pcre2_code_free(static_cast<pcre2_code*>(code_)); }

std::vector<std::pair<size_t, size_t>> Regex::find_all(std::string_view s) const {
  std::vector<std::pair<size_t, size_t>> out;
  auto* code = static_cast<pcre2_code*>(code_);
  MatchScratch& m = scratch();
  auto subject = reinterpret_cast<PCRE2_SPTR>(s.data());
  size_t start = 0;
  uint32_t opts = 0;
  while (start <= s.size()) {
    int rc =
        pcre2_match(code, subject, s.size(), start, opts | PCRE2_NO_UTF_CHECK, m.data, m.context);
    if (rc == PCRE2_ERROR_NOMATCH) {
      if (opts == 0 || start >= s.size()) break;
      // No non-empty match at an empty match's position: step over one character.
      start += utf8_step(s, start).len;
      opts = 0;
      continue;
    }
    if (rc < 0) throw Error("regex '" + pattern_ + "' failed: " + pcre2_message(rc));
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(m.data);
    out.emplace_back(ov[0], ov[1]);
    // After an empty match, first look for a non-empty one at the same place (as pcre2demo).
    opts = ov[0] == ov[1] ? (PCRE2_NOTEMPTY_ATSTART | PCRE2_ANCHORED) : 0;
    start = ov[1];
  }
  return out;
}

}  // namespace loopq::tok
