#pragma once
// Batched log-likelihood scoring of (context, continuation) token requests, as
// lm-evaluation-harness's loglikelihood: loglik = sum over continuation tokens of
// log p(token | every token before it), is_greedy = every continuation token is the argmax at
// its position. Scored under every readout (each loop's head and the exit selection) from one
// forward pass.
//
// Batching scheme (chosen for CPUs with few cores, where every FLOP counts):
//   * The model input of a request is (context + continuation)[:-1], left-truncated to the
//     model's context length. lm-eval's encoding makes requests of one doc share exactly the
//     same context tokens. Requests are grouped by context; within a group, a request whose
//     input is a prefix of (or equal to) another's is answered from that one's row: a causal
//     model's logits at a position depend only on the tokens up to it. MMLU's one-token answers
//     " A".." D" thus cost one row per question instead of four.
//   * Groups left with several rows (ARC, HellaSwag, PIQA, OBQA: one context, different
//     continuations) take the prefix path: the contexts of up to `batch_size` groups run once,
//     right-padded, into a KV cache; then for each choice k the k-th continuations of all
//     groups run as one batch against a copy of that cache (the copy shares the context's K/V
//     storage and writes only past it). The first continuation token is scored from the
//     context step's last position. The context is thus computed once, not once per choice.
//   * Every other row (one row per context: WinoGrande, LAMBADA, MMLU, BoolQ; or truncated
//     inputs) is sorted by length, longest first, and packed right-padded with an attention
//     mask into forwards of at most `batch_size` rows and `max_batch_tokens` padded tokens.
//   * Logits are computed only at scored positions, once per position (eval/readout.h).
// Results do not depend on batching beyond float rounding (tested against one request at a
// time, and against a plain forward + log_softmax).
#include <cstdint>
#include <functional>
#include <vector>

#include "eval/request_encoding.h"
#include "model/ouro_model.h"

namespace loopq::eval {

struct ScoreOptions {
  ForwardOptions forward;          // loops, exit mode, hooks
  int64_t batch_size = 32;         // rows per forward
  int64_t max_batch_tokens = 4096; // rows * padded length per forward (at least one row)
  int64_t max_length = 0;          // model context; 0: config max_position_embeddings
  bool share_prefixes = true;      // group by context and dedupe prefix inputs
  bool prefix_cache = true;        // run shared contexts once through a KV cache
  bool per_loop = true;            // score every loop's readout, not only the exit selection
};

struct RequestScore {
  std::vector<double> loglik;   // per readout: loops 1..T (when per_loop), then the exit selection
  std::vector<uint8_t> greedy;  // per readout
  int64_t tokens = 0;           // continuation tokens scored (fewer only after truncation)
};

// Called after every forward with the indices of the requests it completed.
using ScoreProgress = std::function<void(const std::vector<size_t>& finished)>;

// Number of readouts scored: T loops + the exit selection, or only the exit selection.
int64_t num_readouts(const OuroModel& model, const ForwardOptions& options, bool per_loop = true);

std::vector<RequestScore> score_requests(const OuroModel& model,
                                         const std::vector<TokenizedRequest>& requests,
                                         const ScoreOptions& options,
                                         const ScoreProgress& progress = {});

}  // namespace loopq::eval
