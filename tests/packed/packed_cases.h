#pragma once
// What the packed-path tests share: a quantization case on a tiny model, and the check that two
// runs of one quantized model (reference path and packed kernels) agree bit for bit on every
// (loop, layer) output and every loop's logits.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <string>
#include <vector>

#include "../model/test_helpers.h"
#include "model/hooks.h"
#include "model/ouro_model.h"
#include "quant/quant_config.h"

namespace loopq::testing {

struct PackedCase {
  const char* name;
  quant::Method method;
  int wbits, abits;
  bool wsym = true;
  int64_t wgroup = 0;
  bool static_acts = false;
  const char* components = "";
  int kv_bits = 16;
};

inline quant::QuantConfig config_of(const PackedCase& c) {
  quant::QuantConfig cfg;
  cfg.method = c.method;
  cfg.w_bits = c.wbits;
  cfg.w_symmetric = c.wsym;
  cfg.w_group_size = c.wgroup;
  cfg.act.bits = c.abits;
  cfg.act.static_scale = c.static_acts;
  cfg.act_samples = 64;
  cfg.kv.bits = c.kv_bits;
  cfg.kv.group_size = 8;  // the tiny models have 16 KV channels
  if (c.method == quant::Method::LoopQ) {
    cfg.loopq = quant::LoopQSpec::parse(c.components, true);
    cfg.act.clip = 0.9;
  }
  return cfg;
}

struct LayerOutputRecorder : LoopHooks {
  std::vector<at::Tensor> outputs;  // every (loop, layer) output, in order
  void on_layer_output(int, int, at::Tensor& x) override { outputs.push_back(x.clone()); }
};

inline double relative_error(const at::Tensor& a, const at::Tensor& b) {
  return (a - b).norm().item<double>() / std::max(b.norm().item<double>(), 1e-30);
}

inline void expect_same_outputs(const OuroModel& ref, const OuroModel& packed, const at::Tensor& ids, const std::string& what) {
  LayerOutputRecorder rr, rp;
  at::NoGradGuard g;
  ForwardOptions fo;
  fo.loop_logits = true;
  fo.hooks = &rr;
  const ForwardResult a = ref.forward(ids, fo);
  fo.hooks = &rp;
  const ForwardResult b = packed.forward(ids, fo);
  ASSERT_EQ(rr.outputs.size(), rp.outputs.size()) << what;
  for (size_t i = 0; i < rr.outputs.size(); ++i)
    EXPECT_TRUE(rp.outputs[i].equal(rr.outputs[i]))
        << what << " layer output " << i << ": rel. error " << relative_error(rp.outputs[i], rr.outputs[i]);
  ASSERT_EQ(a.loop_logits.size(), b.loop_logits.size()) << what;
  for (size_t t = 0; t < a.loop_logits.size(); ++t)
    EXPECT_TRUE(b.loop_logits[t].equal(a.loop_logits[t]))
        << what << " loop " << t << ": max diff " << max_abs_diff(b.loop_logits[t], a.loop_logits[t]);
}

}  // namespace loopq::testing
