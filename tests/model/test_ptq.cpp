// The static PTQ pipeline on tiny random looped models: exactness of the FP transforms (QuaRot
// rotation, SmoothQuant folding, the R3 q/k rotation), calibration statistics against directly
// captured activations, fake-quant arithmetic against a hand computation, and save/load.
#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <tuple>
#include <unistd.h>

#include "model/model_io.h"
#include "quant/calibration.h"
#include "quant/kv_quant.h"
#include "quant/ptq.h"
#include "quant/quant_linear.h"
#include "quant/quantized_io.h"
#include "quant/quarot.h"
#include "quant/smoothquant.h"
#include "test_helpers.h"
#include "util/error.h"

namespace fs = std::filesystem;
using namespace loopq;
using namespace loopq::quant;
using loopq::testing::max_abs_diff;
using loopq::testing::tiny_model;

namespace {

at::Tensor test_ids(int64_t batch = 2, int64_t seq = 12, uint64_t seed = 3) {
  return loopq::testing::random_ids(batch, seq, seed);
}

at::Tensor logits(const OuroModel& m, const at::Tensor& ids) { return loopq::testing::stacked_loop_logits(m, ids); }

double rel_err(const at::Tensor& a, const at::Tensor& b) {
  return ((a - b).norm() / b.norm()).item<double>();
}

// Records every linear input it sees, per (loop, layer, site).
struct Capture : LoopHooks {
  std::map<std::tuple<int, int, int>, at::Tensor> inputs;
  void on_linear_input(int loop, int layer, LinearSite site, at::Tensor& x) override {
    inputs[{loop, layer, int(site)}] = x.detach().clone();
  }
};

fs::path temp_dir(const std::string& name) {
  fs::path p = fs::temp_directory_path() / ("loopq_test_ptq_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(p);
  return p;
}

}  // namespace

TEST(QuaRot, RotatedModelEqualsOriginal) {
  OuroModel ref = tiny_model(5);  // GQA 4 heads / 2 KV heads, intermediate 44 = Paley order 44
  OuroModel rot = tiny_model(5);
  quarot_rotate_model(rot, 7);
  const at::Tensor ids = test_ids();
  EXPECT_LT(rel_err(logits(rot, ids), logits(ref, ids)), 1e-5);
  // Every linear now carries an online rotation, and the pre-norms were folded to ones.
  for (const auto& L : rot.weights().layers) {
    EXPECT_TRUE(at::allclose(L.input_norm, at::ones_like(L.input_norm)));
    for (int s = 0; s < kNumLayerSites; ++s) EXPECT_TRUE(linear_parts(L.linear(LinearSite(s))).rotation.active());
  }
}

TEST(QuaRot, HeadRotationOfQueriesAndKeysIsExact) {
  OuroModel m = tiny_model(6);
  const at::Tensor ids = test_ids();
  const at::Tensor ref = logits(m, ids);
  KVQuantSpec spec;
  spec.bits = 16;
  spec.rotate_qk = true;
  m.set_attention_transform(std::make_shared<KVFakeQuant>(spec, m.config().num_kv_heads, m.config().head_dim));
  EXPECT_LT(rel_err(logits(m, ids), ref), 1e-5);
}

TEST(QuaRot, RotationSpreadsAnOutlierChannel) {
  // The point of the rotation: a single huge input channel no longer dominates per-token ranges.
  OuroModel m = tiny_model(8);
  InputRotation r = quarot_input_rotation(m.config(), LinearSite::Q, 3);
  at::Tensor x = at::zeros({1, 32});
  x[0][5] = 100.0;
  at::Tensor y = r.apply(x);
  EXPECT_NEAR(y.abs().max().item<double>(), 100.0 / std::sqrt(32.0), 1e-3);
  EXPECT_NEAR(y.norm().item<double>(), 100.0, 1e-3);
}

TEST(QuaRot, UnbuildableHadamardSizeIsRefused) {
  LoopLMConfig c = loopq::testing::tiny_config();
  c.intermediate_size = 22;  // no Hadamard of order 22 exists
  EXPECT_THROW(quarot_check_sizes(c), Error);
}

TEST(Calibration, StatisticsMatchCapturedActivations) {
  OuroModel m = tiny_model(9);
  const at::Tensor ids = test_ids(3, 10, 4);
  Capture cap;
  {
    at::NoGradGuard g;
    ForwardOptions fo;
    fo.hooks = &cap;
    fo.compute_logits = false;
    m.forward(ids, fo);
  }
  CalibrationOptions o;
  o.per_loop_hessian = true;
  CalibrationCollector col(m.config().num_layers, m.config().total_ut_steps, o);
  run_calibration(m, ids, 0, col, /*batch=*/2);  // two batches: streaming must merge them
  // The default keeps only the pooled Hessian, accumulated directly: it must equal the sum of
  // the per-loop ones.
  CalibrationCollector pooled_only(m.config().num_layers, m.config().total_ut_steps, CalibrationOptions{});
  run_calibration(m, ids, 0, pooled_only, 2);
  for (int layer = 0; layer < 2; ++layer)
    for (int g = 0; g < kNumInputGroups; ++g) {
      EXPECT_FALSE(pooled_only.per_loop(0, layer, InputGroup(g)).xtx.defined());
      EXPECT_LT(rel_err(pooled_only.pooled(layer, InputGroup(g)).hessian(), col.pooled(layer, InputGroup(g)).hessian()), 1e-12);
    }
  for (int layer = 0; layer < 2; ++layer)
    for (int g = 0; g < kNumInputGroups; ++g) {
      const LinearSite site = sites_of(InputGroup(g)).front();
      at::Tensor all;
      for (int t = 0; t < 4; ++t) {
        at::Tensor x = cap.inputs.at({t, layer, int(site)}).reshape({-1, cap.inputs.at({t, layer, int(site)}).size(-1)}).to(at::kDouble);
        const InputStats& s = col.per_loop(t, layer, InputGroup(g));
        EXPECT_EQ(s.rows, 30);
        // The capture ran one batch of 3, calibration 2 + 1: fp32 forwards differ in the last bits.
        EXPECT_LT(rel_err(s.absmax.to(at::kDouble), x.abs().amax(0)), 1e-5);
        EXPECT_LT(rel_err(s.xtx, at::matmul(x.t(), x)), 1e-5);
        all = all.defined() ? at::cat({all, x}) : x;
      }
      const InputStats& p = col.pooled(layer, InputGroup(g));
      EXPECT_EQ(p.rows, 120);
      EXPECT_LT(rel_err(p.hessian(), at::matmul(all.t(), all) * (2.0 / 120)), 1e-5);
      EXPECT_LT(rel_err(p.absmax.to(at::kDouble), all.abs().amax(0)), 1e-5);
      at::Tensor m2 = (all * all).mean(0), m4 = (all * all * all * all).mean(0);
      EXPECT_LT(rel_err(p.kurtosis(), m4 / (m2 * m2)), 1e-5);
    }
}

TEST(Calibration, WindowsAreSeededAndValidated) {
  std::vector<int32_t> ids(100);
  for (int i = 0; i < 100; ++i) ids[size_t(i)] = i;
  at::Tensor a = calibration_windows(ids, 5, 10, 1), b = calibration_windows(ids, 5, 10, 1);
  EXPECT_TRUE(at::equal(a, b));
  EXPECT_FALSE(at::equal(a, calibration_windows(ids, 5, 10, 2)));
  // Each window is a contiguous slice of the stream.
  for (int i = 0; i < 5; ++i) EXPECT_EQ(a[i][9].item<int64_t>() - a[i][0].item<int64_t>(), 9);
  EXPECT_THROW(calibration_windows(ids, 5, 100, 1), Error);
}

TEST(SmoothQuant, FoldingKeepsTheModelAndBalancesRanges) {
  OuroModel ref = tiny_model(10), sm = tiny_model(10);
  const at::Tensor ids = test_ids();
  CalibrationOptions o;
  o.hessian = false;
  CalibrationCollector before(2, 4, o);
  run_calibration(sm, ids, 0, before, 2);
  apply_smoothquant(sm, before, 0.5);
  EXPECT_LT(rel_err(logits(sm, ids), logits(ref, ids)), 1e-5);
  // alpha = 0.5: after smoothing, each channel's activation absmax equals its weight absmax
  // (both sqrt(max|X_j| * max|W_j|)), the balance the method is built on.
  CalibrationCollector after(2, 4, o);
  run_calibration(sm, ids, 0, after, 2);
  for (int l = 0; l < 2; ++l) {
    at::Tensor act = after.pooled(l, InputGroup::AttnIn).absmax.to(at::kDouble);
    const auto& L = sm.weights().layers[size_t(l)];
    at::Tensor w = at::maximum(at::maximum(L.q->dense_weight().abs().amax(0), L.k->dense_weight().abs().amax(0)),
                               L.v->dense_weight().abs().amax(0)).to(at::kDouble);
    EXPECT_LT(rel_err(act, w), 1e-4);
  }
}

// Note: with the reference formula, alpha = 0 does not reduce SmoothQuant to RTN (it gives
// s = 1 / max|W_j|, which equalises the weight columns); the closed forms that do hold are the
// ones below and the balance property above.
TEST(SmoothQuant, ScalesFollowTheFormula) {
  at::Tensor amax = at::tensor({4.0, 1.0, 0.0}, at::kDouble);
  at::Tensor w = at::tensor({1.0, -2.0, 0.5, 0.25, 1.0, -1.0}, at::kDouble).view({2, 3});
  at::Tensor s = smoothing_scales(amax, {w}, 0.5);
  EXPECT_NEAR(s[0].item<double>(), 2.0, 1e-12);            // sqrt(4) / sqrt(1)
  EXPECT_NEAR(s[1].item<double>(), 1.0 / std::sqrt(2.0), 1e-12);
  EXPECT_NEAR(s[2].item<double>(), 1e-5, 1e-12);           // clamped
  at::Tensor s1 = smoothing_scales(amax, {w}, 1.0);        // alpha 1: s = max|X|
  EXPECT_NEAR(s1[0].item<double>(), 4.0, 1e-12);
}

TEST(QuantLinear, ComputesIntegerCodesTimesScales) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(11);
  at::Tensor w = at::randn({6, 8}, gen), x = at::randn({3, 8}, gen);
  QuantizedWeight qw = rtn_quantize(w, Grid{4, true}, 0, true);
  ActQuant act;
  act.bits = 4;
  act.clip = 0.9;
  QuantLinear op(qw, act, InputRotation{});
  // Hand computation: per-token symmetric int4 codes of x with clip 0.9, times row scales.
  at::Tensor xa = x.abs().amax(1, true) * 0.9 / 7.0;
  at::Tensor xq = at::clamp(at::round(x / xa), -8, 7) * xa;
  at::Tensor wq = qw.codes * qw.params.scale.reshape({6, 1});
  EXPECT_LT(max_abs_diff(op.forward(x, 0), at::matmul(xq, wq.t())), 1e-5);
  EXPECT_TRUE((qw.codes == at::round(qw.codes)).all().item<bool>());
  EXPECT_LE(qw.codes.max().item<double>(), 7);
  EXPECT_GE(qw.codes.min().item<double>(), -8);
}

// Both integer-product paths against an fp64 hand computation: W4A4 takes one fp32 GEMM (every
// partial sum an integer below 2^24); asymmetric W8 with A8 over 1,200 inputs must split the
// GEMM into column chunks (2^24 / (255 * 128) = 514 columns) that add in fp64.
TEST(QuantLinear, TheIntegerProductMatchesAHandComputationInOneGemmAndInChunks) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(13);
  for (const auto& [wbits, wsym, abits, in] : {std::tuple<int, bool, int, int64_t>{4, true, 4, 64},
                                                std::tuple<int, bool, int, int64_t>{8, false, 8, 1200}}) {
    at::Tensor w = at::randn({5, in}, gen), x = at::randn({4, in}, gen);
    QuantizedWeight qw = rtn_quantize(w, Grid{wbits, wsym}, 0, false);
    ActQuant act;
    act.bits = abits;
    act.clip = 1.0;
    QuantLinear op(qw, act, InputRotation{});
    const double qmax = double((1 << (abits - 1)) - 1);
    at::Tensor xs = (x.abs().amax(1, true) / qmax).to(at::kDouble);
    at::Tensor xc = at::clamp(at::round(x.to(at::kDouble) / xs), -qmax - 1, qmax);
    at::Tensor wc = qw.codes.to(at::kDouble) - qw.params.zero.to(at::kDouble).reshape({5, 1});
    at::Tensor dot = at::matmul(xc, wc.t());  // integers, exact in fp64
    at::Tensor expect = dot * qw.params.scale.to(at::kDouble).reshape({1, 5}) * xs;
    at::Tensor got = op.forward(x, 0).to(at::kDouble);
    EXPECT_LT((got - expect).abs().max().item<double>(), 1e-6 * expect.abs().max().item<double>())
        << "W" << wbits << "A" << abits << " in " << in;
  }
}

TEST(KVQuant, QuantizesPerTokenGroupsOnTheFlattenedHeads) {
  KVQuantSpec spec;
  spec.bits = 4;
  spec.group_size = 8;
  KVFakeQuant kv(spec, 2, 8);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(12);
  at::Tensor q = at::randn({1, 4, 3, 8}, gen), k = at::randn({1, 2, 3, 8}, gen), v = at::randn({1, 2, 3, 8}, gen);
  at::Tensor q0 = q.clone(), k0 = k.clone(), v0 = v.clone();
  kv.apply(0, 0, q, k, v);
  EXPECT_TRUE(at::equal(q, q0));
  // Group 8 = one head here: asymmetric 4-bit over each (token, head) with clip 0.95.
  for (int h = 0; h < 2; ++h)
    for (int s = 0; s < 3; ++s) {
      at::Tensor row = k0[0][h][s];
      double lo = row.min().item<double>() * 0.95, hi = row.max().item<double>() * 0.95;
      double scale = (hi - lo) / 15, zero = std::nearbyint(-lo / scale);
      at::Tensor expect = (at::clamp(at::round(row / scale) + zero, 0, 15) - zero) * scale;
      EXPECT_LT(max_abs_diff(k[0][h][s], expect), 1e-5);
    }
  EXPECT_GT(max_abs_diff(v, v0), 0);
}

class QuantizedModels : public ::testing::TestWithParam<std::string> {};

TEST_P(QuantizedModels, QuantizeSaveLoadRoundTrip) {
  OuroModel fp = tiny_model(13);
  OuroModel m = tiny_model(13);
  QuantConfig cfg;
  cfg.method = parse_method(GetParam());
  cfg.w_bits = 4;
  cfg.act.bits = 8;
  cfg.kv.bits = 8;
  cfg.kv.group_size = 8;
  if (cfg.method == Method::RTN) cfg.w_symmetric = false, cfg.w_group_size = 4;  // asym + groups path
  if (cfg.method == Method::GPTQ) cfg.w_group_size = 4;                             // static groups
  const at::Tensor calib = test_ids(4, 16, 21);
  PtqRunOptions run;
  run.progress = false;
  run.batch_size = 2;
  quantize_model(m, cfg, calib, run);
  const at::Tensor ids = test_ids();
  const at::Tensor ql = logits(m, ids), fl = logits(fp, ids);
  const double err = rel_err(ql, fl);
  EXPECT_GT(err, 0);       // it really quantized
  EXPECT_LT(err, 0.5);     // and still computes the same function roughly (W4A8KV8)
  fs::path dir = temp_dir(GetParam());
  save_quantized_model(m, cfg, dir.string(), "");
  OuroModel back = load_any_model(dir.string());
  EXPECT_TRUE(at::equal(logits(back, ids), ql));  // bit-exact reload
  QuantConfig read;
  ASSERT_TRUE(read_quant_config(dir.string(), read));
  EXPECT_EQ(read.method, cfg.method);
  EXPECT_EQ(read.w_group_size, cfg.w_group_size);
  EXPECT_THROW(save_quantized_model(m, cfg, dir.string(), ""), Error);  // never overwrites
  fs::remove_all(dir);
}

INSTANTIATE_TEST_SUITE_P(Methods, QuantizedModels,
                         ::testing::Values("rtn", "smoothquant", "gptq", "quarot-rtn", "quarot-gptq"),
                         [](const auto& info) {
                           std::string s = info.param;
                           for (auto& ch : s) if (ch == '-') ch = '_';
                           return s;
                         });

TEST(Ptq, GptqBeatsRtnOnTheCalibrationData) {
  // GPTQ minimises each layer's output error on the calibration inputs, so on those same inputs
  // the whole W3 model must land closer to FP than round-to-nearest.
  const at::Tensor calib = test_ids(8, 24, 31);
  OuroModel fp = tiny_model(14);
  const at::Tensor ref = logits(fp, calib);
  double errs[2];
  for (int i = 0; i < 2; ++i) {
    OuroModel m = tiny_model(14);
    QuantConfig cfg;
    cfg.method = i == 0 ? Method::RTN : Method::GPTQ;
    cfg.w_bits = 3;
    PtqRunOptions run;
    run.progress = false;
    quantize_model(m, cfg, calib, run);
    errs[i] = rel_err(logits(m, calib), ref);
  }
  EXPECT_LT(errs[1], errs[0]);
}

TEST(Ptq, RejectsBadSettings) {
  OuroModel m = tiny_model(15);
  QuantConfig cfg;
  cfg.w_group_size = 5;  // does not divide 32
  EXPECT_THROW(quantize_model(m, cfg, at::Tensor()), Error);
  cfg = QuantConfig{};
  cfg.method = Method::GPTQ;
  EXPECT_THROW(quantize_model(m, cfg, at::Tensor()), Error);  // no calibration data
  cfg = QuantConfig{};
  cfg.act.bits = 12;
  EXPECT_THROW(quantize_model(m, cfg, at::Tensor()), Error);
  EXPECT_THROW(parse_method("awq"), Error);
}

TEST(QuantizedIo, CorruptScalesAreRefused) {
  OuroModel m = tiny_model(16);
  QuantConfig cfg;
  PtqRunOptions run;
  run.progress = false;
  quantize_model(m, cfg, at::Tensor(), run);
  // A negative scale in one linear: the loader must refuse the file, naming the tensor.
  auto* q = dynamic_cast<QuantLinear*>(m.weights().layers[0].q.get());
  ASSERT_NE(q, nullptr);
  QuantizedWeight bad = q->weight();
  bad.params.scale = bad.params.scale.clone();
  bad.params.scale[0][0][0] = -1.0;
  m.weights().layers[0].q = std::make_shared<QuantLinear>(bad, ActQuant{}, InputRotation{});
  fs::path dir = temp_dir("corrupt");
  save_quantized_model(m, cfg, dir.string(), "");
  try {
    load_any_model(dir.string());
    ADD_FAILURE() << "corrupt scales loaded";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("q_proj.scales"), std::string::npos) << e.what();
  }
  fs::remove_all(dir);
}
