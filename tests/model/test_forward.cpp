// The looped forward against independent formulations: loops=1 against a plain transformer
// written naively here (per-head loops, explicit KV-head repetition), exit modes against their
// closed forms, and hooks that see every linear at every loop.
#include <gtest/gtest.h>

#include <cmath>

#include "test_helpers.h"

using namespace loopq;
using loopq::testing::max_abs_diff;

namespace {

at::Tensor norm(const at::Tensor& x, const at::Tensor& w, double eps) {
  return w * x / (x.pow(2).mean(-1, true) + eps).sqrt();
}

// One sequence [S] through N sandwich-norm layers once, then model.norm and the head.
at::Tensor plain_transformer_logits(const OuroModel& m, const at::Tensor& ids) {
  const LoopLMConfig& c = m.config();
  const OuroWeights& w = m.weights();
  const int64_t S = ids.size(0), hd = c.head_dim, half = hd / 2;
  at::Tensor x = w.embed.index_select(0, ids);
  for (const LayerWeights& L : w.layers) {
    at::Tensor h = norm(x, L.input_norm, c.rms_norm_eps);
    at::Tensor q = at::matmul(h, L.q->dense_weight().t());
    at::Tensor k = at::matmul(h, L.k->dense_weight().t());
    at::Tensor v = at::matmul(h, L.v->dense_weight().t());
    at::Tensor out = at::zeros({S, c.num_heads * hd});
    for (int64_t head = 0; head < c.num_heads; ++head) {
      const int64_t kvh = head / (c.num_heads / c.num_kv_heads);
      at::Tensor qh = q.narrow(1, head * hd, hd).clone(), kh = k.narrow(1, kvh * hd, hd).clone();
      at::Tensor vh = v.narrow(1, kvh * hd, hd);
      for (int64_t p = 0; p < S; ++p)  // rotate pairs (i, i + hd/2) by p * theta^(-2i/hd)
        for (int64_t i = 0; i < half; ++i) {
          double a = p * std::pow(c.rope_theta, -2.0 * i / hd);
          for (at::Tensor* t : {&qh, &kh}) {
            float x1 = (*t)[p][i].item<float>(), x2 = (*t)[p][i + half].item<float>();
            (*t)[p][i] = float(x1 * std::cos(a) - x2 * std::sin(a));
            (*t)[p][i + half] = float(x2 * std::cos(a) + x1 * std::sin(a));
          }
        }
      at::Tensor scores = at::matmul(qh, kh.t()) / std::sqrt(double(hd));
      scores = scores + at::full({S, S}, -INFINITY).triu(1);
      out.narrow(1, head * hd, hd).copy_(at::matmul(at::softmax(scores, -1), vh));
    }
    x = x + norm(at::matmul(out, L.o->dense_weight().t()), L.attn_out_norm, c.rms_norm_eps);
    at::Tensor mm = norm(x, L.ffn_in_norm, c.rms_norm_eps);
    at::Tensor g = at::matmul(mm, L.gate->dense_weight().t()), u = at::matmul(mm, L.up->dense_weight().t());
    at::Tensor a = g * at::sigmoid(g) * u;
    x = x + norm(at::matmul(a, L.down->dense_weight().t()), L.ffn_out_norm, c.rms_norm_eps);
  }
  x = norm(x, w.final_norm, c.rms_norm_eps);
  return at::matmul(x, w.lm_head->dense_weight().t());
}

}  // namespace

TEST(ForwardTest, OneLoopEqualsPlainTransformer) {
  for (int64_t kv : {4, 2, 1}) {
    OuroModel m = loopq::testing::tiny_model(21, kv);
    at::Tensor ids = at::arange(0, 20, at::kLong) * 7 % m.config().vocab_size;
    ForwardOptions o;
    o.loops = 1;
    o.exit = ExitMode{};
    at::Tensor got = m.forward(ids.view({1, -1}), o).logits[0];
    EXPECT_LT(max_abs_diff(got, plain_transformer_logits(m, ids)), 1e-4) << "kv heads " << kv;
  }
}

TEST(ForwardTest, LoopTFeedsNormedStateOfLoopTMinus1) {
  // Two loops equal one loop applied to... the same layers again, starting from hs[0]: check via
  // the per-loop states: running 2 loops, state 1 must equal running 1 loop twice by hand is not
  // expressible through the API, so check that states differ per loop and the loop count is used.
  OuroModel m = loopq::testing::tiny_model(22);
  at::Tensor ids = at::arange(0, 10, at::kLong).view({1, -1});
  ForwardOptions o;
  o.loops = 3;
  ForwardResult r3 = m.forward(ids, o);
  o.loops = 2;
  ForwardResult r2 = m.forward(ids, o);
  ASSERT_EQ(r3.states.size(), 3u);
  EXPECT_LT(max_abs_diff(r3.states[1], r2.states[1]), 1e-6);  // loop t does not depend on T
  EXPECT_GT(max_abs_diff(r3.states[2], r3.states[1]), 1e-2);
}

TEST(ForwardTest, ExitDistributionSumsToOne) {
  OuroModel m = loopq::testing::tiny_model(23);
  ForwardOptions o;
  o.loops = 4;
  ForwardResult r = m.forward(at::arange(0, 16, at::kLong).view({1, -1}), o);
  at::Tensor sum = r.exit_probs.sum(0);
  EXPECT_LT(max_abs_diff(sum, at::ones_like(sum)), 1e-6);
  EXPECT_TRUE((r.exit_probs >= 0).all().item<bool>());
}

TEST(ForwardTest, ExitModesMatchClosedForms) {
  OuroModel m = loopq::testing::tiny_model(24);
  at::Tensor ids = at::arange(3, 19, at::kLong).view({1, -1});
  ForwardOptions o;
  o.loops = 4;
  o.loop_logits = true;
  o.exit = parse_exit_mode("last");
  ForwardResult base = m.forward(ids, o);
  for (int k = 0; k < 4; ++k) {
    o.exit = parse_exit_mode("step:" + std::to_string(k));
    ForwardResult r = m.forward(ids, o);
    // step:k is exactly lm_head(hs[k]), computed here without the model's readout path
    at::Tensor expect = at::matmul(base.states[k], m.weights().lm_head->dense_weight().t());
    EXPECT_LT(max_abs_diff(r.logits, expect), 1e-5);
  }
  o.exit = parse_exit_mode("expected");
  at::Tensor expected = at::zeros_like(base.logits);
  for (int t = 0; t < 4; ++t) expected += base.exit_probs[t].unsqueeze(-1) * base.loop_logits[t];
  EXPECT_LT(max_abs_diff(m.forward(ids, o).logits, expected), 1e-5);

  o.exit = parse_exit_mode("cdf:1.0");  // the shipped default: in practice the last loop
  EXPECT_LT(max_abs_diff(m.forward(ids, o).logits, base.loop_logits[3]), 1e-5);
  o.exit = parse_exit_mode("cdf:0.0");  // every token exits at the first loop
  EXPECT_LT(max_abs_diff(m.forward(ids, o).logits, base.loop_logits[0]), 1e-5);
  // cdf:0.5 picks per token the first loop whose CDF reaches 0.5
  o.exit = parse_exit_mode("cdf:0.5");
  at::Tensor got = m.forward(ids, o).logits;
  at::Tensor cdf = base.exit_probs.cumsum(0);
  for (int64_t s = 0; s < ids.size(1); ++s) {
    int64_t t = 0;
    while (t < 3 && cdf[t][0][s].item<float>() < 0.5f) ++t;
    EXPECT_LT(max_abs_diff(got[0][s], base.loop_logits[t][0][s]), 1e-5) << "token " << s;
  }
  o.exit = parse_exit_mode("step:4");  // explicit out-of-range step is an error
  EXPECT_THROW(m.forward(ids, o), loopq::Error);
}

TEST(ForwardTest, ExitModeParsing) {
  EXPECT_EQ(parse_exit_mode("step:2").step, 2);
  EXPECT_DOUBLE_EQ(parse_exit_mode("cdf:0.25").threshold, 0.25);
  for (const char* bad : {"", "first", "step:", "step:-1", "step:1.5", "cdf:2", "cdf:x"})
    EXPECT_THROW(parse_exit_mode(bad), loopq::Error) << bad;
}

namespace {
struct CountingHooks : LoopHooks {
  std::map<std::tuple<int, int, int>, int> inputs;
  int states = 0;
  void on_linear_input(int loop, int layer, LinearSite site, at::Tensor&) override {
    inputs[{loop, layer, int(site)}]++;
  }
  void on_loop_state(int, at::Tensor&) override { ++states; }
};
struct ScaleStateHooks : LoopHooks {
  void on_loop_state(int loop, at::Tensor& s) override {
    if (loop == 0) s = s * 2.0;
  }
};
}  // namespace

TEST(ForwardTest, HooksSeeEveryLinearAtEveryLoopAndCanModifyState) {
  OuroModel m = loopq::testing::tiny_model(25);
  at::Tensor ids = at::arange(0, 6, at::kLong).view({1, -1});
  CountingHooks hooks;
  ForwardOptions o;
  o.loops = 3;
  o.exit = ExitMode{};
  o.hooks = &hooks;
  m.forward(ids, o);
  EXPECT_EQ(hooks.states, 3);
  for (int t = 0; t < 3; ++t)
    for (int l = 0; l < 2; ++l)
      for (int s = 0; s < kNumLayerSites; ++s) EXPECT_EQ((hooks.inputs[{t, l, s}]), 1);
  EXPECT_EQ((hooks.inputs[{2, -1, int(LinearSite::LMHead)}]), 1);

  ScaleStateHooks scale;
  o.hooks = nullptr;
  ForwardResult plain = m.forward(ids, o);
  o.hooks = &scale;
  ForwardResult scaled = m.forward(ids, o);
  EXPECT_LT(max_abs_diff(scaled.states[0], plain.states[0] * 2.0), 1e-6);
  EXPECT_GT(max_abs_diff(scaled.states[1], plain.states[1]), 1e-3);  // loop 1 consumed the change
}
