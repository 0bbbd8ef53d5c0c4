// config.json parsing: every field of the architecture doc, and named errors for bad configs.
#include <gtest/gtest.h>

#include "io/hf_config.h"
#include "util/error.h"

using loopq::parse_hf_config_text;

namespace {
const char* kOuro14B = R"({
  "architectures": ["OuroForCausalLM"], "model_type": "ouro", "hidden_size": 2048,
  "num_hidden_layers": 24, "num_attention_heads": 16, "num_key_value_heads": 16, "head_dim": 128,
  "intermediate_size": 5632, "vocab_size": 49152, "max_position_embeddings": 65536,
  "rope_theta": 1000000, "rope_scaling": null, "rms_norm_eps": 1e-06, "hidden_act": "silu",
  "tie_word_embeddings": false, "total_ut_steps": 4, "early_exit_threshold": 1.0,
  "use_sliding_window": false, "torch_dtype": "bfloat16", "eos_token_id": 0, "bos_token_id": 1})";

std::string with(const std::string& key, const std::string& value) {
  std::string s = kOuro14B;
  auto pos = s.find("\"" + key + "\":");
  if (pos == std::string::npos) return s.substr(0, s.size() - 1) + ", \"" + key + "\": " + value + "}";
  auto end = s.find_first_of(",}", s.find(':', pos));
  return s.substr(0, s.find(':', pos) + 1) + " " + value + s.substr(end);
}

void expect_error(const std::string& json, const std::string& needle) {
  try {
    parse_hf_config_text(json, "config.json");
    ADD_FAILURE() << "expected an error mentioning " << needle;
  } catch (const loopq::Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}
}  // namespace

TEST(HFConfig, ParsesOuro14B) {
  auto c = parse_hf_config_text(kOuro14B, "config.json");
  EXPECT_EQ(c.hidden_size, 2048);
  EXPECT_EQ(c.num_layers, 24);
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_EQ(c.num_kv_heads, 16);
  EXPECT_EQ(c.intermediate_size, 5632);
  EXPECT_EQ(c.vocab_size, 49152);
  EXPECT_EQ(c.total_ut_steps, 4);
  EXPECT_DOUBLE_EQ(c.rope_theta, 1e6);
  ASSERT_TRUE(c.early_exit_threshold.has_value());
  EXPECT_DOUBLE_EQ(*c.early_exit_threshold, 1.0);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_EQ(c.eos_token_ids, std::vector<int64_t>{0});
  // 2 (K, V) x 96 slots x 2048 x 2 bytes = 768 KiB per token in bf16 (doc §6.2)
  EXPECT_EQ(c.kv_bytes_per_token(4, 2), 768 * 1024);
}

TEST(HFConfig, DerivedAndOptionalFields) {
  std::string s = kOuro14B;
  s.replace(s.find("\"head_dim\": 128,"), 16, "");
  auto c = parse_hf_config_text(s, "config.json");
  EXPECT_EQ(c.head_dim, 128);  // hidden / heads
  c = parse_hf_config_text(with("early_exit_threshold", "null"), "config.json");
  EXPECT_FALSE(c.early_exit_threshold.has_value());
  c = parse_hf_config_text(with("early_exit_step", "2"), "config.json");
  EXPECT_EQ(c.early_exit_step.value(), 2);
  c = parse_hf_config_text(with("num_key_value_heads", "4"), "config.json");
  EXPECT_EQ(c.kv_dim(), 512);
  c = parse_hf_config_text(with("eos_token_id", "[0, 2]"), "config.json");
  EXPECT_EQ(c.eos_token_ids, (std::vector<int64_t>{0, 2}));
  // config round trip
  c.num_kv_heads = 4;
  c.early_exit_threshold.reset();
  auto back = parse_hf_config_text(loopq::config_to_hf_json(c), "again");
  EXPECT_EQ(back.eos_token_ids, c.eos_token_ids);
  EXPECT_EQ(back.num_kv_heads, 4);
  EXPECT_FALSE(back.early_exit_threshold.has_value());
  EXPECT_EQ(back.head_dim, c.head_dim);
}

TEST(HFConfig, ErrorsNameTheProblem) {
  expect_error(with("model_type", "\"llama\""), "unsupported model_type 'llama'");
  expect_error(with("num_key_value_heads", "5"), "not divisible by num_key_value_heads");
  expect_error(with("hidden_size", "-1"), "hidden_size must be positive");
  expect_error(with("hidden_act", "\"gelu\""), "unsupported hidden_act");
  expect_error(with("vocab_size", "\"big\""), "'vocab_size' must be an integer");
  expect_error(with("use_sliding_window", "true"), "use_sliding_window");
  expect_error(with("rope_scaling", "{\"type\": \"yarn\"}"), "rope_scaling");
  expect_error(with("eos_token_id", "60000"), "eos_token_id 60000 outside vocab");
  expect_error(with("head_dim", "127"), "head_dim must be even");
  expect_error("{not json", "invalid JSON");
  expect_error("[1, 2]", "must be a JSON object");
  std::string s = kOuro14B;
  s.replace(s.find("\"intermediate_size\": 5632,"), 26, "");
  expect_error(s, "missing required field 'intermediate_size'");
}
