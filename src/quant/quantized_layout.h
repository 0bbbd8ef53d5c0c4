#pragma once
// The torch-free half of loading a quantized model directory (quantized_io.h): the
// quantization_config against the model config, and every quantized tensor's name, dtype, shape
// and values (codes inside the grid, finite positive scales, adaptation ranges), checked on the
// mapped bytes before anything becomes a tensor. load_any_model runs these first, so its torch
// part only copies; fuzz/fuzz_quantized_dir.cpp runs them on arbitrary files.
#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "io/hf_config.h"
#include "io/safetensors.h"

namespace loopq::quant {

struct QuantConfig;  // quant_config.h (its header pulls in ATen; its code does not need torch)

// What of a quantization_config decides which tensors are stored and how.
struct QuantLayout {
  int w_bits = 4;
  bool w_symmetric = true;
  int64_t w_group_size = 0;
  bool act_static_scale = false;
  int64_t act_param_sets = 0, out_affine_sets = 0, state_sets = 0;
  std::vector<std::array<bool, 4>> transform_groups;  // [layer][group]: an input_transform is stored
  std::vector<std::array<bool, 2>> kv_transform_layers;  // [layer][k, v]: a KV transform is stored
};
// The stored name of a layer's KV-cache transform (tensor 0: k, 1: v).
std::string kv_transform_name(int64_t layer, int tensor);
// The stored name of the input transform of `group` (0..3: attn_in, o_in, mlp_in, down_in).
std::string input_transform_name(int64_t layer, int group);
QuantLayout quant_layout_of(const QuantConfig& qc);

// The `quantization_config` block of a config.json's text (`origin` names it in errors): false
// when there is none, else parsed into `out`. Throws loopq::Error on bad JSON or a bad block.
bool parse_quant_config_text(const std::string& text, const std::string& origin, QuantConfig& out);

// QuantConfig::validate against the model's sizes, the selective-rotation layer count and static
// activations having stored scales. Throws loopq::Error prefixed with `dir`.
void check_quant_config(const std::string& dir, const LoopLMConfig& c, const QuantConfig& qc);

// The checkpoint tensor of that name, or nullptr.
using TensorLookup = std::function<const io::TensorInfo*(const std::string& name)>;

// Checks the quantized tensors of every layer (packed codes, scales, zeros, per-loop
// adaptations) and the state-alignment tensors, in the order the loader reads them. Throws
// loopq::Error prefixed with `dir` naming the first bad tensor. Dense tensors (embeddings, norms,
// lm_head, gate) and unexpected names are load_model's business.
void check_quantized_tensors(const std::string& dir, const LoopLMConfig& c, const QuantLayout& q,
                             const TensorLookup& find);

}  // namespace loopq::quant
