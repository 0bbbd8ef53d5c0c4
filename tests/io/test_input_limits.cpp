// Resource limits on untrusted input: every size or count read from a file is checked before it
// is used to allocate, and each limit fails with a one-line loopq::Error that names it.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <string>

#include "io/hf_config.h"
#include "io/safetensors.h"
#include "io/tokenizer/json_fields.h"
#include "io/tokenizer/loaders.h"
#include "io/tokenizer/tokenizer.h"
#include "util/error.h"

namespace fs = std::filesystem;

namespace {

void expect_error(const std::function<void()>& fn, const std::vector<std::string>& needles) {
  try {
    fn();
  } catch (const loopq::Error& e) {
    const std::string msg = e.what();
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    EXPECT_LT(msg.size(), 400u) << msg;
    for (const auto& n : needles) EXPECT_NE(msg.find(n), std::string::npos) << "'" << n << "' not in: " << msg;
    return;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "expected loopq::Error, got: " << e.what();
    return;
  }
  ADD_FAILURE() << "expected loopq::Error, nothing thrown";
}

class Limits : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "loopq_limits_XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string write(const std::string& name, const std::string& bytes) const {
    const std::string p = dir_ + "/" + name;
    std::ofstream(p, std::ios::binary) << bytes;
    return p;
  }
  // A file of `size` bytes that takes no disk space (a hole).
  std::string sparse(const std::string& name, uintmax_t size) const {
    const std::string p = write(name, "{");
    fs::resize_file(p, size);
    return p;
  }
  std::string dir_;
};

std::string u64_le(uint64_t v) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>((v >> (8 * i)) & 0xff);
  return s;
}

const char* kConfig = R"({"model_type": "ouro", "vocab_size": 300, "hidden_size": 32,
  "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 44, "total_ut_steps": 4,
  "max_position_embeddings": 128})";

std::string config_with(const std::string& key, const std::string& value) {
  std::string s = kConfig;
  const size_t k = s.find("\"" + key + "\":");
  const size_t colon = s.find(':', k), end = s.find_first_of(",}", colon);
  return s.substr(0, colon + 1) + " " + value + s.substr(end);
}

}  // namespace

// ---- config.json: layer, loop, width and position counts ----------------------------------

TEST_F(Limits, ConfigCountsAreBounded) {
  using loopq::parse_hf_config_text;
  EXPECT_NO_THROW(parse_hf_config_text(kConfig, "c"));
  const std::pair<const char*, const char*> cases[] = {
      {"num_hidden_layers", "1000000"}, {"total_ut_steps", "1000000000"},
      {"vocab_size", "100000000"},      {"hidden_size", "4194304"},
      {"intermediate_size", "9223372036854775807"}, {"max_position_embeddings", "4611686018427387904"}};
  for (const auto& [key, value] : cases)
    expect_error([&] { parse_hf_config_text(config_with(key, value), "c.json"); },
                 {"c.json", key, "exceeds the limit"});
  // Products used for buffer sizes cannot overflow at the limits.
  auto c = parse_hf_config_text(config_with("total_ut_steps", "1024"), "c");
  EXPECT_GT(c.kv_bytes_per_token(1024), 0);
}

TEST_F(Limits, ConfigFileSizeIsBounded) {
  const std::string p = sparse("config.json", uintmax_t(17) << 20);
  expect_error([&] { loopq::parse_hf_config(p); }, {"config.json", "16 MiB limit"});
}

TEST_F(Limits, ConfigErrorValuesAreShort) {
  // A 100 KB array in a field must not end up whole in the message.
  std::string big = "[1";
  for (int i = 0; i < 50000; ++i) big += ",1";
  big += "]";
  expect_error([&] { loopq::parse_hf_config_text(config_with("hidden_size", big), "c.json"); },
               {"hidden_size", "must be an integer"});
}

// ---- safetensors: header length, tensor count, rank, shape products ----------------------

TEST_F(Limits, SafetensorsHeaderLengthAgainstFileAndLimit) {
  // A 16-byte file that claims a 1 TB header: refused before anything is read or allocated.
  const std::string p = write("a.safetensors", u64_le(uint64_t(1) << 40) + "{}      ");
  expect_error([&] { loopq::io::SafetensorsFile::open(p); }, {"header length", "100 MB limit"});
  const std::string q = write("b.safetensors", u64_le(1000) + "{}      ");
  expect_error([&] { loopq::io::SafetensorsFile::open(q); }, {"exceeds the file size"});
}

TEST_F(Limits, SafetensorsShapeProductOverflow) {
  const std::string h =
      R"({"t": {"dtype": "F32", "shape": [4294967296, 4294967296], "data_offsets": [0, 0]}})";
  const std::string p = write("o.safetensors", u64_le(h.size()) + h);
  expect_error([&] { loopq::io::SafetensorsFile::open(p); }, {"'t'", "too many elements"});
  // numel fits in int64, bytes do not.
  const std::string h2 =
      R"({"t": {"dtype": "F64", "shape": [2305843009213693952, 2], "data_offsets": [0, 0]}})";
  const std::string q = write("p.safetensors", u64_le(h2.size()) + h2);
  expect_error([&] { loopq::io::SafetensorsFile::open(q); }, {"'t'", "too many elements"});
}

TEST_F(Limits, SafetensorsRankAndCount) {
  std::string shape = "[";
  for (int i = 0; i < 65; ++i) shape += i ? ",1" : "1";
  shape += "]";
  const std::string h = R"({"t": {"dtype": "U8", "shape": )" + shape + R"(, "data_offsets": [0, 1]}})";
  const std::string p = write("r.safetensors", u64_le(h.size()) + h + "x");
  expect_error([&] { loopq::io::SafetensorsFile::open(p); }, {"'t'", "65 dims", "limit of 64"});

  std::string many = "{";
  for (int i = 0; i <= (1 << 20) + 1; ++i) many += (i ? ",\"" : "\"") + std::to_string(i) + "\":0";
  many += "}";
  const std::string q = write("n.safetensors", u64_le(many.size()) + many);
  expect_error([&] { loopq::io::SafetensorsFile::open(q); }, {"entries", "limit of 1048576 tensors"});
}

TEST_F(Limits, SafetensorsDeepNestingInMessagesIsBounded) {
  // dump() of this shape would be recursive and as long as the header.
  const std::string nested = std::string(20000, '[') + std::string(20000, ']');
  const std::string h = R"({"t": {"dtype": "U8", "shape": [1, )" + nested + R"(], "data_offsets": [0, 1]}})";
  const std::string p = write("d.safetensors", u64_le(h.size()) + h + "x");
  expect_error([&] { loopq::io::SafetensorsFile::open(p); }, {"'t'", "not a non-negative integer"});
}

// ---- tokenizers: vocabulary ids, merge counts, file sizes ---------------------------------

TEST_F(Limits, SparseVocabIdsAreRefused) {
  // 60 bytes that would otherwise allocate a 16M-entry id -> token table (~500 MB).
  const std::string j = R"({"model": {"type": "BPE", "vocab": {"a": 16777215}, "merges": []}})";
  expect_error([&] { loopq::tok::Tokenizer::from_json_text(j, "t.json"); },
               {"t.json", "too sparse", "16777215"});
  const auto enc = loopq::tok::parse_json(R"({"a": 16000000, "b": 1})", "encoder.json");
  expect_error([&] { loopq::tok::parts_from_gpt2_text(enc, "encoder.json", "", "vocab.bpe"); },
               {"too sparse"});
  // Dense vocabularies with a few holes stay fine.
  EXPECT_NO_THROW(loopq::tok::Tokenizer::from_json_text(
      R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 7, "ab": 3}, "merges": ["a b"]}})", "t"));
}

TEST_F(Limits, TokenizerFileSizeIsBounded) {
  const std::string p = sparse("tokenizer.json", uintmax_t(300) << 20);
  expect_error([&] { loopq::tok::Tokenizer::load(p); }, {"tokenizer.json", "256 MiB limit"});
}

TEST_F(Limits, AddedTokenIdsDoNotAllocate) {
  // An added token at a huge id only raises vocab_size(); nothing dense is built from it.
  auto t = loopq::tok::Tokenizer::from_json_text(
      R"({"added_tokens": [{"id": 16777215, "content": "<x>", "special": true}],
          "model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}})",
      "t");
  EXPECT_EQ(t->vocab_size(), size_t(1) << 24);
  EXPECT_EQ(t->encode("a<x>"), (std::vector<int32_t>{0, 16777215}));
  expect_error([&] { t->decode({5}); }, {"token id 5"});
}
