#include "eval/perplexity.h"

#include <ATen/ATen.h>

#include <cmath>

#include "eval/readout.h"
#include "util/error.h"

namespace loopq::eval {

double PerplexityResult::ppl(size_t r) const {
  return tokens > 0 ? std::exp(nll.at(r) / double(tokens)) : 0.0;
}

double PerplexityResult::bits_per_byte(size_t r) const {
  return bytes > 0 ? nll.at(r) / std::log(2.0) / double(bytes) : 0.0;
}

double PerplexityResult::top1_accuracy(size_t r) const {
  return tokens > 0 ? double(top1.at(r)) / double(tokens) : 0.0;
}

int64_t count_windows(int64_t num_tokens, int64_t seqlen, int64_t nsamples) {
  if (seqlen < 1) return 0;
  int64_t n = num_tokens / seqlen;
  return nsamples > 0 ? std::min(n, nsamples) : n;
}

PerplexityResult evaluate_perplexity(const OuroModel& model, const std::vector<int64_t>& ids,
                                     const std::function<int64_t(int64_t)>& token_bytes,
                                     const PerplexityOptions& options,
                                     const std::function<void(int64_t, int64_t)>& progress) {
  const int64_t S = options.seqlen;
  if (S < 2) throw Error("--seqlen must be at least 2, got " + std::to_string(S));
  if (int64_t(ids.size()) < S)
    throw Error("the text has " + std::to_string(ids.size()) +
                " tokens, fewer than one window of --seqlen " + std::to_string(S));
  const ExitMode mode = model.resolve_exit_mode(options.forward);
  const ForwardOptions fo = states_only(options.forward);

  PerplexityResult res;
  res.loops = model.resolve_loops(options.forward.loops);
  res.seqlen = S;
  res.windows = count_windows(int64_t(ids.size()), S, options.nsamples);
  res.nll.assign(options.per_loop ? size_t(res.loops + 1) : 1, 0.0);
  res.top1.assign(res.nll.size(), 0);

  auto opts = at::TensorOptions().dtype(at::kLong);
  const at::Tensor rows = at::zeros({S - 1}, opts);
  const at::Tensor cols = at::arange(0, S - 1, opts);
  for (int64_t w = 0; w < res.windows; ++w) {
    const auto begin = ids.begin() + w * S;
    std::vector<int64_t> window(begin, begin + S);
    ForwardResult run = model.forward(at::tensor(window, opts).view({1, S}), fo);
    at::Tensor targets = at::tensor(std::vector<int64_t>(window.begin() + 1, window.end()), opts);
    TokenScores sc =
        score_positions(model, run, mode, rows, cols, targets, options.forward.hooks, options.per_loop);
    at::Tensor sums = sc.logprob.sum(1);  // [R]
    const at::Tensor hits = sc.greedy.sum(1);  // [R]
    for (size_t r = 0; r < res.nll.size(); ++r) {
      res.nll[r] -= sums[int64_t(r)].item<double>();
      res.top1[r] += hits[int64_t(r)].item<int64_t>();
    }
    for (int64_t j = 1; j < S; ++j) res.bytes += token_bytes(window[size_t(j)]);
    res.tokens += S - 1;
    if (progress) progress(w + 1, res.windows);
  }
  for (double v : res.nll)
    if (!std::isfinite(v)) throw Error("perplexity: non-finite log-likelihood (model produced NaN/inf logits)");
  return res;
}

}  // namespace loopq::eval
