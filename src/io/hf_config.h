#pragma once
// Internal description of a looped LM (Ouro family), independent of the HF file layout, and its
// config.json reader/writer. Torch-free so that the CLI and io code can use it cheaply; model code
// includes it through model/config.h.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace loopq {

struct LoopLMConfig {
  std::string model_type = "ouro";
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t num_layers = 0;          // N physical layers, shared by every loop
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
  int64_t intermediate_size = 0;
  int64_t max_position_embeddings = 0;
  double rope_theta = 10000.0;
  double rms_norm_eps = 1e-6;
  bool tie_word_embeddings = false;
  int64_t total_ut_steps = 4;      // T loops the model was trained with
  std::optional<double> early_exit_threshold = 1.0;   // null in JSON disables CDF mode
  std::optional<int64_t> early_exit_step;             // 0-based fixed exit step
  std::vector<int64_t> eos_token_ids;
  std::optional<int64_t> bos_token_id;
  std::optional<int64_t> pad_token_id;
  std::string torch_dtype = "float32";

  int64_t q_dim() const { return num_heads * head_dim; }
  int64_t kv_dim() const { return num_kv_heads * head_dim; }
  // fp32 K+V bytes one token adds to the cache across all T*N slots (at `loops` loops).
  int64_t kv_bytes_per_token(int64_t loops, int64_t bytes_per_elem = 4) const {
    return 2 * loops * num_layers * kv_dim() * bytes_per_elem;
  }
};

// Parses an HF config.json (model_type "ouro"). Throws loopq::Error naming the bad field.
LoopLMConfig parse_hf_config(const std::string& config_json_path);
LoopLMConfig parse_hf_config_text(const std::string& json_text, const std::string& origin);
// Checks internal consistency (divisibility, positivity). Throws loopq::Error.
void validate_config(const LoopLMConfig& cfg);
// Serializes back to an HF-compatible config.json text.
std::string config_to_hf_json(const LoopLMConfig& cfg);

}  // namespace loopq
