// Tokenizer::load: decides from the path which file format to read.
#include <filesystem>

#include "io/tokenizer/json_fields.h"
#include "io/tokenizer/loaders.h"
#include "io/tokenizer/tokenizer.h"
#include "util/error.h"

namespace loopq::tok {

namespace fs = std::filesystem;

namespace {

bool is_file(const fs::path& p) {
  std::error_code ec;
  return fs::is_regular_file(p, ec);
}

// Merges file that goes with a GPT-2 style vocabulary at `encoder`, or "" if none.
std::string merges_beside(const fs::path& encoder) {
  for (const char* name : {"vocab.bpe", "merges.txt"}) {
    fs::path m = encoder.parent_path() / name;
    if (is_file(m)) return m.string();
  }
  return "";
}

std::unique_ptr<Tokenizer> load_file(const fs::path& file) {
  const std::string name = file.string();
  nlohmann::json doc = parse_json(read_text_file(name), name);
  // encoder.json may well contain a token "model", so look for the object.
  if (doc.is_object() && doc.contains("model") && doc["model"].is_object())
    return std::make_unique<Tokenizer>(parts_from_hf_json(doc, name));
  // Not a tokenizer.json: treat it as GPT-2's encoder.json, which needs its merges beside it.
  std::string merges = merges_beside(file);
  if (merges.empty())
    throw Error(name + ": not a tokenizer.json (no \"model\") and no vocab.bpe beside it");
  return std::make_unique<Tokenizer>(parts_from_gpt2(doc, name, merges));
}

}  // namespace

std::unique_ptr<Tokenizer> Tokenizer::load(const std::string& path) {
  std::error_code ec;
  fs::path p(path);
  if (!fs::exists(p, ec)) throw Error("tokenizer path does not exist: " + path);
  if (!fs::is_directory(p, ec)) return load_file(p);
  if (is_file(p / "tokenizer.json")) return load_file(p / "tokenizer.json");
  for (const char* enc : {"encoder.json", "vocab.json"})
    if (is_file(p / enc) && !merges_beside(p / enc).empty()) return load_file(p / enc);
  throw Error(path + ": directory has neither tokenizer.json nor encoder.json + vocab.bpe");
}

std::unique_ptr<Tokenizer> Tokenizer::from_json_text(const std::string& json_text,
                                                     const std::string& name) {
  return std::make_unique<Tokenizer>(parts_from_hf_json(parse_json(json_text, name), name));
}

}  // namespace loopq::tok
