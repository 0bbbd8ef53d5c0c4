#include "io/tokenizer/json_fields.h"
#include "io/tokenizer/load_components.h"
#include "io/tokenizer/loaders.h"

namespace loopq::tok {

namespace {

constexpr int64_t kMaxId = (1 << 24) - 1;

int32_t read_id(const JsonAt& j) {
  int64_t id = j.integer();
  if (id < 0 || id > kMaxId) j.fail("id " + std::to_string(id) + " out of range");
  return static_cast<int32_t>(id);
}

std::unordered_map<std::string, int32_t> read_vocab(const JsonAt& j) {
  const nlohmann::json& obj = j.object();
  std::unordered_map<std::string, int32_t> vocab;
  vocab.reserve(obj.size());
  for (auto it = obj.begin(); it != obj.end(); ++it) {
    const nlohmann::json& v = it.value();
    int32_t id;
    if (v.is_number_unsigned() && v.get<uint64_t>() <= static_cast<uint64_t>(kMaxId))
      id = static_cast<int32_t>(v.get<uint64_t>());
    else  // slow path only to build the error message
      id = read_id(JsonAt(v, j.file(), j.path() + "[\"" + it.key() + "\"]"));
    vocab.emplace(it.key(), id);
  }
  return vocab;
}

// Merges come as "a b" strings (older files) or as ["a", "b"] pairs (tokens may hold spaces).
MergeList read_merges(const JsonAt& j) {
  const nlohmann::json& arr = j.array();
  MergeList merges;
  merges.reserve(arr.size());
  for (size_t i = 0; i < arr.size(); ++i) {
    const nlohmann::json& m = arr[i];
    if (m.is_string()) {
      const std::string& s = m.get_ref<const std::string&>();
      size_t sp = s.find(' ');
      if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos)
        j[i].fail("merge \"" + s + "\" is not two tokens separated by one space");
      merges.emplace_back(s.substr(0, sp), s.substr(sp + 1));
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      merges.emplace_back(m[0].get<std::string>(), m[1].get<std::string>());
    } else {
      j[i].fail("expected \"a b\" or [\"a\", \"b\"]");
    }
  }
  return merges;
}

std::unique_ptr<BpeModel> model_from_json(const JsonAt& j) {
  j.object();
  if (j.has("type") && j["type"].str() != "BPE")
    j["type"].fail("unsupported model type '" + j["type"].str() + "' (only BPE is supported)");
  if (j.has("dropout")) {
    JsonAt d = j["dropout"];
    if (!d.value().is_number() || d.value().get<double>() != 0.0)
      d.fail("BPE dropout is not supported (must be null or 0)");
  }
  BpeOptions opt;
  if (j.has("unk_token")) opt.unk_token = j["unk_token"].str();
  opt.continuing_subword_prefix = j.str_or("continuing_subword_prefix", "");
  opt.end_of_word_suffix = j.str_or("end_of_word_suffix", "");
  opt.fuse_unk = j.bool_or("fuse_unk", false);
  opt.byte_fallback = j.bool_or("byte_fallback", false);
  opt.ignore_merges = j.bool_or("ignore_merges", false);
  MergeList merges = j.has("merges") ? read_merges(j["merges"]) : MergeList{};
  return std::make_unique<BpeModel>(read_vocab(j["vocab"]), merges, std::move(opt), j.file());
}

std::vector<AddedToken> added_tokens_from_json(const JsonAt& j) {
  std::vector<AddedToken> out;
  if (j.is_null()) return out;
  for (size_t i = 0; i < j.array().size(); ++i) {
    JsonAt t = j[i];
    t.object();
    AddedToken a;
    a.id = read_id(t["id"]);
    a.content = t["content"].str();
    if (a.content.empty()) t["content"].fail("empty added token");
    a.special = t.bool_or("special", false);
    a.single_word = t.bool_or("single_word", false);
    a.lstrip = t.bool_or("lstrip", false);
    a.rstrip = t.bool_or("rstrip", false);
    a.normalized = t.bool_or("normalized", !a.special);
    out.push_back(std::move(a));
  }
  return out;
}

}  // namespace

TokenizerParts parts_from_hf_json(const nlohmann::json& root_json, const std::string& file) {
  JsonAt root(root_json, file, "");
  root.object();
  if (!root.has("model")) root.fail("no \"model\" section (not a tokenizer.json?)");
  TokenizerParts parts;
  parts.model = model_from_json(root["model"]);
  parts.normalizer = normalizer_from_json(root["normalizer"]);
  parts.pre_tokenizer = pre_tokenizer_from_json(root["pre_tokenizer"]);
  parts.decoder = decoder_from_json(root["decoder"]);
  parts.added_tokens = added_tokens_from_json(root["added_tokens"]);
  // post_processor only adds BOS/EOS-style tokens, which encode() never does; truncation and
  // padding concern batch encoding. They are deliberately ignored.
  return parts;
}

}  // namespace loopq::tok
