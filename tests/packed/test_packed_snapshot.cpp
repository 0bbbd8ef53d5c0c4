// packed_snapshot: an in-memory quantized model, mid-learning included, on the packed kernels.
// Its every (loop, layer) output, every loop's logits and the guard's NLL must equal the
// reference path's bit for bit: the guard scores checkpoints on it, so a difference would change
// which checkpoint LoopQ keeps.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <string>
#include <vector>

#include "../model/test_helpers.h"
#include "packed_cases.h"
#include "quant/packed_snapshot.h"
#include "quant/ptq.h"
#include "quant/quant_linear.h"
#include "quant/trajectory_opt.h"
#include "util/error.h"

using namespace loopq;
using namespace loopq::quant;

namespace {

using Case = loopq::testing::PackedCase;

OuroModel quantized(const Case& c) {
  QuantConfig cfg = loopq::testing::config_of(c);
  cfg.act.clip = 0.9;
  cfg.optimize.steps = 0;
  cfg.optimize.progress = false;
  OuroModel m = loopq::testing::tiny_model(31);
  PtqRunOptions run;
  run.progress = false;
  run.batch_size = 4;
  quantize_model(m, cfg, loopq::testing::random_ids(4, 24, 7), run);
  return m;
}

// A mid-learning state as D holds it: every linear's clipping factor away from 1 (with an FP
// weight, the codes re-round under it), and the per-loop parameters moved off their closed forms.
void move_to_mid_learning(OuroModel& m, bool rerounded) {
  at::NoGradGuard no_grad;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(5);
  for (auto& L : m.weights().layers)
    for (int s = 0; s < kNumLayerSites; ++s) {
      auto* q = dynamic_cast<QuantLinear*>(L.linear(LinearSite(s)).get());
      ASSERT_NE(q, nullptr);
      const at::Tensor fp = rerounded ? q->dense_weight() * (1 + 0.05 * at::randn(q->dense_weight().sizes(), gen)) : at::Tensor();
      at::Tensor g = q->begin_weight_learning(fp);
      g.detach().copy_(0.8 + 0.4 * at::rand(g.sizes(), gen));
      SiteAdaptation& a = q->adaptation();
      if (a.act_clip.defined()) a.act_clip = at::clamp(a.act_clip * (0.9 + 0.1 * at::rand(a.act_clip.sizes(), gen)), 0.05, 1.0);
      if (a.act_scale.defined()) a.act_scale = a.act_scale * (0.8 + 0.4 * at::rand(a.act_scale.sizes(), gen));
      if (a.out_scale.defined()) a.out_scale = a.out_scale * (0.9 + 0.2 * at::rand(a.out_scale.sizes(), gen));
      if (a.out_bias.defined()) a.out_bias = a.out_bias + 0.01 * at::randn(a.out_bias.sizes(), gen);
    }
  if (m.weights().state_bias.defined()) m.weights().state_bias = m.weights().state_bias + 0.01;
}

class PackedSnapshot : public ::testing::TestWithParam<Case> {};

TEST_P(PackedSnapshot, EqualsTheReferencePathMidLearning) {
  const Case& c = GetParam();
  OuroModel m = quantized(c);
  move_to_mid_learning(m, c.method != Method::QuaRotGPTQ);
  ASSERT_EQ(why_no_packed_snapshot(m), "");
  const OuroModel packed = packed_snapshot(m);
  for (const auto& L : packed.weights().layers)
    for (int s = 0; s < kNumLayerSites; ++s)
      ASSERT_EQ(L.linear(LinearSite(s))->kind().rfind("packed_", 0), 0u) << L.linear(LinearSite(s))->kind();
  // The snapshot shares what it does not repack.
  EXPECT_TRUE(packed.weights().embed.is_same(m.weights().embed));
  EXPECT_EQ(packed.attention_transform().get(), m.attention_transform().get());

  const at::Tensor ids = loopq::testing::random_ids(2, 20, 99);
  loopq::testing::expect_same_outputs(m, packed, ids, c.name);
  at::NoGradGuard no_grad;
  EXPECT_EQ(readout_nll(packed, ids), readout_nll(m, ids)) << c.name;

  // A snapshot is a copy: changing the model afterwards moves the model, not the snapshot.
  const double before = readout_nll(packed, ids);
  for (auto& L : m.weights().layers) {
    auto* q = dynamic_cast<QuantLinear*>(L.linear(LinearSite::Down).get());
    SiteAdaptation& ad = q->adaptation();
    ad.out_scale = (ad.out_scale.defined() ? ad.out_scale : at::ones({1, q->out_features()})) * 0.5;
  }
  EXPECT_NE(readout_nll(m, ids), before) << c.name;
  EXPECT_EQ(readout_nll(packed, ids), before) << c.name;

  // In place too, as D's updates change the learned tensors: a fresh snapshot must not alias
  // the model's output affines or state alignment.
  const OuroModel fresh = packed_snapshot(m);
  const double fresh_nll = readout_nll(fresh, ids);
  for (auto& L : m.weights().layers)
    for (int s = 0; s < kNumLayerSites; ++s) {
      SiteAdaptation& ad = dynamic_cast<QuantLinear*>(L.linear(LinearSite(s)).get())->adaptation();
      if (ad.out_scale.defined()) ad.out_scale.mul_(0.7);
      if (ad.out_bias.defined()) ad.out_bias.add_(0.05);
    }
  for (at::Tensor* t : {&m.weights().state_weight, &m.weights().state_bias})
    if (t->defined()) t->add_(0.3);
  EXPECT_NE(readout_nll(m, ids), fresh_nll) << c.name;
  EXPECT_EQ(readout_nll(fresh, ids), fresh_nll) << c.name;
}

INSTANTIATE_TEST_SUITE_P(
    Configs, PackedSnapshot,
    ::testing::Values(Case{"loopq_abcd_w4a4_dynamic", Method::LoopQ, 4, 4, true, 0, false, "ABCD"},
                      Case{"loopq_abcd_w4a4_static_kv4", Method::LoopQ, 4, 4, true, 0, true, "ABCD", 4},
                      Case{"learned_static_w4a8", Method::LearnedStatic, 4, 8, true, 0, true},
                      Case{"quarot_gptq_w4a4_fixed_codes", Method::QuaRotGPTQ, 4, 4},
                      Case{"rtn_w8a8_asym_g4", Method::RTN, 8, 8, false, 4}),
    [](const auto& info) { return std::string(info.param.name); });

TEST(PackedSnapshot, NamesWhatTheKernelsDoNotRun) {
  const OuroModel fp = loopq::testing::tiny_model(31);
  EXPECT_NE(why_no_packed_snapshot(fp), "");
  EXPECT_THROW(packed_snapshot(fp), Error);
  OuroModel w4a16 = quantized(Case{"rtn_w4a16", Method::RTN, 4, 16});
  EXPECT_NE(why_no_packed_snapshot(w4a16).find("16-bit activations"), std::string::npos) << why_no_packed_snapshot(w4a16);
  EXPECT_THROW(packed_snapshot(w4a16), Error);
}

}  // namespace
