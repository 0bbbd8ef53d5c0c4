#pragma once
// HF checkpoint directory <-> OuroModel: config.json + model.safetensors (or shards), tensor
// names as in docs/ouro-architecture.md §8. Every name and shape is checked before use.
#include <ATen/ATen.h>

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "model/ouro_model.h"

namespace loopq {

// What a custom linear loader gets for one layer linear: its HF name stem
// ("model.layers.3.self_attn.q_proj"), its dense shape [out, in], and two callbacks, to read a
// shape-checked fp32 tensor and to claim other tensor names (so they are not "unexpected").
struct LinearLoadRequest {
  std::string stem;
  int64_t layer;
  LinearSite site;
  std::vector<int64_t> shape;
  std::function<bool(const std::string& name)> has;
  std::function<at::Tensor(const std::string& name, const std::vector<int64_t>& shape)> read_f32;
  // Raw bytes of a tensor of dtype `dtype` ("U8", "I8", "F32") and exact shape, copied out.
  std::function<at::Tensor(const std::string& name, const std::string& dtype,
                           const std::vector<int64_t>& shape)> read_raw;
};
using LinearLoader = std::function<LinearPtr(const LinearLoadRequest&)>;

struct LoadOptions {
  at::Device device = at::kCPU;
  LinearLoader linear_loader;            // unset: dense "<stem>.weight"
  std::vector<std::string> extra_names;  // further tensors the caller reads itself
  // Reads further model tensors (e.g. per-loop state alignment) through the same shape-checked
  // fp32 reader, which also marks them as expected.
  std::function<void(OuroWeights&, const std::function<at::Tensor(const std::string&, const std::vector<int64_t>&)>&)>
      extra_loader;
  // Keeps the embedding and the LM head in bf16 when every value is exactly a bf16 (a bf16
  // checkpoint, or fp32 holding bf16 values), else in fp32: half their memory, no value changed.
  // An untied BF16 embedding is read from the file mapping (read-only; resident only where rows
  // are read). Needs head_factory, since DenseLinear computes in fp32 only.
  bool compact_vocab = false;
  // Makes the LM head from its weight; unset: DenseLinear.
  std::function<LinearPtr(at::Tensor weight)> head_factory;
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
