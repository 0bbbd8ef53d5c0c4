#pragma once
// Perplexity as PTQ papers measure it (GPTQ, QuaRot): the whole text tokenized at once, cut into
// non-overlapping windows of `seqlen` tokens (the incomplete tail is dropped), each window
// scored on its own from position 0 with no context carried over. Token 0 of a window is not
// scored; tokens 1..seqlen-1 are, each given everything before it in its window.
//
//   ppl           = exp(sum NLL / tokens), NLL in nats, log-softmax in float64
//   bits_per_byte = (sum NLL / ln 2) / bytes, where bytes = the UTF-8 bytes the scored tokens
//                   decode to (each token's raw bytes, summed over scored positions only)
//   top1          = fraction of scored tokens whose target is the readout's argmax (first max)
// All are reported for every readout (each loop's LM head and the exit selection) from one
// forward per window.
#include <cstdint>
#include <functional>
#include <vector>

#include "model/ouro_model.h"

namespace loopq::eval {

struct PerplexityOptions {
  ForwardOptions forward;  // loops, exit mode, hooks
  int64_t seqlen = 2048;
  int64_t nsamples = 0;    // 0: every full window
  bool per_loop = true;    // also every loop's readout (else only the exit selection)
};

struct PerplexityResult {
  int64_t loops = 0;       // T; readouts: loops 1..T (when per-loop), then the exit selection
  int64_t seqlen = 0;
  int64_t windows = 0;
  int64_t tokens = 0;      // scored tokens = windows * (seqlen - 1)
  int64_t bytes = 0;       // UTF-8 bytes of the scored tokens
  std::vector<double> nll; // per readout: summed NLL in nats
  std::vector<int64_t> top1;  // per readout: scored tokens whose target is the argmax

  double ppl(size_t readout) const;
  double bits_per_byte(size_t readout) const;
  double top1_accuracy(size_t readout) const;  // next-token accuracy (fraction)
  size_t exit_readout() const { return nll.size() - 1; }
  bool has_per_loop() const { return nll.size() > 1; }
};

// Number of full windows of `seqlen` in `num_tokens`, capped by nsamples when > 0.
int64_t count_windows(int64_t num_tokens, int64_t seqlen, int64_t nsamples);

// `token_bytes(id)`: how many UTF-8 bytes token `id` decodes to. `progress(done, total)` runs
// after every window. Throws loopq::Error for seqlen < 2 or a text shorter than one window.
PerplexityResult evaluate_perplexity(const OuroModel& model, const std::vector<int64_t>& ids,
                                     const std::function<int64_t(int64_t)>& token_bytes,
                                     const PerplexityOptions& options,
                                     const std::function<void(int64_t, int64_t)>& progress = {});

}  // namespace loopq::eval
