#pragma once
// Autoregressive generation with the per-(loop, layer) KV cache: one prefill, then one forward
// per new token. Sampling runs on the host with its own seeded RNG, so results do not depend on
// the device.
#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "model/ouro_model.h"

namespace loopq {

struct SamplingOptions {
  double temperature = 0.0;  // 0: greedy
  double top_p = 1.0;
  int64_t top_k = 0;         // 0: off
  uint64_t seed = 0;
};

// Picks a token from one row of logits [V].
class Sampler {
 public:
  explicit Sampler(const SamplingOptions& options);
  int64_t sample(const at::Tensor& logits);

 private:
  SamplingOptions opt_;
  std::mt19937_64 rng_;
};

struct GenerateOptions {
  int64_t max_new_tokens = 64;
  SamplingOptions sampling;
  std::vector<int64_t> stop_ids;
  ForwardOptions forward;  // loops, exit mode
};

struct GenerateStats {
  int64_t prompt_tokens = 0, new_tokens = 0;
  int64_t decode_steps = 0;  // single-token forwards after the prefill
  double prefill_seconds = 0, decode_seconds = 0;
  int64_t kv_bytes_per_token = 0;  // the cache's storage per position (KVCache::bytes_per_token)
  int64_t kv_bytes = 0;            // its resident bytes at the end (KVCache::bytes)
  std::string kv_format;           // "fp32" or the codec's description, e.g. "int4 asym g128"
};

// Returns the generated ids (without the prompt). `on_token` is called for each new token and
// may return false to stop early.
std::vector<int64_t> generate(const OuroModel& model, const std::vector<int64_t>& prompt,
                              const GenerateOptions& options,
                              const std::function<bool(int64_t)>& on_token = {},
                              GenerateStats* stats = nullptr);

}  // namespace loopq
