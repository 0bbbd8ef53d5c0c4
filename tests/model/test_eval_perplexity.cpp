// Perplexity (eval/perplexity.h): a closed-form case (uniform logits give ppl == V exactly) and
// a hand computation of windowed NLL on a random model.
#include <ATen/core/grad_mode.h>
#include <gtest/gtest.h>

#include <cmath>

#include "eval/perplexity.h"
#include "test_helpers.h"

using namespace loopq;

namespace {

std::vector<int64_t> random_ids(int64_t n, int64_t vocab, uint64_t seed) {
  at::Generator gen = at::detail::createCPUGenerator(seed);
  at::Tensor t = at::randint(vocab, {n}, gen, at::TensorOptions().dtype(at::kLong));
  return std::vector<int64_t>(t.data_ptr<int64_t>(), t.data_ptr<int64_t>() + n);
}

int64_t fake_bytes(int64_t id) { return 1 + id % 3; }

}  // namespace

TEST(EvalPerplexityTest, ZeroLmHeadGivesUniformPerplexityEqualToVocab) {
  OuroModel m = loopq::testing::tiny_model(2);
  const int64_t V = m.config().vocab_size, d = m.config().hidden_size;
  m.weights().lm_head = std::make_shared<DenseLinear>(at::zeros({V, d}));
  const int64_t S = 16;
  std::vector<int64_t> ids = random_ids(3 * S + 5, V, 3);  // 3 full windows + a dropped tail
  eval::PerplexityOptions po;
  po.seqlen = S;
  int64_t calls = 0;
  auto r = eval::evaluate_perplexity(m, ids, fake_bytes, po, [&](int64_t done, int64_t total) {
    EXPECT_EQ(total, 3);
    EXPECT_EQ(done, ++calls);
  });
  EXPECT_EQ(r.windows, 3);
  EXPECT_EQ(r.tokens, 3 * (S - 1));
  int64_t bytes = 0;  // token 0 of each window and the tail are not scored
  for (int64_t w = 0; w < 3; ++w)
    for (int64_t j = 1; j < S; ++j) bytes += fake_bytes(ids[size_t(w * S + j)]);
  EXPECT_EQ(r.bytes, bytes);
  ASSERT_EQ(r.nll.size(), size_t(m.config().total_ut_steps + 1));
  for (size_t k = 0; k < r.nll.size(); ++k) {
    EXPECT_NEAR(r.ppl(k), double(V), 1e-9 * V);
    EXPECT_NEAR(r.bits_per_byte(k), std::log2(double(V)) * double(r.tokens) / double(bytes), 1e-12);
  }
}

TEST(EvalPerplexityTest, MatchesManualWindowedNll) {
  OuroModel m = loopq::testing::tiny_model(4);
  const int64_t V = m.config().vocab_size, S = 12;
  std::vector<int64_t> ids = random_ids(5 * S, V, 5);
  eval::PerplexityOptions po;
  po.seqlen = S;
  po.nsamples = 2;  // only the first two windows
  auto r = eval::evaluate_perplexity(m, ids, fake_bytes, po);
  EXPECT_EQ(r.windows, 2);
  const int64_t T = m.config().total_ut_steps;
  std::vector<double> nll(size_t(T + 1), 0.0);
  for (int64_t w = 0; w < 2; ++w) {
    ForwardOptions fo;
    fo.loop_logits = true;
    at::NoGradGuard g;
    at::Tensor x = at::tensor(std::vector<int64_t>(ids.begin() + w * S, ids.begin() + (w + 1) * S), at::kLong);
    ForwardResult res = m.forward(x.view({1, S}), fo);
    std::vector<at::Tensor> readouts(res.loop_logits.begin(), res.loop_logits.end());
    readouts.push_back(res.logits);
    for (size_t k = 0; k < readouts.size(); ++k) {
      at::Tensor lsm = at::log_softmax(readouts[k][0].to(at::kDouble), -1);
      for (int64_t j = 1; j < S; ++j) nll[k] -= lsm[j - 1][x[j].item<int64_t>()].item<double>();
    }
  }
  for (size_t k = 0; k < nll.size(); ++k) {
    EXPECT_NEAR(r.nll[k], nll[k], 1e-6 * std::abs(nll[k]));
    EXPECT_NEAR(r.ppl(k), std::exp(nll[k] / double(2 * (S - 1))), 1e-6 * r.ppl(k));
  }
  // Looping changes the prediction: readouts differ on a random model.
  EXPECT_NE(r.nll[0], r.nll[size_t(T - 1)]);
  // Exit-only scoring gives the same main number.
  po.per_loop = false;
  auto e = eval::evaluate_perplexity(m, ids, fake_bytes, po);
  ASSERT_EQ(e.nll.size(), 1u);
  EXPECT_FALSE(e.has_per_loop());
  EXPECT_NEAR(e.nll[0], r.nll[r.exit_readout()], 1e-9 * std::abs(r.nll[r.exit_readout()]));
}

TEST(EvalPerplexityTest, RejectsShortTextAndTinyWindows) {
  OuroModel m = loopq::testing::tiny_model(6);
  std::vector<int64_t> ids = random_ids(10, m.config().vocab_size, 7);
  eval::PerplexityOptions po;
  po.seqlen = 11;
  try {
    eval::evaluate_perplexity(m, ids, fake_bytes, po);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("10 tokens"), std::string::npos) << e.what();
  }
  po.seqlen = 1;
  EXPECT_THROW(eval::evaluate_perplexity(m, ids, fake_bytes, po), Error);
  EXPECT_EQ(eval::count_windows(100, 30, 0), 3);
  EXPECT_EQ(eval::count_windows(100, 30, 2), 2);
}
