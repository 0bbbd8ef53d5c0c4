// loopq train-tokenizer: byte-level BPE training -> HF tokenizer.json (+ tokenizer_config.json).
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "cli/args.h"
#include "cli/commands.h"
#include "io/atomic_file.h"
#include "io/tokenizer/bpe_trainer.h"
#include "io/tokenizer/json_fields.h"
#include "util/error.h"

namespace loopq::cli {

static const char* kTrainTokenizerHelp =
    "usage: loopq train-tokenizer --file TEXT --vocab-size N -o OUT [--min-frequency F]\n"
    "                             [--max-bytes B] [--threads T] [--model-max-length L]\n"
    "  --file TEXT           training text (UTF-8; invalid bytes count as U+FFFD)\n"
    "  --vocab-size N        final vocabulary size, special tokens and the 256 byte symbols\n"
    "                        included (at least 259)\n"
    "  -o, --out OUT         a directory (writes OUT/tokenizer.json and\n"
    "                        OUT/tokenizer_config.json) or a file name ending in .json\n"
    "                        (writes only the tokenizer.json there)\n"
    "  --min-frequency F     a pair must occur at least F times to be merged (default 2)\n"
    "  --max-bytes B         train on the first B bytes of TEXT only (cut back to a UTF-8\n"
    "                        character boundary)\n"
    "  --threads T           pre-tokenization threads (default: all cores); the result does\n"
    "                        not depend on it\n"
    "  --model-max-length L  model_max_length in tokenizer_config.json (default 2048)\n"
    "Byte-level BPE like GPT-2: the GPT-2 regex pre-tokenizer, special tokens <|endoftext|>=0,\n"
    "<|im_start|>=1, <|im_end|>=2, then the 256 bytes, then one token per merge. The most\n"
    "frequent pair is merged first; ties go to the lexicographically smallest (left, right)\n"
    "token strings. Output is deterministic for a given input and vocab size.\n";

int cmd_train_tokenizer(int argc, char** argv) {
  // Accept "-o" whether or not the shared parser knows short flags.
  std::vector<std::string> storage(argv, argv + argc);
  for (std::string& a : storage)
    if (a == "-o") a = "--o";
  std::vector<char*> av;
  for (std::string& a : storage) av.push_back(a.data());
  Args args(static_cast<int>(av.size()), av.data(),
            {"file", "vocab-size", "o", "out", "output", "min-frequency", "max-bytes", "threads",
             "model-max-length"},
            {});
  if (args.help()) {
    std::fputs(kTrainTokenizerHelp, stdout);
    return 0;
  }
  if (!args.positional().empty())
    throw Error("unexpected argument '" + args.positional()[0] + "' (see --help)");
  const std::string file = args.require("file");
  if (!args.has("vocab-size")) throw Error("missing required flag --vocab-size (see --help)");
  std::string out = args.has("o") ? args.get("o") : args.has("out") ? args.get("out") : args.get("output");
  if (out.empty()) throw Error("missing required flag -o/--out (see --help)");

  tok::BpeTrainerOptions opt;
  opt.vocab_size = static_cast<size_t>(args.get_int("vocab-size", 0, 1, 1 << 24));
  opt.min_frequency = static_cast<uint64_t>(args.get_int("min-frequency", 2, 1, 1LL << 62));
  opt.threads = static_cast<int>(args.get_int("threads", 0, 0, 1024));
  const long long max_bytes = args.get_int("max-bytes", -1, 1, 1LL << 62);
  const size_t model_max_length = static_cast<size_t>(args.get_int("model-max-length", 2048, 1, 1LL << 40));
  const size_t min_vocab = opt.special_tokens.size() + 256;
  if (opt.vocab_size < min_vocab)
    throw Error("--vocab-size " + std::to_string(opt.vocab_size) + " is too small: it must be at least " +
                std::to_string(min_vocab) + " (" + std::to_string(opt.special_tokens.size()) +
                " special tokens + 256 byte symbols)");

  std::string text = tok::read_text_file(file);
  if (max_bytes > 0 && static_cast<size_t>(max_bytes) < text.size()) {
    size_t n = static_cast<size_t>(max_bytes);
    // Do not cut a multi-byte character in two.
    while (n > 0 && (static_cast<unsigned char>(text[n]) & 0xC0) == 0x80) --n;
    text.resize(n);
  }
  if (text.empty()) throw Error("training file '" + file + "' is empty");

  // Prepare the output before training so that mistakes fail fast. A folder output is staged in
  // a hidden folder beside it and appears whole (see io::AtomicDir), so a killed run leaves either
  // the finished tokenizer or nothing; the next run removes the stale staging folder.
  namespace fs = std::filesystem;
  const bool single_file = out.size() > 5 && out.compare(out.size() - 5, 5, ".json") == 0;
  std::unique_ptr<io::AtomicDir> staged;
  std::string tokenizer_path, config_path;
  {
    std::error_code ec;
    fs::path dir = fs::path(out).parent_path();
    if (!single_file && fs::path(out).filename().empty()) dir = dir.parent_path();  // "out/"
    if (!dir.empty()) {
      fs::create_directories(dir, ec);
      if (ec || !fs::is_directory(dir))
        throw Error("cannot create output directory '" + dir.string() + "'" +
                    (ec ? ": " + ec.message() : ": not a directory"));
    }
    if (single_file) {
      tokenizer_path = out;
    } else {
      if (fs::exists(out) && !fs::is_directory(out))
        throw Error("cannot create output directory '" + out + "': a file of that name exists");
      staged = std::make_unique<io::AtomicDir>(out);
      tokenizer_path = (fs::path(out) / "tokenizer.json").string();
      config_path = (fs::path(out) / "tokenizer_config.json").string();
    }
  }

  const auto t0 = std::chrono::steady_clock::now();
  tok::BpeTrainResult r = tok::train_bpe(text, opt);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  if (single_file) {
    io::write_file_atomic(tokenizer_path, tok::bpe_tokenizer_json(r));
  } else {
    io::write_file_atomic(staged->file("tokenizer.json"), tok::bpe_tokenizer_json(r));
    io::write_file_atomic(staged->file("tokenizer_config.json"),
                          tok::bpe_tokenizer_config_json(r, model_max_length));
    staged->commit({"tokenizer.json"});  // into an existing folder: tokenizer.json last
  }

  std::fprintf(stderr,
               "trained on %llu bytes: %llu pre-tokens, %zu unique; %zu merges -> vocab %zu "
               "(%zu special + 256 bytes + %zu merges)%s\n",
               static_cast<unsigned long long>(r.input_bytes),
               static_cast<unsigned long long>(r.total_words), r.unique_words, r.merges.size(),
               r.vocab.size(), r.num_special, r.merges.size(),
               r.vocab.size() < opt.vocab_size ? " [stopped early: no pair reaches --min-frequency]"
                                                : "");
  std::fprintf(stderr, "time: %.2f s (counting %.2f s, merges %.2f s)\n", secs, r.count_seconds,
               r.merge_seconds);
  std::printf("wrote %s%s%s\n", tokenizer_path.c_str(), config_path.empty() ? "" : " and ",
              config_path.c_str());
  return 0;
}

}  // namespace loopq::cli
