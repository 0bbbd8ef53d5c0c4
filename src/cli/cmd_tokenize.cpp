// loopq tokenize: text -> ids (one JSON array) or, with --decode, ids -> text.
#include <cstdint>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli/args.h"
#include "cli/commands.h"
#include "io/tokenizer/json_fields.h"
#include "io/tokenizer/tokenizer.h"
#include "util/error.h"

namespace loopq::cli {

static const char* kTokenizeHelp =
    "usage: loopq tokenize --tokenizer PATH (--text TEXT | --file FILE) [--decode] "
    "[--skip-special]\n"
    "  --tokenizer PATH  a directory (tokenizer.json, else encoder.json + vocab.bpe), a\n"
    "                    tokenizer.json file, or an encoder.json file with vocab.bpe beside it\n"
    "  --text TEXT       input given on the command line\n"
    "  --file FILE       input read from a file (bytes as is)\n"
    "  --decode          the input is a list of ids (JSON array or comma separated); prints the\n"
    "                    decoded text followed by a newline\n"
    "  --skip-special    with --decode: leave out special tokens such as <|endoftext|>\n"
    "Without --decode, prints the ids as one JSON array on one line, e.g. [9707,11,1879].\n"
    "Special tokens written in the text are matched; no BOS/EOS is added.\n";

// "[1, 2, 3]" or "1,2,3" (surrounding whitespace allowed).
static std::vector<int32_t> parse_ids(const std::string& input) {
  size_t b = input.find_first_not_of(" \t\r\n"), e = input.find_last_not_of(" \t\r\n");
  if (b == std::string::npos) throw Error("no ids to decode (empty input)");
  const std::string s = input.substr(b, e - b + 1);
  std::vector<long long> values;
  if (s[0] == '[') {
    nlohmann::json j = tok::parse_json(s, "--decode input");
    for (const auto& v : j) {
      if (!v.is_number_integer())
        throw Error("--decode input: '" + v.dump() + "' is not an integer id");
      values.push_back(v.get<long long>());
    }
  } else {
    std::string flat = s;
    for (char& c : flat)
      if (c == '\n' || c == '\r' || c == '\t') c = ' ';
    values = parse_int_list(flat, "--decode input");
  }
  std::vector<int32_t> ids;
  for (long long v : values) {
    if (v < 0 || v > INT32_MAX) throw Error("token id " + std::to_string(v) + " is out of range");
    ids.push_back(static_cast<int32_t>(v));
  }
  return ids;
}

int cmd_tokenize(int argc, char** argv) {
  Args args(argc, argv, {"tokenizer", "text", "file"}, {"decode", "skip-special"});
  if (args.help()) {
    std::fputs(kTokenizeHelp, stdout);
    return 0;
  }
  if (!args.positional().empty())
    throw Error("unexpected argument '" + args.positional()[0] + "' (see --help)");
  const std::string path = args.require("tokenizer");
  if (args.has("text") == args.has("file")) throw Error("give exactly one of --text and --file");
  if (args.has("skip-special") && !args.has("decode"))
    throw Error("--skip-special only applies with --decode");
  const std::string input =
      args.has("text") ? args.get("text") : tok::read_text_file(args.get("file"));

  auto tokenizer = tok::Tokenizer::load(path);
  if (args.has("decode")) {
    std::string text = tokenizer->decode(parse_ids(input), args.has("skip-special"));
    std::fwrite(text.data(), 1, text.size(), stdout);
    std::fputc('\n', stdout);
    return 0;
  }
  std::string out = "[";
  for (int32_t id : tokenizer->encode(input)) {
    if (out.size() > 1) out += ',';
    out += std::to_string(id);
  }
  out += "]\n";
  std::fwrite(out.data(), 1, out.size(), stdout);
  return 0;
}

}  // namespace loopq::cli
