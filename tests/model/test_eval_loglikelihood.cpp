// Batched request scoring (eval/loglikelihood.h) against a hand computation: one plain full
// forward of context + continuation and a log_softmax sum at the continuation positions.
#include <ATen/core/grad_mode.h>
#include <gtest/gtest.h>

#include <cmath>

#include "eval/loglikelihood.h"
#include "eval/readout.h"
#include "test_helpers.h"

using namespace loopq;
using loopq::testing::max_abs_diff;

namespace {

struct Manual {
  std::vector<double> loglik;  // per readout: loops 1..T, then forward()'s logits
  std::vector<bool> greedy;
};

// Independent of the harness: forward the whole input (context + continuation minus the last
// token) with every loop's logits, then sum log_softmax at the continuation positions.
Manual manual_score(const OuroModel& m, const std::vector<int64_t>& ctx,
                    const std::vector<int64_t>& cont, const ForwardOptions& base) {
  std::vector<int64_t> all(ctx);
  all.insert(all.end(), cont.begin(), cont.end());
  std::vector<int64_t> input(all.begin(), all.end() - 1);
  ForwardOptions o = base;
  o.loop_logits = true;
  at::NoGradGuard g;
  ForwardResult r = m.forward(at::tensor(input, at::kLong).view({1, -1}), o);
  std::vector<at::Tensor> readouts;
  for (const auto& l : r.loop_logits) readouts.push_back(l[0]);
  readouts.push_back(r.logits[0]);
  Manual out;
  for (const auto& logits : readouts) {
    at::Tensor lsm = at::log_softmax(logits.to(at::kDouble), -1);
    double ll = 0;
    bool greedy = true;
    for (size_t k = 0; k < cont.size(); ++k) {
      const int64_t pos = int64_t(ctx.size()) - 1 + int64_t(k);
      ll += lsm[pos][cont[k]].item<double>();
      greedy = greedy && logits[pos].argmax().item<int64_t>() == cont[k];
    }
    out.loglik.push_back(ll);
    out.greedy.push_back(greedy);
  }
  return out;
}

std::vector<int64_t> random_ids(int64_t n, int64_t vocab, uint64_t seed) {
  at::Generator gen = at::detail::createCPUGenerator(seed);
  at::Tensor t = at::randint(vocab, {n}, gen, at::TensorOptions().dtype(at::kLong));
  return std::vector<int64_t>(t.data_ptr<int64_t>(), t.data_ptr<int64_t>() + n);
}

// Requests sharing a context with continuations of different lengths, one-token continuations
// (inputs identical: answered from one row), a continuation that extends another (prefix), and
// requests with other contexts.
std::vector<eval::TokenizedRequest> mixed_requests(int64_t V) {
  std::vector<eval::TokenizedRequest> q;
  const auto ctx = random_ids(9, V, 11);
  for (int64_t len : {1, 4, 2, 7}) q.push_back({ctx, random_ids(len, V, 100 + len)});
  q.push_back({ctx, {5}});
  q.push_back({ctx, {17}});
  q.push_back({ctx, {q[1].continuation[0], q[1].continuation[1]}});  // a prefix of request 1
  q.push_back({random_ids(3, V, 12), random_ids(3, V, 13)});
  q.push_back({random_ids(20, V, 14), random_ids(2, V, 15)});
  q.push_back({{7}, random_ids(5, V, 16)});
  // More shared-context groups with other context lengths and choice counts, so the prefix
  // path batches groups of unequal contexts (padding inside the KV cache) and choice lists.
  const auto ctx2 = random_ids(4, V, 17), ctx3 = random_ids(15, V, 18);
  for (int64_t len : {3, 6, 1}) q.push_back({ctx2, random_ids(len, V, 200 + len)});
  for (int64_t len : {2, 5}) q.push_back({ctx3, random_ids(len, V, 300 + len)});
  q.push_back({{9}, random_ids(2, V, 19)});
  q.push_back({{9}, random_ids(3, V, 20)});
  return q;
}

void expect_matches_manual(const OuroModel& m, const std::vector<eval::TokenizedRequest>& q,
                           const std::vector<eval::RequestScore>& got, const ForwardOptions& fo) {
  ASSERT_EQ(got.size(), q.size());
  for (size_t i = 0; i < q.size(); ++i) {
    Manual want = manual_score(m, q[i].context, q[i].continuation, fo);
    ASSERT_EQ(got[i].loglik.size(), want.loglik.size());
    EXPECT_EQ(got[i].tokens, int64_t(q[i].continuation.size()));
    for (size_t r = 0; r < want.loglik.size(); ++r) {
      EXPECT_NEAR(got[i].loglik[r], want.loglik[r], 1e-4) << "request " << i << " readout " << r;
      EXPECT_EQ(bool(got[i].greedy[r]), want.greedy[r]) << "request " << i << " readout " << r;
    }
  }
}

}  // namespace

TEST(EvalLoglikelihoodTest, BatchedScoringMatchesManualLogSoftmax) {
  OuroModel m = loopq::testing::tiny_model(3);
  auto q = mixed_requests(m.config().vocab_size);
  eval::ScoreOptions so;
  so.batch_size = 3;  // several forwards, with padding inside each
  size_t finished = 0;
  auto got = eval::score_requests(m, q, so, [&](const std::vector<size_t>& f) { finished += f.size(); });
  EXPECT_EQ(finished, q.size());
  expect_matches_manual(m, q, got, so.forward);
}

TEST(EvalLoglikelihoodTest, EveryBatchingPathMatchesManual) {
  OuroModel m = loopq::testing::tiny_model(12);
  auto q = mixed_requests(m.config().vocab_size);
  for (int variant = 0; variant < 4; ++variant) {
    eval::ScoreOptions so;
    so.prefix_cache = variant != 1;        // 1: shared contexts as whole padded rows
    so.share_prefixes = variant != 2;      // 2: one row per request
    so.batch_size = variant == 3 ? 1 : 8;  // 3: one group / row per forward
    so.max_batch_tokens = variant == 0 ? 40 : 4096;  // 0: the token budget splits batches
    auto got = eval::score_requests(m, q, so);
    SCOPED_TRACE(variant);
    expect_matches_manual(m, q, got, so.forward);
  }
}

TEST(EvalLoglikelihoodTest, ExplicitExitModesAndFewerLoops) {
  OuroModel m = loopq::testing::tiny_model(4);
  auto q = mixed_requests(m.config().vocab_size);
  for (const char* mode : {"last", "step:1", "cdf:0.5", "expected"}) {
    eval::ScoreOptions so;
    so.forward.exit = parse_exit_mode(mode);
    so.forward.loops = 3;
    auto got = eval::score_requests(m, q, so);
    ASSERT_EQ(got[0].loglik.size(), 4u) << mode;
    expect_matches_manual(m, q, got, so.forward);
  }
}

TEST(EvalLoglikelihoodTest, BatchedEqualsOneRequestAtATime) {
  OuroModel m = loopq::testing::tiny_model(5);
  auto q = mixed_requests(m.config().vocab_size);
  eval::ScoreOptions batched;
  batched.batch_size = 64;
  auto all = eval::score_requests(m, q, batched);
  for (size_t i = 0; i < q.size(); ++i) {
    eval::ScoreOptions alone;
    alone.share_prefixes = false;
    alone.batch_size = 1;
    auto one = eval::score_requests(m, {q[i]}, alone);
    for (size_t r = 0; r < one[0].loglik.size(); ++r) {
      EXPECT_NEAR(all[i].loglik[r], one[0].loglik[r], 1e-4) << i;
      EXPECT_EQ(all[i].greedy[r], one[0].greedy[r]) << i;
    }
  }
}

TEST(EvalLoglikelihoodTest, GreedyContinuationIsDetected) {
  OuroModel m = loopq::testing::tiny_model(6);
  ForwardOptions fo;
  fo.exit = parse_exit_mode("last");
  // Greedy-decode 4 tokens after a context with plain forwards.
  std::vector<int64_t> seq = random_ids(6, m.config().vocab_size, 21);
  const size_t ctx_len = seq.size();
  for (int k = 0; k < 4; ++k) {
    at::NoGradGuard g;
    ForwardResult r = m.forward(at::tensor(seq, at::kLong).view({1, -1}), fo);
    seq.push_back(r.logits[0][int64_t(seq.size()) - 1].argmax().item<int64_t>());
  }
  eval::TokenizedRequest greedy{{seq.begin(), seq.begin() + ctx_len}, {seq.begin() + ctx_len, seq.end()}};
  eval::TokenizedRequest other = greedy;
  other.continuation[2] = (other.continuation[2] + 1) % m.config().vocab_size;
  eval::ScoreOptions so;
  so.forward = fo;
  auto got = eval::score_requests(m, {greedy, other}, so);
  EXPECT_TRUE(got[0].greedy.back());
  EXPECT_FALSE(got[1].greedy.back());
  EXPECT_GT(got[0].loglik.back(), got[1].loglik.back());
  expect_matches_manual(m, {greedy, other}, got, fo);
}

TEST(EvalLoglikelihoodTest, LeftTruncationToMaxLength) {
  OuroModel m = loopq::testing::tiny_model(7);
  eval::TokenizedRequest q{random_ids(30, m.config().vocab_size, 31), random_ids(4, m.config().vocab_size, 32)};
  eval::ScoreOptions so;
  so.max_length = 10;  // input = the last 10 tokens of context + continuation before the last
  auto got = eval::score_requests(m, {q}, so);
  std::vector<int64_t> kept_ctx(q.context.end() - 7, q.context.end());  // 7 + 4 = 11 = max + 1
  Manual want = manual_score(m, kept_ctx, q.continuation, so.forward);
  for (size_t r = 0; r < want.loglik.size(); ++r) EXPECT_NEAR(got[0].loglik[r], want.loglik[r], 1e-4);
  EXPECT_EQ(got[0].tokens, 4);
}

TEST(EvalLoglikelihoodTest, ReadoutLogitsEqualForwardLogitsForEveryExitMode) {
  OuroModel m = loopq::testing::tiny_model(8);
  auto ids = at::tensor(random_ids(2 * 11, m.config().vocab_size, 41), at::kLong).view({2, 11});
  at::Tensor rows = at::tensor(std::vector<int64_t>{0, 0, 1, 1, 1}, at::kLong);
  at::Tensor cols = at::tensor(std::vector<int64_t>{0, 10, 3, 4, 9}, at::kLong);
  for (const char* mode : {"", "last", "step:0", "step:2", "cdf:0.3", "cdf:1", "expected"}) {
    ForwardOptions fo;
    if (*mode) fo.exit = parse_exit_mode(mode);
    fo.loop_logits = true;
    at::NoGradGuard g;
    ForwardResult full = m.forward(ids, fo);
    ForwardResult states = m.forward(ids, eval::states_only(fo));
    auto got = eval::readout_logits(m, states, m.resolve_exit_mode(fo), rows, cols);
    ASSERT_EQ(got.size(), full.loop_logits.size() + 1);
    for (int64_t k = 0; k < rows.size(0); ++k) {
      const int64_t b = rows[k].item<int64_t>(), s = cols[k].item<int64_t>();
      for (size_t t = 0; t < full.loop_logits.size(); ++t)
        EXPECT_LT(max_abs_diff(got[t][k], full.loop_logits[t][b][s]), 1e-5) << mode;
      EXPECT_LT(max_abs_diff(got.back()[k], full.logits[b][s]), 1e-5) << mode;
    }
  }
}

TEST(EvalLoglikelihoodTest, ExitModeResolutionErrorsLikeForward) {
  OuroModel m = loopq::testing::tiny_model(9);
  ForwardOptions fo;
  fo.exit = parse_exit_mode("step:7");
  EXPECT_THROW(m.resolve_exit_mode(fo), Error);
  OuroModel no_gate = loopq::testing::tiny_model(9);
  no_gate.weights().exit_gate_weight = at::Tensor();
  no_gate.weights().exit_gate_bias = at::Tensor();
  fo.exit = parse_exit_mode("expected");
  EXPECT_THROW(no_gate.resolve_exit_mode(fo), Error);
  fo.exit.reset();
  EXPECT_EQ(no_gate.resolve_exit_mode(fo).kind, ExitMode::Last);
}

TEST(EvalLoglikelihoodTest, RejectsEmptyRequests) {
  OuroModel m = loopq::testing::tiny_model(10);
  EXPECT_THROW(eval::score_requests(m, {{{1, 2}, {}}}, {}), Error);
  EXPECT_THROW(eval::score_requests(m, {{{}, {3}}}, {}), Error);
}

TEST(EvalLoglikelihoodTest, UniformLogitsTiesGoToTheFirstToken) {
  // A zero LM head makes every logit equal: log p = -log V, and the greedy token is id 0 (the
  // first maximal value), as torch's argmax in lm-evaluation-harness picks it.
  OuroModel m = loopq::testing::tiny_model(11);
  const int64_t V = m.config().vocab_size;
  m.weights().lm_head = std::make_shared<DenseLinear>(at::zeros({V, m.config().hidden_size}));
  auto got = eval::score_requests(m, {{{3, 4}, {0, 0}}, {{3, 4}, {0, 5}}}, {});
  for (size_t r = 0; r < got[0].loglik.size(); ++r) {
    EXPECT_NEAR(got[0].loglik[r], -2 * std::log(double(V)), 1e-9);
    EXPECT_TRUE(got[0].greedy[r]);
    EXPECT_FALSE(got[1].greedy[r]);
  }
}

TEST(EvalLoglikelihoodTest, ExitOnlyScoringEqualsTheLastReadout) {
  OuroModel m = loopq::testing::tiny_model(13);
  auto q = mixed_requests(m.config().vocab_size);
  for (const char* mode : {"", "step:1", "cdf:0.4", "expected"}) {
    eval::ScoreOptions all, exit_only;
    if (*mode) all.forward.exit = exit_only.forward.exit = parse_exit_mode(mode);
    exit_only.per_loop = false;
    auto a = eval::score_requests(m, q, all);
    auto b = eval::score_requests(m, q, exit_only);
    for (size_t i = 0; i < q.size(); ++i) {
      ASSERT_EQ(b[i].loglik.size(), 1u);
      EXPECT_NEAR(b[i].loglik[0], a[i].loglik.back(), 1e-9) << mode;
      EXPECT_EQ(b[i].greedy[0], a[i].greedy.back()) << mode;
    }
  }
}
