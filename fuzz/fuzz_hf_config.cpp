// HF config.json reader: any text either parses into a config that passes validate_config and
// survives a write/read round trip unchanged, or throws loopq::Error.
#include <string>

#include "io/hf_config.h"
#include "util/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  loopq::LoopLMConfig c;
  try {
    c = loopq::parse_hf_config_text(text, "fuzz/config.json");
  } catch (const loopq::Error&) {
    return 0;
  }
  // Derived sizes the model code computes from a config must not overflow (UBSan watches).
  volatile int64_t sink = c.q_dim() + c.kv_dim() + c.kv_bytes_per_token(c.total_ut_steps) +
                          c.kv_bytes_per_token(1024);
  (void)sink;
  const loopq::LoopLMConfig back = loopq::parse_hf_config_text(loopq::config_to_hf_json(c), "again");
  if (back.vocab_size != c.vocab_size || back.hidden_size != c.hidden_size ||
      back.num_layers != c.num_layers || back.num_heads != c.num_heads ||
      back.num_kv_heads != c.num_kv_heads || back.head_dim != c.head_dim ||
      back.intermediate_size != c.intermediate_size || back.total_ut_steps != c.total_ut_steps ||
      back.max_position_embeddings != c.max_position_embeddings ||
      back.eos_token_ids != c.eos_token_ids || back.early_exit_step != c.early_exit_step ||
      back.tie_word_embeddings != c.tie_word_embeddings)
    __builtin_trap();
  return 0;
}
