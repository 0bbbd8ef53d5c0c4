// Inputs the libFuzzer targets (fuzz/) found crashing, each kept as a test. "Crash" here means
// any outcome other than success or a one-line loopq::Error.
#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "io/hf_config.h"
#include "quant/quant_config.h"
#include "io/tokenizer/tokenizer.h"
#include "util/error.h"

namespace {

void expect_loopq_error(const std::function<void()>& fn, const std::string& needle) {
  try {
    fn();
  } catch (const loopq::Error& e) {
    const std::string msg = e.what();
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    EXPECT_NE(msg.find(needle), std::string::npos) << "'" << needle << "' not in: " << msg;
    return;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "expected loopq::Error, got another exception: " << e.what();
    return;
  }
  ADD_FAILURE() << "expected loopq::Error, nothing thrown";
}

}  // namespace

// fuzz_hf_config crash-0569307e: a number too large for a double made nlohmann throw
// out_of_range (not parse_error), which escaped the reader as a foreign exception.
TEST(FuzzRegression, ConfigNumberOverflow) {
  expect_loopq_error([] { loopq::parse_hf_config_text(R"({"moe": 33e3333, "vocab_size": 30})", "c.json"); },
                     "c.json: invalid JSON");
  expect_loopq_error(
      [] { loopq::tok::Tokenizer::from_json_text(R"({"model": {"vocab": {"a": 1e400}}})", "t.json"); },
      "t.json: malformed JSON");
}

// fuzz_tokenizer_json crash-832f7b88: a BPE model whose unk_token is not in its vocabulary
// loaded fine and then threw from encode() on the first unknown character. It is refused at
// load time now, so a loaded tokenizer's encode() cannot fail on any input.
TEST(FuzzRegression, UnkTokenMissingFromVocab) {
  const std::string j = R"({"model": {"type": "BPE", "unk_token": "<unk>", "vocab": {"a": 0},
                                      "merges": []}})";
  expect_loopq_error([&] { loopq::tok::Tokenizer::from_json_text(j, "t.json"); },
                     "unk_token '<unk>' is not in the vocab");
}

// fuzz_quantized_dir crash-4c000da8: an integer field written as a number too large for int64
// ("group_size": 1255...58, which JSON parsers hold as a double) was cast to int64 by
// nlohmann's get<int64_t>() (UB; UBSan: "outside the range of representable values"). Integer
// fields of the quantization_config must be JSON integers that fit.
TEST(FuzzRegression, QuantConfigFloatInIntegerField) {
  loopq::quant::QuantConfig qc;
  loopq::quant::QuantConfig w;
  nlohmann::json good = w.to_json();
  ASSERT_NO_THROW(qc = loopq::quant::QuantConfig::from_json(good));
  const std::vector<std::pair<std::vector<std::string>, nlohmann::json>> edits = {
      {{"kv_cache", "group_size"}, nlohmann::json::parse("1255555555555555555555555555555558")},
      {{"kv_cache", "bits"}, 1e300},
      {{"weights", "bits"}, 4.5},
      {{"weights", "group_size"}, -1e30},
      {{"adaptations", "state_sets"}, 1e20},
      {{"calibration", "seed"}, 1e40},
      {{"rotation", "seed"}, -3},
      {{"format_version"}, 1e300},
      {{"weights", "bits"}, int64_t(1) << 40},
  };
  for (const auto& [path, value] : edits) {
    nlohmann::json j = good;
    if (path[0] == "rotation") j["rotation"] = {{"seed", 0}};
    nlohmann::json* at = &j;
    for (const auto& key : path) at = &(*at)[key];
    *at = value;
    expect_loopq_error([&] { loopq::quant::QuantConfig::from_json(j); }, path.back());
  }
}
