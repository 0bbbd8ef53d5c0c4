#pragma once
// HF checkpoint directory <-> OuroModel: config.json + model.safetensors (or shards), tensor
// names as in docs/ouro-architecture.md §8. Every name and shape is checked before use.
#include <ATen/ATen.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "model/ouro_model.h"

namespace loopq {

struct LoadOptions {
  at::Device device = at::kCPU;
};

// Loads a model directory. Throws loopq::Error naming the missing/unknown/misshapen tensor.
OuroModel load_model(const std::string& dir, const LoadOptions& options = {});
// Resolves a model path: the directory itself, or the directory of a config.json given directly.
std::string model_dir_of(const std::string& path);

// Writes config.json and model.safetensors (dense weights, `dtype` F32/BF16/F16) into `dir`,
// each file atomically. Copies tokenizer files from `tokenizer_from` when non-empty.
void save_model(const OuroModel& model, const std::string& dir, const std::string& dtype_name,
                const std::string& tokenizer_from = "");

// Every parameter under its HF checkpoint name. The tensors share storage with the model (dense
// linears only), so training can set requires_grad on them and update them in place.
std::vector<std::pair<std::string, at::Tensor>> named_tensors(const OuroModel& model);

// A randomly initialised model (normal(0, init_std) linears/embeddings, unit norms unless
// `random_norms`), deterministic for a seed. Used by `loopq init`, tests and benchmarks.
OuroModel random_model(const LoopLMConfig& config, uint64_t seed, double init_std = 0.02,
                       bool random_norms = false);

}  // namespace loopq
