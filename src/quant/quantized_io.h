#pragma once
// Quantized model directories: config.json with a `quantization_config` block, model.safetensors
// with packed integer weights (int4: two per byte, even column in the low nibble; 5-8 bits: int8),
// fp32 scales (and zeros for asymmetric grids) per row or group, FP embeddings/norms/lm_head/gate
// (embedding and head in bf16 when that is exact, else fp32), and the tokenizer. Rotations are rebuilt from the recorded seed.
#include <string>

#include "model/model_io.h"
#include "model/ouro_model.h"
#include "quant/quant_config.h"

namespace loopq::quant {

// Writes the quantized model into `dir` atomically: everything goes to a sibling temporary
// directory that is renamed into place at the end. `dir` must not exist (or be empty).
void save_quantized_model(const OuroModel& model, const QuantConfig& cfg, const std::string& dir,
                          const std::string& tokenizer_from);

// How a quantized model's linears run: Reference is the fake-quant path (dequantized fp32
// weights, QuantLinear); Packed keeps the weights packed and computes in integers (PackedLinear).
enum class Kernels { Reference, Packed };
Kernels parse_kernels(const std::string& name);  // "packed" | "reference"; throws loopq::Error

// Why the packed kernels cannot run this quantization (empty when they can), for the one-line
// notice of a fallback to the reference path.
std::string why_not_packed(const QuantConfig& cfg);

// Loads a dense or a quantized model directory (dispatching on `quantization_config`). With
// Kernels::Packed every linear is packed as it is read (no fp32 weight copy is kept); the caller
// checks why_not_packed first (a config the kernels cannot run throws loopq::Error here).
OuroModel load_any_model(const std::string& path, const LoadOptions& options = {},
                         Kernels kernels = Kernels::Reference);

// Bytes of a quantized model in this format, computed from its shape and quantization config:
// `model` counts every stored tensor (packed codes, scales, zeros, FP embeddings/norms/head/gate
// and the adaptations), `adaptation` only the per-loop adaptation tensors.
struct FormatBytes {
  int64_t model = 0, adaptation = 0;
  int64_t transform = 0;  // the dense input transforms (part of model, shared by all loops)
};
FormatBytes quantized_format_bytes(const LoopLMConfig& config, const QuantConfig& cfg);
// Whether a stored tensor name is an adaptation (separate from the shared integer backbone).
bool is_adaptation_tensor(const std::string& name);

// The quantization_config of a model directory, if it has one.
bool read_quant_config(const std::string& path, QuantConfig& out);

}  // namespace loopq::quant
