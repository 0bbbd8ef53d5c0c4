#include "model/presets.h"

#include "util/error.h"

namespace loopq {

LoopLMConfig preset_config(const std::string& name) {
  LoopLMConfig c;
  c.rope_theta = 1e6;
  c.rms_norm_eps = 1e-6;
  c.total_ut_steps = 4;
  c.early_exit_threshold = 1.0;
  c.torch_dtype = "bfloat16";
  c.max_position_embeddings = 65536;
  if (name == "ouro-1.4b" || name == "ouro-2.6b") {
    c.vocab_size = 49152, c.hidden_size = 2048, c.num_heads = 16, c.num_kv_heads = 16;
    c.head_dim = 128, c.intermediate_size = 5632;
    c.num_layers = name == "ouro-1.4b" ? 24 : 48;
    c.eos_token_ids = {0};
    c.bos_token_id = 1;
    c.pad_token_id = 0;
  } else if (name == "ouro-tiny") {
    // Issue shape: intermediate 704 is deliberately not a power of two, like Ouro's 5632.
    c.vocab_size = 4096, c.hidden_size = 256, c.num_heads = 4, c.num_kv_heads = 4;
    c.head_dim = 64, c.intermediate_size = 704, c.num_layers = 4;
    c.max_position_embeddings = 2048;
    c.rope_theta = 10000.0;
    c.torch_dtype = "float32";
    c.eos_token_ids = {0};
  } else {
    throw Error("unknown preset '" + name + "' (ouro-1.4b, ouro-2.6b, ouro-tiny)");
  }
  return c;
}

}  // namespace loopq
