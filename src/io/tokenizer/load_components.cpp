#include "io/tokenizer/load_components.h"

#include <vector>

namespace loopq::tok {

namespace {

std::string type_of(const JsonAt& j) {
  j.object();
  if (!j.has("type")) j.fail("missing \"type\"");
  return j["type"].str();
}

SplitBehavior parse_behavior(const JsonAt& j) {
  const std::string b = j.str();
  if (b == "Removed") return SplitBehavior::Removed;
  if (b == "Isolated") return SplitBehavior::Isolated;
  if (b == "MergedWithPrevious") return SplitBehavior::MergedWithPrevious;
  if (b == "MergedWithNext") return SplitBehavior::MergedWithNext;
  if (b == "Contiguous") return SplitBehavior::Contiguous;
  j.fail("unknown split behavior '" + b + "'");
}

std::unique_ptr<PreTokenizer> split_from_json(const JsonAt& j) {
  JsonAt pat = j["pattern"];
  pat.object();
  std::unique_ptr<Regex> regex;
  std::string literal;
  if (pat.has("Regex")) {
    std::string p = pat["Regex"].str();
    try {
      regex = std::make_unique<Regex>(p);
    } catch (const std::exception& e) {
      pat.fail(e.what());
    }
  } else if (pat.has("String")) {
    literal = pat["String"].str();
  } else {
    pat.fail("expected {\"Regex\": ...} or {\"String\": ...}");
  }
  return std::make_unique<SplitPreTokenizer>(std::move(regex), std::move(literal),
                                             parse_behavior(j["behavior"]),
                                             j.bool_or("invert", false));
}

}  // namespace

std::unique_ptr<Normalizer> normalizer_from_json(const JsonAt& j) {
  if (j.is_null()) return nullptr;
  const std::string type = type_of(j);
  if (type == "NFC") return std::make_unique<NfcNormalizer>();
  if (type == "Sequence") {
    JsonAt list = j["normalizers"];
    std::vector<std::unique_ptr<Normalizer>> steps;
    for (size_t i = 0; i < list.array().size(); ++i) {
      if (list[i].is_null()) list[i].fail("null normalizer in Sequence");
      steps.push_back(normalizer_from_json(list[i]));
    }
    return std::make_unique<SequenceNormalizer>(std::move(steps));
  }
  j.fail("unsupported normalizer type '" + type + "' (supported: NFC, Sequence)");
}

std::unique_ptr<PreTokenizer> pre_tokenizer_from_json(const JsonAt& j) {
  if (j.is_null()) return nullptr;
  const std::string type = type_of(j);
  if (type == "Split") return split_from_json(j);
  if (type == "ByteLevel")
    return std::make_unique<ByteLevelPreTokenizer>(j.bool_or("add_prefix_space", true),
                                                   j.bool_or("use_regex", true));
  if (type == "Digits")
    return std::make_unique<DigitsPreTokenizer>(j.bool_or("individual_digits", false));
  if (type == "Sequence") {
    JsonAt list = j["pretokenizers"];
    std::vector<std::unique_ptr<PreTokenizer>> steps;
    for (size_t i = 0; i < list.array().size(); ++i) {
      if (list[i].is_null()) list[i].fail("null pre-tokenizer in Sequence");
      steps.push_back(pre_tokenizer_from_json(list[i]));
    }
    return std::make_unique<SequencePreTokenizer>(std::move(steps));
  }
  j.fail("unsupported pre_tokenizer type '" + type +
         "' (supported: Split, ByteLevel, Digits, Sequence)");
}

DecoderKind decoder_from_json(const JsonAt& j) {
  if (j.is_null()) return DecoderKind::Join;
  const std::string type = type_of(j);
  if (type == "ByteLevel") return DecoderKind::ByteLevel;
  if (type == "Sequence") {
    // Only a sequence made of ByteLevel steps is the same as one ByteLevel step.
    JsonAt list = j["decoders"];
    for (size_t i = 0; i < list.array().size(); ++i)
      if (decoder_from_json(list[i]) != DecoderKind::ByteLevel)
        list[i].fail("unsupported decoder in Sequence (only ByteLevel is supported)");
    if (list.array().empty()) j.fail("empty decoder Sequence");
    return DecoderKind::ByteLevel;
  }
  j.fail("unsupported decoder type '" + type + "' (supported: ByteLevel, Sequence of ByteLevel)");
}

}  // namespace loopq::tok
