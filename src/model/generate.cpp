#include "model/generate.h"

#include <ATen/core/grad_mode.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>

#include "util/error.h"

namespace loopq {

Sampler::Sampler(const SamplingOptions& options) : opt_(options), rng_(options.seed) {
  if (opt_.temperature < 0) throw Error("temperature must be >= 0");
  if (!(opt_.top_p > 0 && opt_.top_p <= 1)) throw Error("top_p must be in (0, 1]");
}

int64_t Sampler::sample(const at::Tensor& logits_in) {
  at::Tensor logits = logits_in.detach().to(at::kCPU, at::kFloat).contiguous();
  const float* l = logits.data_ptr<float>();
  const int64_t V = logits.numel();
  if (opt_.temperature == 0.0) return std::max_element(l, l + V) - l;

  // Softmax at temperature, then nucleus/top-k filtering over tokens sorted by probability.
  std::vector<int64_t> order(V);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return l[a] > l[b]; });
  const double mx = l[order[0]];
  std::vector<double> p(V);
  double total = 0;
  for (int64_t i = 0; i < V; ++i) total += p[i] = std::exp((l[order[i]] - mx) / opt_.temperature);
  int64_t keep = V;
  if (opt_.top_k > 0) keep = std::min(keep, opt_.top_k);
  double cum = 0;
  for (int64_t i = 0; i < keep; ++i) {
    cum += p[i] / total;
    if (cum >= opt_.top_p) {
      keep = i + 1;
      break;
    }
  }
  double kept = std::accumulate(p.begin(), p.begin() + keep, 0.0);
  double u = std::uniform_real_distribution<double>(0.0, kept)(rng_);
  for (int64_t i = 0; i < keep; ++i) {
    u -= p[i];
    if (u <= 0) return order[i];
  }
  return order[keep - 1];
}

std::vector<int64_t> generate(const OuroModel& model, const std::vector<int64_t>& prompt,
                              const GenerateOptions& opt,
                              const std::function<bool(int64_t)>& on_token, GenerateStats* stats) {
  if (prompt.empty()) throw Error("generate: empty prompt");
  at::NoGradGuard no_grad;  // generation never differentiates (and takes the plain decode step)
  using clock = std::chrono::steady_clock;
  Sampler sampler(opt.sampling);
  const int64_t loops = model.resolve_loops(opt.forward.loops);
  KVCache cache = model.make_cache(1, loops, int64_t(prompt.size()) + opt.max_new_tokens);
  ForwardOptions fwd = opt.forward;
  fwd.loops = loops;
  fwd.last_position_only = true;

  std::vector<int64_t> out;
  int64_t steps = 0;
  auto t0 = clock::now();
  at::Tensor ids = at::tensor(prompt, at::kLong).view({1, -1});
  at::Tensor logits = model.forward(ids, fwd, &cache).logits;
  auto t1 = clock::now();
  for (int64_t i = 0; i < opt.max_new_tokens; ++i) {
    int64_t next = sampler.sample(logits.view({-1}));
    out.push_back(next);
    bool go_on = on_token ? on_token(next) : true;
    if (!go_on || std::find(opt.stop_ids.begin(), opt.stop_ids.end(), next) != opt.stop_ids.end())
      break;
    if (i + 1 == opt.max_new_tokens) break;
    logits = model.forward(at::tensor({next}, at::kLong).view({1, 1}), fwd, &cache).logits;
    ++steps;
  }
  auto t2 = clock::now();
  if (stats) {
    stats->prompt_tokens = int64_t(prompt.size());
    stats->new_tokens = int64_t(out.size());
    stats->decode_steps = steps;
    stats->prefill_seconds = std::chrono::duration<double>(t1 - t0).count();
    stats->decode_seconds = std::chrono::duration<double>(t2 - t1).count();
    stats->kv_bytes_per_token = cache.bytes_per_token();
    stats->kv_bytes = cache.bytes();
    stats->kv_format = cache.codec() ? cache.codec()->describe() : "fp32";
  }
  return out;
}

}  // namespace loopq
