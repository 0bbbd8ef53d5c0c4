// The plain-loop decode step (model/decode_math.h) against the ATen formulas it replaces, and
// the whole model's cached decoding with it on against it off.
#include <gtest/gtest.h>

#include <ATen/Parallel.h>

#include <cmath>

#include "model/decode_math.h"
#include "model/generate.h"
#include "test_helpers.h"

using namespace loopq;

namespace {

at::Tensor randn(std::vector<int64_t> shape, uint64_t seed) {
  at::Generator g = at::detail::createCPUGenerator(seed);
  return at::randn(shape, g, at::kFloat);
}

double rel_err(const at::Tensor& a, const at::Tensor& b) {
  return (a - b).abs().max().item<double>() / std::max(b.abs().max().item<double>(), 1e-30);
}

float* fp(const at::Tensor& t) { return t.data_ptr<float>(); }

// The ATen path of ouro_model.cpp, written out: half-split RoPE and masked softmax attention.
at::Tensor aten_rope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  const int64_t half = x.size(-1) / 2;
  at::Tensor rotated = at::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
  return x * cos + rotated * sin;
}

// q [KVH*G, hd], k/v [KVH, len, hd], allowed [len] -> [KVH*G, hd].
at::Tensor aten_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                          const at::Tensor& allowed, int64_t group) {
  const int64_t KVH = k.size(0), hd = q.size(1);
  at::Tensor qg = q.view({KVH, group, hd});
  at::Tensor scores = at::matmul(qg, k.transpose(1, 2)) * (1.0 / std::sqrt(double(hd)));
  scores.masked_fill_(allowed.logical_not().view({1, 1, -1}), -1e30);
  return at::matmul(at::softmax(scores, -1), v).view({KVH * group, hd});
}

}  // namespace

TEST(DecodeMath, RmsNormMatchesAten) {
  for (int64_t n : {1, 7, 32, 2048, 2051}) {
    at::Tensor x = randn({n}, 1) * 3, w = randn({n}, 2), res = randn({n}, 3);
    at::Tensor out = at::empty({n});
    decode::rms_norm(fp(x), fp(w), n, 1e-6, fp(out));
    EXPECT_LT(rel_err(out, rms_norm(x, w, 1e-6)), 1e-6) << n;
    decode::add_rms_norm(fp(res), fp(x), fp(w), n, 1e-6, fp(out));
    EXPECT_LT(rel_err(out, res + rms_norm(x, w, 1e-6)), 1e-6) << n;
  }
  // eps dominates a zero row: the output is 0, not NaN.
  at::Tensor z = at::zeros({16}), w = at::ones({16}), out = at::empty({16});
  decode::rms_norm(fp(z), fp(w), 16, 1e-6, fp(out));
  EXPECT_TRUE(out.eq(0).all().item<bool>());
}

TEST(DecodeMath, RopeAndSiluMatchAten) {
  const int64_t heads = 5, hd = 12;
  at::Tensor x = randn({heads, hd}, 4), ang = randn({hd / 2}, 5) * 10;
  at::Tensor emb = at::cat({ang, ang});
  at::Tensor cos = emb.cos(), sin = emb.sin(), out = at::empty({heads, hd});
  decode::rope(fp(x), heads, hd, fp(cos), fp(sin), fp(out));
  EXPECT_LT(rel_err(out, aten_rope(x, cos, sin)), 1e-6);

  at::Tensor g = randn({77}, 6) * 4, u = randn({77}, 7), gu = at::empty({77});
  decode::silu_mul(fp(g), fp(u), 77, fp(gu));
  EXPECT_LT(rel_err(gu, at::silu(g) * u), 1e-6);
}

TEST(DecodeMath, AttentionMatchesAtenAndIgnoresThreads) {
  for (int64_t group : {1, 2, 4}) {
    for (int64_t len : {1, 3, 17, 130}) {
      const int64_t KVH = 3, hd = 20, cap = len + 5;  // keys sit in a larger capacity buffer
      at::Tensor q = randn({KVH * group, hd}, 10 + len) * 2;
      at::Tensor kbuf = randn({KVH, cap, hd}, 20 + len), vbuf = randn({KVH, cap, hd}, 30 + len);
      at::Tensor allowed = at::rand({len}, at::detail::createCPUGenerator(40 + len)).gt(0.3);
      allowed[len - 1] = true;
      at::Tensor k = kbuf.narrow(1, 0, len), v = vbuf.narrow(1, 0, len);
      at::Tensor want = aten_attention(q, k.contiguous(), v.contiguous(), allowed, group);
      at::Tensor one;
      for (int threads : {1, 2, 3}) {
        at::Tensor out = at::empty({KVH * group, hd});
        decode::attend_one(fp(q), KVH, group, hd, fp(kbuf), fp(vbuf), cap * hd, len,
                           allowed.data_ptr<bool>(), float(1.0 / std::sqrt(double(hd))), fp(out),
                           threads);
        EXPECT_LT(rel_err(out, want), 1e-5) << "group " << group << " len " << len;
        if (threads == 1) one = out;
        else EXPECT_TRUE(out.equal(one)) << threads << " threads";
      }
    }
  }
}

TEST(DecodeMath, FullyMaskedRowIsUniformNotNaN) {
  const int64_t hd = 8, len = 4;
  at::Tensor q = randn({1, hd}, 1), k = randn({1, len, hd}, 2), v = randn({1, len, hd}, 3);
  at::Tensor allowed = at::zeros({len}, at::kBool), out = at::empty({1, hd});
  decode::attend_one(fp(q), 1, 1, hd, fp(k), fp(v), len * hd, len, allowed.data_ptr<bool>(),
                     0.5f, fp(out), 1);
  EXPECT_LT(rel_err(out, v.mean(1)), 1e-6);
  EXPECT_LT(rel_err(out, aten_attention(q, k, v, allowed, 1)), 1e-6);
}

// Cached decoding through the plain step equals the ATen step: every loop's state and logits
// to fp32 rounding, the same greedy tokens, and the plain step actually ran.
class FastDecode : public ::testing::TestWithParam<int64_t> {};

TEST_P(FastDecode, EqualsAtenStep) {
  const int64_t kv_heads = GetParam();
  at::NoGradGuard no_grad;
  OuroModel fast = loopq::testing::tiny_model(3, kv_heads);
  OuroModel slow = loopq::testing::tiny_model(3, kv_heads);
  slow.set_fast_decode(false);
  ForwardOptions fo;
  fo.loop_logits = true;
  at::Tensor ids = loopq::testing::random_ids(1, 14, 8);
  KVCache cf = fast.make_cache(1, 4, 4), cs = slow.make_cache(1, 4, 4);  // growth included
  fast.forward(ids.narrow(1, 0, 6), fo, &cf);
  slow.forward(ids.narrow(1, 0, 6), fo, &cs);
  EXPECT_EQ(fast.fast_decode_layers(), 0);  // a prefill is not a decode step
  for (int64_t i = 6; i < ids.size(1); ++i) {
    ForwardResult a = fast.forward(ids.narrow(1, i, 1), fo, &cf);
    ForwardResult b = slow.forward(ids.narrow(1, i, 1), fo, &cs);
    for (size_t t = 0; t < a.states.size(); ++t) {
      EXPECT_LT(rel_err(a.states[t], b.states[t]), 1e-5) << "position " << i << " loop " << t;
      EXPECT_LT(rel_err(a.loop_logits[t], b.loop_logits[t]), 1e-5);
    }
  }
  EXPECT_EQ(fast.fast_decode_layers(), 8 * 4 * 2);  // steps x loops x layers
  EXPECT_EQ(slow.fast_decode_layers(), 0);

  GenerateOptions go;
  go.max_new_tokens = 24;
  const std::vector<int64_t> prompt = {3, 9, 27, 4};
  EXPECT_EQ(generate(fast, prompt, go), generate(slow, prompt, go));
}

INSTANTIATE_TEST_SUITE_P(KVHeads, FastDecode, ::testing::Values(1, 2, 4));

TEST(FastDecodeGate, AutogradAndHooksTakeTheAtenStep) {
  OuroModel m = loopq::testing::tiny_model(2);
  ForwardOptions fo;
  KVCache c = m.make_cache(1, 4, 8);
  at::Tensor ids = loopq::testing::random_ids(1, 3, 2);
  {
    at::AutoGradMode on(true);
    for (int64_t i = 0; i < 3; ++i) m.forward(ids.narrow(1, i, 1), fo, &c);
  }
  EXPECT_EQ(m.fast_decode_layers(), 0);
  at::NoGradGuard no_grad;
  LoopHooks hooks;
  fo.hooks = &hooks;
  KVCache c2 = m.make_cache(1, 4, 8);
  for (int64_t i = 0; i < 3; ++i) m.forward(ids.narrow(1, i, 1), fo, &c2);
  EXPECT_EQ(m.fast_decode_layers(), 0);
}
