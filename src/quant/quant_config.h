#pragma once
// Everything needed to reproduce a quantized model, stored as the `quantization_config` block of
// its config.json (and read back by the loader).
#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>

#include "quant/kv_quant.h"
#include "quant/quant_linear.h"

namespace loopq::quant {

enum class Method { RTN, SmoothQuant, GPTQ, QuaRotRTN, QuaRotGPTQ };
Method parse_method(const std::string& name);  // "rtn", "smoothquant", "gptq", "quarot-rtn", "quarot-gptq"
const char* method_name(Method m);
inline bool uses_gptq(Method m) { return m == Method::GPTQ || m == Method::QuaRotGPTQ; }
inline bool uses_rotation(Method m) { return m == Method::QuaRotRTN || m == Method::QuaRotGPTQ; }

struct QuantConfig {
  Method method = Method::RTN;
  // Weights (all seven linears of every layer; embeddings, norms, lm_head and exit gate stay FP).
  int w_bits = 4;
  bool w_symmetric = true;
  int64_t w_group_size = 0;
  bool w_clip_search = true;
  ActQuant act;     // bits 16 = weight-only
  KVQuantSpec kv;   // bits 16 = FP cache
  // SmoothQuant
  double smooth_alpha = 0.5;
  // GPTQ (quantization-reference.md §3.3)
  double percdamp = 0.01;
  int64_t block_size = 128;
  bool act_order = true;
  std::string sequential = "layer";  // none | layer | sublayer
  // QuaRot
  uint64_t rotation_seed = 0;
  // Calibration record
  std::string calib_file;
  int64_t nsamples = 0, seqlen = 0;
  uint64_t calib_seed = 0;
  double quantize_seconds = 0;

  // Rejects inconsistent settings with one clear message (bits, clip ratios, group sizes).
  void validate(int64_t hidden, int64_t intermediate, int64_t q_dim, int64_t kv_dim) const;
  nlohmann::json to_json() const;
  static QuantConfig from_json(const nlohmann::json& j);
};

}  // namespace loopq::quant
