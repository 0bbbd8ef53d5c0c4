#include "io/tokenizer/json_fields.h"
#include "io/tokenizer/loaders.h"
#include "util/error.h"

namespace loopq::tok {

namespace {

MergeList parse_bpe_merges(const std::string& text, const std::string& file) {
  MergeList merges;
  size_t line_no = 0;
  for (size_t pos = 0; pos < text.size();) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string::npos) nl = text.size();
    std::string line = text.substr(pos, nl - pos);
    pos = nl + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || (line_no == 1 && line.rfind("#version", 0) == 0)) continue;
    size_t sp = line.find(' ');
    if (sp == std::string::npos || sp == 0 || sp + 1 == line.size() ||
        line.find(' ', sp + 1) != std::string::npos)
      throw Error(file + ": line " + std::to_string(line_no) +
                  ": expected two tokens separated by one space");
    merges.emplace_back(line.substr(0, sp), line.substr(sp + 1));
  }
  return merges;
}

}  // namespace

TokenizerParts parts_from_gpt2(const nlohmann::json& encoder, const std::string& encoder_file,
                               const std::string& merges_file) {
  return parts_from_gpt2_text(encoder, encoder_file, read_text_file(merges_file), merges_file);
}

TokenizerParts parts_from_gpt2_text(const nlohmann::json& encoder, const std::string& encoder_file,
                                    const std::string& merges_text, const std::string& merges_file) {
  JsonAt root(encoder, encoder_file, "");
  const nlohmann::json& obj = root.object();
  std::unordered_map<std::string, int32_t> vocab;
  vocab.reserve(obj.size());
  for (auto it = obj.begin(); it != obj.end(); ++it) {
    JsonAt v(it.value(), encoder_file, "\"" + it.key() + "\"");
    int64_t id = v.integer();
    if (id < 0 || id >= (1 << 24)) v.fail("id out of range");
    vocab.emplace(it.key(), static_cast<int32_t>(id));
  }
  TokenizerParts parts;
  parts.model = std::make_unique<BpeModel>(std::move(vocab), parse_bpe_merges(merges_text, merges_file),
                                           BpeOptions{}, merges_file);
  parts.pre_tokenizer = std::make_unique<ByteLevelPreTokenizer>(/*add_prefix_space=*/false,
                                                                /*use_regex=*/true);
  parts.decoder = DecoderKind::ByteLevel;
  return parts;
}

}  // namespace loopq::tok
