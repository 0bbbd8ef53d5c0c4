#pragma once
// Log-probabilities of chosen tokens under every readout of a looped LM, computed only at the
// positions an evaluator needs (the LM head over every position of every loop would dominate
// the cost for large vocabularies).
//
// Readouts, in order: r = 0..T-1 is the LM head on the normed state after loop r+1; r = T is
// the exit-mode selection, i.e. what OuroModel::forward returns as `logits` (same mode
// resolution and fall-backs, same arithmetic). With per_loop = false only the exit selection
// is computed (R = 1), which skips T LM-head products per position.
#include <ATen/ATen.h>

#include <vector>

#include "model/ouro_model.h"

namespace loopq::eval {

// Options for the forward runs whose states are scored: no logits, states kept.
ForwardOptions states_only(const ForwardOptions& options);

struct TokenScores {
  at::Tensor logprob;  // [R, M] float64: log p(target) under each readout (max-shifted, sum in fp64)
  at::Tensor greedy;   // [R, M] bool: target == argmax of the readout's logits
};

// `run` comes from model.forward(ids [B, S], states_only(options), ...). rows/cols [M] int64
// pick positions (batch, sequence); targets [M] int64 are the tokens scored there. Positions are
// processed in chunks so memory stays bounded for long inputs and large vocabularies.
TokenScores score_positions(const OuroModel& model, const ForwardResult& run, const ExitMode& mode,
                            const at::Tensor& rows, const at::Tensor& cols,
                            const at::Tensor& targets, LoopHooks* hooks = nullptr,
                            bool per_loop = true);

// The R readout logits [M, V] at the given positions (float32, as forward() computes them).
// A readout equal to an earlier one is returned as the same tensor (Tensor::is_same).
std::vector<at::Tensor> readout_logits(const OuroModel& model, const ForwardResult& run,
                                       const ExitMode& mode, const at::Tensor& rows,
                                       const at::Tensor& cols, LoopHooks* hooks = nullptr,
                                       bool per_loop = true);

}  // namespace loopq::eval
