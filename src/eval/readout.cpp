#include "eval/readout.h"

#include <algorithm>

#include "util/error.h"

namespace loopq::eval {

ForwardOptions states_only(const ForwardOptions& options) {
  ForwardOptions o = options;
  o.compute_logits = false;
  o.loop_logits = false;
  o.last_position_only = false;
  return o;
}

std::vector<at::Tensor> readout_logits(const OuroModel& model, const ForwardResult& run,
                                       const ExitMode& mode, const at::Tensor& rows,
                                       const at::Tensor& cols, LoopHooks* hooks, bool per_loop) {
  const int64_t T = int64_t(run.states.size());
  if (T == 0) throw Error("readout_logits: the forward run kept no states");
  const int64_t B = run.states[0].size(0), S = run.states[0].size(1), d = run.states[0].size(2);
  const at::Tensor flat = (rows.to(at::kLong) * S + cols.to(at::kLong)).to(run.states[0].device());
  std::vector<at::Tensor> states(static_cast<size_t>(T)), loop(static_cast<size_t>(T));
  for (int64_t t = 0; t < T; ++t) states[t] = run.states[t].reshape({B * S, d}).index_select(0, flat);
  at::Tensor probs;
  if (mode.kind == ExitMode::Cdf || mode.kind == ExitMode::Expected)
    probs = run.exit_probs.reshape({T, B * S}).index_select(1, flat);  // [T, M]
  // The selection itself is forward()'s own code, applied to the gathered positions; `loop`
  // caches the per-loop readouts it computes.
  at::Tensor exit = model.exit_logits(states, probs, mode, hooks, loop);
  std::vector<at::Tensor> out;
  if (per_loop)
    for (int64_t t = 0; t < T; ++t) {
      if (!loop[t].defined()) loop[t] = model.readout(states[t], int(t), hooks);
      out.push_back(loop[t]);
    }
  out.push_back(exit);
  return out;
}

TokenScores score_positions(const OuroModel& model, const ForwardResult& run, const ExitMode& mode,
                            const at::Tensor& rows, const at::Tensor& cols,
                            const at::Tensor& targets, LoopHooks* hooks, bool per_loop) {
  const int64_t T = int64_t(run.states.size()), R = per_loop ? T + 1 : 1;
  const int64_t M = rows.size(0);
  if (T == 0) throw Error("score_positions: the forward run kept no states");
  if (cols.size(0) != M || targets.size(0) != M)
    throw Error("score_positions: rows, cols and targets must have the same length");
  TokenScores s;
  s.logprob = at::empty({R, M}, at::TensorOptions().dtype(at::kDouble));
  s.greedy = at::empty({R, M}, at::TensorOptions().dtype(at::kBool));
  if (M == 0) return s;
  // Several targets at one position (choices sharing a context) need its logits only once.
  const int64_t S = run.states[0].size(1);
  const at::Tensor tg = targets.to(at::kCPU, at::kLong);
  at::Tensor uniq, inverse;
  std::tie(uniq, inverse, std::ignore) =
      at::_unique2(rows.to(at::kCPU, at::kLong) * S + cols.to(at::kCPU, at::kLong), true, true, false);
  const int64_t U = uniq.size(0);
  const at::Tensor urows = uniq.div(S, "floor"), ucols = uniq.remainder(S);
  // Bound the per-chunk logits to ~2M elements (8 MB) per readout: small enough that glibc
  // serves them from the heap instead of fresh (page-faulting) mmaps.
  const int64_t V = model.config().vocab_size;
  const int64_t chunk = std::max<int64_t>(16, (int64_t(1) << 21) / std::max<int64_t>(V, 1));
  const at::Device dev = run.states[0].device();
  for (int64_t lo = 0; lo < U; lo += chunk) {
    const int64_t n = std::min(chunk, U - lo);
    // The targets whose position falls in this chunk, and their row in the chunk's logits.
    const at::Tensor which = ((inverse >= lo).logical_and(inverse < lo + n)).nonzero().squeeze(1);
    const at::Tensor local = (inverse.index_select(0, which) - lo).to(dev);
    const at::Tensor tgt = tg.index_select(0, which).to(dev);
    std::vector<at::Tensor> logits =
        readout_logits(model, run, mode, urows.narrow(0, lo, n), ucols.narrow(0, lo, n), hooks, per_loop);
    for (int64_t r = 0; r < R; ++r) {
      bool reused = false;  // the exit readout often is one of the loops' (same tensor)
      for (int64_t q = 0; q < r && !reused; ++q) {
        if (!logits[r].is_same(logits[q])) continue;
        s.logprob[r].index_copy_(0, which, s.logprob[q].index_select(0, which));
        s.greedy[r].index_copy_(0, which, s.greedy[q].index_select(0, which));
        reused = true;
      }
      if (reused) continue;
      // log p = x_t - max - log(sum exp(x - max)): shifted exponentials in fp32 (all <= 1),
      // their sum and everything after it in fp64.
      const at::Tensor x = logits[r].to(at::kFloat).contiguous();
      auto [mx, arg] = x.max(1);  // indices: the first maximal value, as torch's argmax
      const at::Tensor log_sum = at::exp(x - mx.unsqueeze(1)).sum({1}, false, at::kDouble).log();
      const at::Tensor xt = x.view({-1}).index_select(0, local * x.size(1) + tgt);
      const at::Tensor lp = (xt - mx.index_select(0, local)).to(at::kDouble) - log_sum.index_select(0, local);
      const at::Tensor greedy = arg.index_select(0, local) == tgt;
      s.logprob[r].index_copy_(0, which, lp.cpu());
      s.greedy[r].index_copy_(0, which, greedy.cpu());
    }
  }
  return s;
}

}  // namespace loopq::eval
