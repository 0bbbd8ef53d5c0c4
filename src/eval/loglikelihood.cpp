#include "eval/loglikelihood.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <map>

#include "eval/readout.h"
#include "model/kv_cache.h"
#include "util/error.h"

namespace loopq::eval {
namespace {

// A request as fed to the model: `tokens` = (context + continuation) after left truncation; the
// input is tokens[:-1]; the last `scored` tokens are the targets.
struct Prepared {
  std::vector<int64_t> tokens;
  int64_t scored = 0;
  bool truncated = false;
  int64_t input_length() const { return int64_t(tokens.size()) - 1; }
};

struct Row {
  size_t host;                  // request whose input is the row's input
  std::vector<size_t> members;  // requests answered from this row (host included)
};

struct Group {  // requests with identical context tokens, on the prefix path
  const std::vector<int64_t>* context;
  std::vector<Row> rows;
};

// One scored position of a forward: batch row, column, target token, owning request.
struct Scored {
  int64_t row, col, target;
  size_t request;
};

bool is_prefix(const std::vector<int64_t>& a, int64_t a_len, const std::vector<int64_t>& b,
               int64_t b_len) {
  return a_len <= b_len && std::equal(a.begin(), a.begin() + a_len, b.begin());
}

class Scorer {
 public:
  Scorer(const OuroModel& model, const ScoreOptions& options, std::vector<RequestScore>& out)
      : model_(model), mode_(model.resolve_exit_mode(options.forward)),
        fo_(states_only(options.forward)), hooks_(options.forward.hooks),
        per_loop_(options.per_loop), out_(out) {}

  // Scores `pos` from a forward run and adds each log-prob to its request.
  void accumulate(const ForwardResult& run, const std::vector<Scored>& pos) {
    if (pos.empty()) return;
    std::vector<int64_t> r, c, t;
    for (const auto& p : pos) r.push_back(p.row), c.push_back(p.col), t.push_back(p.target);
    auto opts = at::TensorOptions().dtype(at::kLong);
    TokenScores sc = score_positions(model_, run, mode_, at::tensor(r, opts), at::tensor(c, opts),
                                     at::tensor(t, opts), hooks_, per_loop_);
    auto lp = sc.logprob.accessor<double, 2>();
    auto gr = sc.greedy.accessor<bool, 2>();
    for (size_t k = 0; k < pos.size(); ++k) {
      RequestScore& s = out_[pos[k].request];
      for (size_t q = 0; q < s.loglik.size(); ++q) {
        s.loglik[q] += lp[int64_t(q)][int64_t(k)];
        s.greedy[q] = s.greedy[q] && gr[int64_t(q)][int64_t(k)];
      }
    }
  }

  ForwardResult forward(const at::Tensor& ids, const at::Tensor& mask, KVCache* cache) {
    return model_.forward(ids, fo_, cache, mask);
  }

  const ForwardOptions& forward_options() const { return fo_; }

 private:
  const OuroModel& model_;
  ExitMode mode_;
  ForwardOptions fo_;
  LoopHooks* hooks_;
  bool per_loop_;
  std::vector<RequestScore>& out_;
};

// Right-padded [B, L] ids and mask from token rows.
std::pair<at::Tensor, at::Tensor> pad_rows(const std::vector<const int64_t*>& data,
                                           const std::vector<int64_t>& lengths, int64_t L) {
  const int64_t B = int64_t(data.size());
  at::Tensor ids = at::zeros({B, L}, at::kLong), mask = at::zeros({B, L}, at::kLong);
  auto ia = ids.accessor<int64_t, 2>();
  auto ma = mask.accessor<int64_t, 2>();
  for (int64_t b = 0; b < B; ++b)
    for (int64_t j = 0; j < lengths[size_t(b)]; ++j) ia[b][j] = data[size_t(b)][j], ma[b][j] = 1;
  return {ids, mask};
}

}  // namespace

int64_t num_readouts(const OuroModel& model, const ForwardOptions& options, bool per_loop) {
  return per_loop ? model.resolve_loops(options.loops) + 1 : 1;
}

std::vector<RequestScore> score_requests(const OuroModel& model,
                                         const std::vector<TokenizedRequest>& requests,
                                         const ScoreOptions& options,
                                         const ScoreProgress& progress) {
  const int64_t max_len =
      options.max_length > 0 ? options.max_length : model.config().max_position_embeddings;
  if (max_len < 1) throw Error("score_requests: max_length must be positive");
  const int64_t R = num_readouts(model, options.forward, options.per_loop);
  const int64_t batch_size = std::max<int64_t>(1, options.batch_size);
  const int64_t budget = std::max<int64_t>(1, options.max_batch_tokens);

  std::vector<Prepared> prep(requests.size());
  std::vector<RequestScore> out(requests.size());
  for (size_t i = 0; i < requests.size(); ++i) {
    const auto& q = requests[i];
    if (q.context.empty() || q.continuation.empty())
      throw Error("score_requests: request " + std::to_string(i) + " has no context or continuation");
    std::vector<int64_t> all(q.context);
    all.insert(all.end(), q.continuation.begin(), q.continuation.end());
    if (int64_t(all.size()) > max_len + 1) {
      all.erase(all.begin(), all.end() - (max_len + 1));
      prep[i].truncated = true;
    }
    prep[i].scored = std::min<int64_t>(int64_t(q.continuation.size()), int64_t(all.size()) - 1);
    prep[i].tokens = std::move(all);
    out[i].loglik.assign(size_t(R), 0.0);
    out[i].greedy.assign(size_t(R), 1);
    out[i].tokens = prep[i].scored;
  }
  Scorer scorer(model, options, out);

  // Rows: group by context, longest input first, attach inputs that are prefixes of a row.
  std::vector<Row> rows;     // plain path
  std::vector<Group> groups; // prefix path (points into by_context's keys)
  std::map<std::vector<int64_t>, std::vector<size_t>> by_context;
  if (options.share_prefixes) {
    for (size_t i = 0; i < requests.size(); ++i) by_context[requests[i].context].push_back(i);
    for (auto& [ctx, members] : by_context) {
      std::stable_sort(members.begin(), members.end(), [&](size_t a, size_t b) {
        return prep[a].input_length() > prep[b].input_length();
      });
      std::vector<Row> g;
      bool truncated = false;
      for (size_t i : members) {
        truncated = truncated || prep[i].truncated;
        bool placed = false;
        for (size_t r = 0; r < g.size() && !placed; ++r) {
          const Prepared& h = prep[g[r].host];
          if (is_prefix(prep[i].tokens, prep[i].input_length(), h.tokens, h.input_length())) {
            g[r].members.push_back(i);
            placed = true;
          }
        }
        if (!placed) g.push_back(Row{i, {i}});
      }
      if (options.prefix_cache && g.size() > 1 && !truncated) groups.push_back(Group{&ctx, std::move(g)});
      else rows.insert(rows.end(), g.begin(), g.end());
    }
  } else {
    for (size_t i = 0; i < requests.size(); ++i) rows.push_back(Row{i, {i}});
  }

  // Plain path: whole inputs, right-padded, longest first.
  std::stable_sort(rows.begin(), rows.end(), [&](const Row& a, const Row& b) {
    const int64_t la = prep[a.host].input_length(), lb = prep[b.host].input_length();
    return la != lb ? la > lb : a.host < b.host;
  });
  for (size_t next = 0; next < rows.size();) {
    const int64_t L = prep[rows[next].host].input_length();  // the batch's longest
    size_t end = next + 1;
    while (end < rows.size() && int64_t(end - next) < batch_size &&
           int64_t(end - next + 1) * L <= budget)
      ++end;
    std::vector<const int64_t*> data;
    std::vector<int64_t> lengths;
    std::vector<Scored> pos;
    std::vector<size_t> finished;
    for (size_t b = next; b < end; ++b) {
      const Prepared& h = prep[rows[b].host];
      data.push_back(h.tokens.data());
      lengths.push_back(h.input_length());
      for (size_t m : rows[b].members) {
        const Prepared& p = prep[m];
        for (int64_t j = p.input_length() - p.scored; j < p.input_length(); ++j)
          pos.push_back({int64_t(b - next), j, p.tokens[size_t(j + 1)], m});
        finished.push_back(m);
      }
    }
    auto [ids, mask] = pad_rows(data, lengths, L);
    scorer.accumulate(scorer.forward(ids, mask, nullptr), pos);
    if (progress) progress(finished);
    next = end;
  }

  // Prefix path: contexts once into a KV cache, then the k-th continuation of every group.
  auto suffix_len = [&](const Row& r) { return int64_t(requests[r.host].continuation.size()) - 1; };
  std::stable_sort(groups.begin(), groups.end(), [&](const Group& a, const Group& b) {
    return a.context->size() > b.context->size();
  });
  for (size_t next = 0; next < groups.size();) {
    // Padded tokens of a batch: groups * (longest context + sum over choices of the longest
    // continuation); contexts are sorted, so the first group's is the longest.
    const int64_t C0 = int64_t(groups[next].context->size());
    std::vector<int64_t> longest;  // per choice k
    auto padded_cost = [&](size_t g, int64_t count) {
      std::vector<int64_t> l = longest;
      const auto& grows = groups[g].rows;
      if (l.size() < grows.size()) l.resize(grows.size(), 0);
      for (size_t k = 0; k < grows.size(); ++k) l[k] = std::max(l[k], suffix_len(grows[k]));
      int64_t sum = C0;
      for (int64_t v : l) sum += v;
      return std::make_pair(count * sum, l);
    };
    longest = padded_cost(next, 1).second;
    size_t end = next + 1;
    while (end < groups.size() && int64_t(end - next) < batch_size) {
      auto [cost, l] = padded_cost(end, int64_t(end - next + 1));
      if (cost > budget) break;
      longest = std::move(l);
      ++end;
    }
    const int64_t D = int64_t(end - next);
    size_t K = 0;
    int64_t Cmax = 0, Lmax = 0;
    for (size_t g = next; g < end; ++g) {
      K = std::max(K, groups[g].rows.size());
      Cmax = std::max<int64_t>(Cmax, int64_t(groups[g].context->size()));
      for (const Row& r : groups[g].rows) Lmax = std::max(Lmax, suffix_len(r));
    }
    // Context step: the first continuation token of every request is scored at the context's
    // last position.
    KVCache context_cache = model.make_cache(D, scorer.forward_options().loops, Cmax + Lmax);
    std::vector<const int64_t*> data;
    std::vector<int64_t> lengths;
    std::vector<Scored> pos;
    std::vector<size_t> finished;
    for (size_t g = next; g < end; ++g) {
      const int64_t c = int64_t(groups[g].context->size());
      data.push_back(groups[g].context->data());
      lengths.push_back(c);
      for (const Row& r : groups[g].rows)
        for (size_t m : r.members) {
          pos.push_back({int64_t(g - next), c - 1, requests[m].continuation[0], m});
          finished.push_back(m);
        }
    }
    {
      auto [ids, mask] = pad_rows(data, lengths, Cmax);
      scorer.accumulate(scorer.forward(ids, mask, &context_cache), pos);
    }
    // Choice steps. A copy of the context cache shares its K/V storage; a step writes only at
    // positions past the context and reads what it wrote, so the steps run one after another
    // on copies of the same context.
    for (size_t k = 0; k < K; ++k) {
      data.clear(), lengths.clear(), pos.clear();
      int64_t L = 0;
      for (size_t g = next; g < end; ++g) {
        const auto& grows = groups[g].rows;
        const int64_t len = k < grows.size() ? suffix_len(grows[k]) : 0;
        data.push_back(k < grows.size() ? requests[grows[k].host].continuation.data() : nullptr);
        lengths.push_back(len);
        L = std::max(L, len);
        if (k >= grows.size()) continue;
        for (size_t m : grows[k].members) {
          const auto& cont = requests[m].continuation;
          for (size_t j = 0; j + 1 < cont.size(); ++j)
            pos.push_back({int64_t(g - next), int64_t(j), cont[j + 1], m});
        }
      }
      if (L == 0) continue;
      KVCache step_cache = context_cache;
      auto [ids, mask] = pad_rows(data, lengths, L);
      scorer.accumulate(scorer.forward(ids, mask, &step_cache), pos);
    }
    if (progress) progress(finished);
    next = end;
  }
  return out;
}

}  // namespace loopq::eval
