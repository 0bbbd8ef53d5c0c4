#pragma once
// Small models built inside the tests.
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/core/grad_mode.h>

#include "model/model_io.h"
#include "util/error.h"
#include "model/ouro_model.h"
#include "quant/ptq.h"

namespace loopq::testing {

inline LoopLMConfig tiny_config(int64_t kv_heads = 2, int64_t loops = 4) {
  LoopLMConfig c;
  c.vocab_size = 61;
  c.hidden_size = 32;
  c.num_layers = 2;
  c.num_heads = 4;
  c.num_kv_heads = kv_heads;
  c.head_dim = 8;
  c.intermediate_size = 44;
  c.max_position_embeddings = 256;
  c.rope_theta = 10000.0;
  c.total_ut_steps = loops;
  return c;
}

// Random weights with std large enough that attention is far from uniform and the exit gate
// spreads probability over loops.
inline OuroModel tiny_model(uint64_t seed = 1, int64_t kv_heads = 2) {
  return random_model(tiny_config(kv_heads), seed, /*init_std=*/0.2, /*random_norms=*/true);
}

// Quantization runs without a progress bar, 4 windows per batch.
inline quant::PtqRunOptions quiet() {
  quant::PtqRunOptions run;
  run.progress = false;
  run.batch_size = 4;
  return run;
}

// Seeded random token ids [batch, seq] inside tiny_config()'s vocabulary.
inline at::Tensor random_ids(int64_t batch, int64_t seq, uint64_t seed) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  return at::randint(0, 61, {batch, seq}, gen, at::TensorOptions().dtype(at::kLong));
}

// Every loop's readout logits, stacked [T, B, S, V].
inline at::Tensor stacked_loop_logits(const OuroModel& m, const at::Tensor& ids) {
  at::NoGradGuard g;
  ForwardOptions fo;
  fo.loop_logits = true;
  auto r = m.forward(ids, fo);
  return at::stack(r.loop_logits, 0);
}

inline double max_abs_diff(const at::Tensor& a, const at::Tensor& b) {
  return (a - b).abs().max().item<double>();
}

}  // namespace loopq::testing
