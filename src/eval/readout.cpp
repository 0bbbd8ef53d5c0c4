#include "eval/readout.h"

#include <algorithm>

#include "util/error.h"

namespace loopq::eval {

ExitMode resolve_exit_mode(const OuroModel& model, const ForwardOptions& options) {
  const int64_t T = model.resolve_loops(options.loops);
  ExitMode mode = options.exit ? *options.exit : default_exit_mode(model.config(), T);
  if ((mode.kind == ExitMode::Cdf || mode.kind == ExitMode::Expected) && !model.has_exit_gate()) {
    if (options.exit) throw Error("exit mode " + mode.to_string() + " needs the early_exit_gate tensors");
    mode.kind = ExitMode::Last;
  }
  if (mode.kind == ExitMode::Step && mode.step >= T) {
    if (options.exit)
      throw Error("exit step " + std::to_string(mode.step) + " out of range for " +
                  std::to_string(T) + " loops");
    mode.kind = model.has_exit_gate() ? ExitMode::Cdf : ExitMode::Last;
  }
  return mode;
}

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
  const int64_t M = flat.size(0);
  std::vector<at::Tensor> states(static_cast<size_t>(T)), loop(static_cast<size_t>(T));
  auto state = [&](int64_t t) -> const at::Tensor& {
    if (!states[t].defined()) states[t] = run.states[t].reshape({B * S, d}).index_select(0, flat);
    return states[t];
  };
  auto loop_logits = [&](int64_t t) -> const at::Tensor& {
    if (!loop[t].defined()) loop[t] = model.readout(state(t), int(t), hooks);
    return loop[t];
  };
  at::Tensor exit;
  switch (mode.kind) {
    case ExitMode::Last:
      exit = loop_logits(T - 1);
      break;
    case ExitMode::Step:
      exit = loop_logits(mode.step);
      break;
    case ExitMode::Cdf: {
      // As forward(): the first loop whose cumulative exit probability reaches q (else the
      // last), read out through the final loop's head.
      at::Tensor probs = run.exit_probs.reshape({T, B * S}).index_select(1, flat);  // [T, M]
      at::Tensor reached = probs.cumsum(0) >= mode.threshold;
      reached[T - 1].fill_(true);
      at::Tensor first = (reached.to(at::kLong).cumsum(0) == 0).sum(0);  // [M]
      if ((first == T - 1).all().item<bool>()) {
        // Every position exits at the last loop (e.g. the default q = 1): the chosen state is
        // the last state and its readout is exactly the last loop's.
        exit = loop_logits(T - 1);
        break;
      }
      std::vector<at::Tensor> all;
      for (int64_t t = 0; t < T; ++t) all.push_back(state(t));
      at::Tensor stacked = at::stack(all, 0);  // [T, M, d]
      at::Tensor index = first.view({1, M, 1}).expand({1, M, d});
      exit = model.readout(stacked.gather(0, index).squeeze(0), int(T - 1), hooks);
      break;
    }
    case ExitMode::Expected: {
      at::Tensor probs = run.exit_probs.reshape({T, B * S}).index_select(1, flat);  // [T, M]
      exit = at::zeros_like(loop_logits(0));
      for (int64_t t = 0; t < T; ++t) exit += probs[t].unsqueeze(-1) * loop_logits(t);
      break;
    }
  }
  std::vector<at::Tensor> out;
  if (per_loop)
    for (int64_t t = 0; t < T; ++t) out.push_back(loop_logits(t));
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
