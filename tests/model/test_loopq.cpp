// LoopQ and the passes it shares with the static baselines, on tiny random looped models:
// identity adaptations are bit-exact no-ops, closed forms (least-squares affine, state
// alignment moments, 1-loop static scales), straight-through gradients against finite
// differences, the optimizer's loss and determinism, the shared-backbone invariant for every
// component subset, and bit-exact save/load.
#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <unistd.h>

#include "io/safetensors.h"
#include "model/model_io.h"
#include "quant/act_calibration.h"
#include "quant/diagnostics.h"
#include "quant/loop_smoothing.h"
#include "quant/output_affine.h"
#include "quant/ptq.h"
#include "quant/quant_linear.h"
#include "quant/quantized_io.h"
#include "quant/state_alignment.h"
#include "quant/trajectory_opt.h"
#include "test_helpers.h"
#include "util/error.h"

namespace fs = std::filesystem;
using namespace loopq;
using namespace loopq::quant;
using loopq::testing::quiet;
using loopq::testing::tiny_model;

namespace {

at::Tensor ids_of(int64_t batch, int64_t seq, uint64_t seed) { return loopq::testing::random_ids(batch, seq, seed); }
at::Tensor all_logits(const OuroModel& m, const at::Tensor& ids) { return loopq::testing::stacked_loop_logits(m, ids); }

QuantConfig loopq_config(const std::string& components, bool static_acts, int a_bits = 4) {
  QuantConfig cfg;
  cfg.method = Method::LoopQ;
  cfg.loopq = LoopQSpec::parse(components, true);
  cfg.w_bits = 4;
  cfg.act.bits = a_bits;
  cfg.act.clip = 0.9;
  cfg.act.static_scale = static_acts;
  cfg.act_samples = 64;
  cfg.optimize.steps = 4;
  cfg.optimize.batch = 2;
  cfg.optimize.seqlen = 16;
  cfg.optimize.progress = false;
  return cfg;
}

fs::path temp_dir(const std::string& name) {
  fs::path p = fs::temp_directory_path() / ("loopq_test_loopq_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(p);
  return p;
}

std::string file_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

std::vector<QuantLinear*> quant_linears(OuroModel& m) {
  std::vector<QuantLinear*> out;
  for (auto& L : m.weights().layers)
    for (int s = 0; s < kNumLayerSites; ++s) out.push_back(dynamic_cast<QuantLinear*>(L.linear(LinearSite(s)).get()));
  return out;
}

}  // namespace

TEST(LoopQ, IdentityAdaptationsAreBitExact) {
  // A QuaRot-GPTQ backbone, then every adaptation set to identity (per loop): the model must
  // compute exactly the backbone's logits, for static and for dynamic activations.
  const at::Tensor calib = ids_of(8, 16, 5), ids = ids_of(2, 12, 6);
  for (bool static_acts : {false, true}) {
    OuroModel m = tiny_model(21);
    QuantConfig cfg;
    cfg.method = Method::QuaRotGPTQ;
    cfg.act.bits = 4;
    cfg.act.static_scale = static_acts;
    cfg.act_samples = 64;
    quantize_model(m, cfg, calib, quiet());
    const at::Tensor before = all_logits(m, ids);
    const int64_t T = m.config().total_ut_steps;
    for (QuantLinear* q : quant_linears(m)) {
      ASSERT_NE(q, nullptr);
      SiteAdaptation& a = q->adaptation();
      if (static_acts) {
        ASSERT_EQ(a.act_scale.size(0), 1);  // pooled over loops: one scale per site
        a.act_scale = a.act_scale.repeat({T});
      }
      a.out_scale = at::ones({T, q->out_features()});
      a.out_bias = at::zeros({T, q->out_features()});
    }
    OuroWeights& w = m.weights();
    w.state_weight = w.final_norm.unsqueeze(0).repeat({T, 1});
    w.state_bias = at::zeros_like(w.state_weight);
    EXPECT_TRUE(at::equal(all_logits(m, ids), before)) << (static_acts ? "static" : "dynamic");
  }
}

TEST(LoopQ, LeastSquaresAffineIsOptimal) {
  // t = 2.5 y - 0.75 + noise: the closed form must beat every nearby (c, b), and recover the
  // exact line without noise. A constant y keeps c = 1 and takes the mean offset.
  auto gen = at::make_generator<at::CPUGeneratorImpl>(3);
  const at::Tensor y = at::randn({500, 3}, gen, at::kDouble);
  const at::Tensor noise = 0.1 * at::randn({500, 3}, gen, at::kDouble);
  auto fit = [](const at::Tensor& yy, const at::Tensor& tt) {
    return least_squares_affine(double(yy.size(0)), yy.sum(0), tt.sum(0), (yy * yy).sum(0), (yy * tt).sum(0));
  };
  auto [c0, b0] = fit(y, 2.5 * y - 0.75);
  EXPECT_LT((c0 - 2.5).abs().max().item<double>(), 1e-12);
  EXPECT_LT((b0 + 0.75).abs().max().item<double>(), 1e-12);
  const at::Tensor t = 2.5 * y - 0.75 + noise;
  auto [c, b] = fit(y, t);
  auto loss = [&](const at::Tensor& cc, const at::Tensor& bb) { return (cc * y + bb - t).pow(2).sum().item<double>(); };
  const double best = loss(c, b);
  for (double dc : {-1e-3, 1e-3})
    for (double db : {-1e-3, 0.0, 1e-3}) EXPECT_GT(loss(c + dc, b + db), best);
  const at::Tensor flat = at::full({10, 1}, 2.0, at::kDouble), tf = at::arange(10, at::kDouble).unsqueeze(1);
  auto [cf, bf] = fit(flat, tf);
  EXPECT_EQ(cf.item<double>(), 1.0);
  EXPECT_NEAR(bf.item<double>(), 4.5 - 2.0, 1e-12);
}

TEST(LoopQ, StateAlignmentMatchesTheFpMoments) {
  const at::Tensor calib = ids_of(6, 16, 8);
  OuroModel fp = tiny_model(22);
  OuroModel q = tiny_model(22);
  QuantConfig cfg;
  cfg.method = Method::RTN;
  cfg.w_bits = 3;
  cfg.act.bits = 4;
  quantize_model(q, cfg, calib, quiet());
  const int64_t T = q.config().total_ut_steps;
  const auto target = state_moments(fp, calib, T, 3);
  const auto raw = state_moments(q, calib, T, 3);
  EXPECT_GT((raw.back().std - target.back().std).abs().max().item<double>(), 1e-3);  // quantization moved them
  align_states(q, fp, calib, 3, true);
  const auto now = state_moments(q, calib, T, 3);
  for (int64_t t = 0; t < T; ++t) {
    EXPECT_LT((now[t].mean - target[t].mean).abs().max().item<double>(), 1e-4) << "loop " << t;
    EXPECT_LT(((now[t].std - target[t].std) / target[t].std).abs().max().item<double>(), 1e-4) << "loop " << t;
  }
}

TEST(LoopQ, OnePassAlignmentEqualsTheLoopAfterLoopFit) {
  // align_states fits every loop in one forward; an independent loop-after-loop fit (re-running
  // loops 0..t with the parameters fitted so far, as the closed form is defined) must agree.
  const at::Tensor calib = ids_of(6, 16, 8);
  const OuroModel fp = tiny_model(22);
  QuantConfig cfg;
  cfg.method = Method::RTN;
  cfg.w_bits = 3;
  cfg.act.bits = 4;
  OuroModel one = tiny_model(22), ref = tiny_model(22);
  quantize_model(one, cfg, calib, quiet());
  quantize_model(ref, cfg, calib, quiet());
  align_states(one, fp, calib, 3, true);
  const int64_t T = ref.config().total_ut_steps;
  OuroWeights& w = ref.weights();
  w.state_weight = w.final_norm.unsqueeze(0).repeat({T, 1}).contiguous();
  w.state_bias = at::zeros_like(w.state_weight);
  const auto target = state_moments(fp, calib, T, 3);
  for (int64_t t = 0; t < T; ++t) {
    const ChannelMoments now = state_moments(ref, calib, t + 1, 3).back();
    const at::Tensor a = (target[size_t(t)].std / now.std).to(at::kFloat);
    const at::Tensor b = (target[size_t(t)].mean - target[size_t(t)].std / now.std * now.mean).to(at::kFloat);
    w.state_bias[t].copy_(w.state_bias[t] * a + b);
    w.state_weight[t].copy_(w.state_weight[t] * a);
  }
  const auto rel = [](const at::Tensor& x, const at::Tensor& y) {
    return ((x - y).abs().max() / y.abs().max()).item<double>();
  };
  EXPECT_LT(rel(one.weights().state_weight, w.state_weight), 1e-4);
  EXPECT_LT(rel(one.weights().state_bias, w.state_bias), 1e-4);
}

TEST(LoopQ, OneLoopPerLoopScalesEqualPooledScales) {
  LoopLMConfig c = loopq::testing::tiny_config(2, /*loops=*/1);
  const at::Tensor calib = ids_of(4, 16, 9);
  std::vector<at::Tensor> scales[2];
  for (int per_loop = 0; per_loop < 2; ++per_loop) {
    OuroModel m = random_model(c, 23, 0.2, true);
    QuantConfig cfg;
    cfg.method = Method::RTN;
    quantize_model(m, cfg, calib, quiet());  // weights only
    ActQuant act;
    act.bits = 4;
    act.static_scale = true;
    const ActivationSampler samples = sample_activations(m, calib, 64, 4);
    EXPECT_EQ(calibrate_activations(m, samples, act, per_loop == 1), 1);
    for (QuantLinear* q : quant_linears(m)) scales[per_loop].push_back(q->adaptation().act_scale);
  }
  for (size_t i = 0; i < scales[0].size(); ++i) EXPECT_TRUE(at::equal(scales[0][i], scales[1][i]));
}

TEST(LoopQ, StaticScaleSearchBeatsTheAbsmaxScale) {
  // A heavy-tailed input: the searched scale clips the outlier and lowers the output error.
  auto gen = at::make_generator<at::CPUGeneratorImpl>(4);
  at::Tensor x = at::randn({256, 16}, gen);
  x[0][3] = 40.0;
  const at::Tensor w = at::randn({8, 16}, gen);
  const Grid g{4, true};
  RatioSearch info;
  const double s = search_static_scale(x, w, g, &info);
  EXPECT_LT(s, 40.0 / 7);
  EXPECT_LT(info.error, info.error_at_1);
  EXPECT_NEAR(info.error, output_error(x, fake_quant_static(x, g, at::scalar_tensor(s)), w), 1e-6 * info.error);
}

TEST(LoopQ, SteGradientsMatchTheClosedFormAndFiniteDifferences) {
  // Rounding passes gradients straight through: d/ds of clamp(round(x/s)) s is
  // round(x/s) - x/s inside the grid (LSQ) and the grid bound outside it.
  const Grid g{4, true};
  at::Tensor x = at::tensor({0.33, -1.26, 0.9, 5.0, -7.0});
  at::Tensor s = at::scalar_tensor(0.2).set_requires_grad(true);
  {
    at::AutoGradMode on(true);
    fake_quant_static(x, g, s).sum().backward();
  }
  const at::Tensor r = x / 0.2;
  const at::Tensor inside = (at::round(r) >= -8).logical_and(at::round(r) <= 7);
  const at::Tensor expect = at::where(inside, at::round(r) - r, at::clamp(at::round(r), -8, 7)).sum();
  EXPECT_NEAR(s.grad().item<double>(), expect.item<double>(), 1e-5);

  // Away from rounding, the whole loss is smooth in the output affines, the state alignment and
  // the learned weight clipping (GPTQ codes stay fixed): autograd equals central differences.
  const at::Tensor calib = ids_of(4, 12, 10);
  OuroModel fp = tiny_model(24);
  OuroModel q = tiny_model(24);
  QuantConfig cfg = loopq_config("AC", false, 16);  // W4A16: no activation rounding
  quantize_model(q, cfg, calib, quiet());
  QuantLinear* lin = quant_linears(q)[3];
  at::Tensor gain = lin->begin_weight_learning();
  at::Tensor& ob = lin->adaptation().out_bias;
  at::Tensor& sw = q.weights().state_weight;
  ob = ob.detach().clone().set_requires_grad(true);
  sw = sw.detach().clone().set_requires_grad(true);
  TrajectoryOptions o;
  o.kl_weight = 0.5;
  const at::Tensor ids = calib.narrow(0, 0, 2);
  // The trajectory loss written out with gradients on (adaptation_loss is the same without).
  double analytic[3];
  {
    at::AutoGradMode on(true);
    const int64_t T = q.config().total_ut_steps;
    ForwardOptions fo;
    fo.loops = T;
    ForwardResult rf;
    {
      at::NoGradGuard ng;
      rf = fp.forward(ids, fo);
    }
    ForwardResult rq = q.forward(ids, fo);
    at::Tensor loss = at::zeros({});
    for (int64_t t = 0; t < T; ++t)
      loss = loss + (rq.states[t] - rf.states[t]).pow(2).sum() / rf.states[t].pow(2).sum();
    const at::Tensor lf = at::log_softmax(rf.logits, -1), lq = at::log_softmax(rq.logits, -1);
    loss = loss + 0.5 * (lf.exp() * (lf - lq)).sum(-1).mean();
    EXPECT_NEAR(loss.item<double>(), adaptation_loss(q, fp, ids, o), 1e-6);
    loss.backward();
    analytic[0] = gain.grad().view({-1})[2].item<double>();
    analytic[1] = ob.grad()[1][5].item<double>();
    analytic[2] = sw.grad()[2][7].item<double>();
  }
  at::Tensor* tensors[3] = {&gain, &ob, &sw};
  for (int k = 0; k < 3; ++k) {
    at::NoGradGuard ng;
    at::Tensor flat = tensors[k]->view({-1});
    const int64_t i = k == 0 ? 2 : k == 1 ? 1 * ob.size(1) + 5 : 2 * sw.size(1) + 7;
    const double h = 1e-2, v = flat[i].item<double>();
    flat[i] = v + h;
    const double up = adaptation_loss(q, fp, ids, o);
    flat[i] = v - h;
    const double down = adaptation_loss(q, fp, ids, o);
    flat[i] = v;
    const double numeric = (up - down) / (2 * h);
    EXPECT_NE(numeric, 0.0) << "parameter " << k;
    EXPECT_NEAR(analytic[k], numeric, 0.02 * std::abs(numeric) + 1e-6) << "parameter " << k;
  }
  lin->end_weight_learning();
}

TEST(LoopQ, OptimizationLowersTheLossAndIsDeterministic) {
  // The per-step losses are on different minibatches; the objective itself, over every
  // calibration window, must fall from the closed-form start (0 steps) to the learned model.
  const at::Tensor calib = ids_of(8, 16, 11);
  const OuroModel fp = tiny_model(25);
  TrajectoryOptions objective;
  objective.kl_weight = loopq_config("ABCD", true).optimize.kl_weight;
  OuroModel start = tiny_model(25);
  QuantConfig start_cfg = loopq_config("ABCD", true);
  start_cfg.optimize.steps = 0;
  quantize_model(start, start_cfg, calib, quiet());
  const double before = adaptation_loss(start, fp, calib, objective);
  std::string bytes[2];
  for (int run = 0; run < 2; ++run) {
    OuroModel m = tiny_model(25);
    QuantConfig cfg = loopq_config("ABCD", true);
    cfg.optimize.steps = 12;
    quantize_model(m, cfg, calib, quiet());
    ASSERT_EQ(cfg.optimize_report.at("loss").size(), 12u);
    EXPECT_LT(adaptation_loss(m, fp, calib, objective), 0.95 * before) << before;
    const fs::path dir = temp_dir("det" + std::to_string(run));
    save_quantized_model(m, cfg, dir.string(), "");
    bytes[run] = file_bytes(dir / "model.safetensors");
    fs::remove_all(dir);
  }
  EXPECT_EQ(bytes[0], bytes[1]);
}

TEST(LoopQ, LearnedWeightsStartAtTheCodesAndMoveThemWithinTheGrid) {
  // --opt-weights: the weight behind the codes starts at the dequantized codes, so 0 steps give
  // the same file as without it; learning then moves some codes (within the int4 grid), lowers
  // the full-batch objective, and leaves one integer tensor per linear.
  const at::Tensor calib = ids_of(8, 16, 11);
  const OuroModel fp = tiny_model(25);
  auto run = [&](bool weights, int64_t steps, double weight_lr) {
    auto m = std::make_unique<OuroModel>(tiny_model(25));
    QuantConfig cfg = loopq_config("AD", false);
    cfg.optimize.steps = steps;
    cfg.optimize.learn_weights = weights;
    cfg.optimize.weight_lr = weight_lr;
    quantize_model(*m, cfg, calib, quiet());
    return std::make_pair(std::move(m), cfg);
  };
  auto bytes_of = [&](OuroModel& m, const QuantConfig& cfg, const std::string& tag) {
    const fs::path dir = temp_dir("lw" + tag);
    save_quantized_model(m, cfg, dir.string(), "");
    std::string b = file_bytes(dir / "model.safetensors");
    fs::remove_all(dir);
    return b;
  };
  auto [plain0, cfg_plain0] = run(false, 0, 0.05);
  auto [learn0, cfg_learn0] = run(true, 0, 0.05);
  EXPECT_EQ(bytes_of(*plain0, cfg_plain0, "p0"), bytes_of(*learn0, cfg_learn0, "l0"));

  auto [learned, cfg_learned] = run(true, 12, 0.05);
  auto [fixed, cfg_fixed] = run(false, 12, 0.05);
  TrajectoryOptions objective;
  objective.kl_weight = cfg_learned.optimize.kl_weight;
  const double before = adaptation_loss(*plain0, fp, calib, objective);
  EXPECT_LT(adaptation_loss(*learned, fp, calib, objective), 0.95 * before) << before;
  int64_t moved = 0;
  const auto a = quant_linears(*learned), b = quant_linears(*fixed);
  for (size_t i = 0; i < a.size(); ++i) {
    const at::Tensor& c = a[i]->weight().codes;
    EXPECT_GE(c.min().item<double>(), -8.0);
    EXPECT_LE(c.max().item<double>(), 7.0);
    EXPECT_TRUE(at::equal(c, c.round()));
    moved += (c != b[i]->weight().codes).sum().item<int64_t>();
  }
  EXPECT_GT(moved, 0);
  EXPECT_GT(cfg_learned.optimize_report.at("parameters").get<int64_t>(),
            cfg_fixed.optimize_report.at("parameters").get<int64_t>());
}

TEST(LoopQ, SharedBackboneForEveryComponentSubset) {
  // Exactly one integer tensor per physical linear, whatever the components; everything that
  // differs by loop is a separate named fp32 tensor with one entry per loop.
  const at::Tensor calib = ids_of(6, 16, 12), ids = ids_of(2, 10, 13);
  const std::string letters = "ABCD";
  for (int mask = 1; mask < 16; ++mask) {
    std::string comps;
    for (int b = 0; b < 4; ++b)
      if (mask & (1 << b)) comps += letters[size_t(b)];
    OuroModel m = tiny_model(26);
    QuantConfig cfg = loopq_config(comps, mask % 2 == 0);
    cfg.optimize.steps = 2;
    quantize_model(m, cfg, calib, quiet());
    const fs::path dir = temp_dir("subset" + comps);
    save_quantized_model(m, cfg, dir.string(), "");
    io::Checkpoint ck = io::Checkpoint::open(dir.string());
    const int64_t N = m.config().num_layers, T = m.config().total_ut_steps;
    std::map<int64_t, int> integer_per_layer;
    for (const auto& name : ck.names()) {
      const io::TensorInfo& t = ck.get(name);
      if (t.dtype == io::DType::U8 || t.dtype == io::DType::I8) {
        ASSERT_EQ(name.rfind("model.layers.", 0), 0u) << name;
        EXPECT_NE(name.find(".qweight"), std::string::npos) << name;
        integer_per_layer[std::stoll(name.substr(13))] += 1;
      }
      if (is_adaptation_tensor(name)) {
        const bool affine = name.find(".loop_out_") != std::string::npos;
        EXPECT_EQ(t.dtype, affine ? io::DType::F16 : io::DType::F32) << name;
        EXPECT_EQ(t.shape.at(0), T) << name;  // LoopQ: one set per loop
      }
    }
    ASSERT_EQ(int64_t(integer_per_layer.size()), N) << comps;
    for (const auto& [layer, n] : integer_per_layer) EXPECT_EQ(n, kNumLayerSites) << comps << " layer " << layer;
    EXPECT_EQ(quantized_format_bytes(m.config(), cfg).adaptation,
              [&] {
                int64_t b = 0;
                for (const auto& name : ck.names())
                  if (is_adaptation_tensor(name)) b += int64_t(ck.get(name).nbytes);
                return b;
              }())
        << comps;
    // Bit-exact reload, adaptations included.
    OuroModel back = load_any_model(dir.string());
    EXPECT_TRUE(at::equal(all_logits(back, ids), all_logits(m, ids))) << comps;
    fs::remove_all(dir);
  }
}

TEST(LoopQ, LearnedStaticIsPooledAndNoWorseThanItsBackbone) {
  const at::Tensor calib = ids_of(8, 16, 14);
  OuroModel fp = tiny_model(27);
  OuroModel backbone = tiny_model(27), learned = tiny_model(27);
  QuantConfig b;
  b.method = Method::QuaRotGPTQ;
  b.act.bits = 4;
  b.act.static_scale = true;
  b.act_samples = 64;
  quantize_model(backbone, b, calib, quiet());
  QuantConfig l = b;
  l.method = Method::LearnedStatic;
  l.optimize.steps = 20;
  l.optimize.batch = 4;
  l.optimize.seqlen = 16;
  l.optimize.progress = false;
  quantize_model(learned, l, calib, quiet());
  EXPECT_EQ(l.act_param_sets, 1);
  EXPECT_EQ(l.out_affine_sets, 1);
  EXPECT_EQ(l.state_sets, 1);
  TrajectoryOptions o;
  o.trajectory = false;
  EXPECT_LE(adaptation_loss(learned, fp, calib, o), adaptation_loss(backbone, fp, calib, o));
}

TEST(LoopQ, DiagnoseOfTheReferenceAgainstItselfIsZero) {
  OuroModel fp = tiny_model(28);
  const Diagnostics d = diagnose(fp, fp, ids_of(3, 12, 15));
  ASSERT_EQ(int64_t(d.per_loop.size()), fp.config().total_ut_steps);
  for (const auto& l : d.per_loop) {
    EXPECT_EQ(l.relative_state_error, 0.0);
    EXPECT_NEAR(l.kl, 0.0, 1e-12);
    EXPECT_EQ(l.top1_agreement, 1.0);
    EXPECT_DOUBLE_EQ(l.ppl, l.ppl_reference);
  }
}

TEST(LoopQ, RejectsBadSpecs) {
  EXPECT_THROW(LoopQSpec::parse("ABX", true), Error);
  EXPECT_THROW(LoopQSpec::parse("AA", true), Error);
  EXPECT_EQ(LoopQSpec::parse("d,b", true).components(), "BD");
  QuantConfig cfg;
  cfg.act.bits = 16;
  cfg.act.static_scale = true;
  EXPECT_THROW(cfg.validate(32, 44, 32, 16), Error);  // static without activation quantization
  cfg.act.bits = 4;
  cfg.act.symmetric = false;
  EXPECT_THROW(cfg.validate(32, 44, 32, 16), Error);  // static scales are symmetric
}

TEST(LoopQ, SmoothingFoldsAreExactIncludingGqa) {
  // Any positive per-channel scales folded at every input group leave the FP model's function
  // unchanged (norms, up_proj rows, v_proj rows per KV head).
  OuroModel ref = tiny_model(29), m = tiny_model(29);
  const LoopLMConfig& c = m.config();
  auto gen = at::make_generator<at::CPUGeneratorImpl>(7);
  const int64_t KVH = c.num_kv_heads, G = c.num_heads / c.num_kv_heads;
  for (int64_t l = 0; l < c.num_layers; ++l) {
    fold_smoothing(m, l, InputGroup::AttnIn, at::rand({c.hidden_size}, gen) + 0.5);
    fold_smoothing(m, l, InputGroup::MlpIn, at::rand({c.hidden_size}, gen) + 0.5);
    fold_smoothing(m, l, InputGroup::DownIn, at::rand({c.intermediate_size}, gen) + 0.5);
    const at::Tensor sv = at::rand({KVH, 1, c.head_dim}, gen) + 0.5;
    fold_smoothing(m, l, InputGroup::OIn, sv.expand({KVH, G, c.head_dim}).reshape({-1}));
  }
  const at::Tensor ids = ids_of(2, 10, 16);
  const at::Tensor a = all_logits(m, ids), b = all_logits(ref, ids);
  EXPECT_LT(((a - b).norm() / b.norm()).item<double>(), 1e-5);
  // Scales that differ between query heads of one KV head cannot be carried by v_proj.
  EXPECT_THROW(fold_smoothing(m, 0, InputGroup::OIn, at::rand({c.q_dim()}, gen) + 0.5), Error);
}

TEST(LoopQ, LoopBalancedSmoothingNeverHurtsTheWorstLoop) {
  const at::Tensor calib = ids_of(6, 16, 17);
  OuroModel m = tiny_model(30);
  ActQuant act;
  act.bits = 4;
  act.static_scale = true;
  const ActivationSampler samples = sample_activations(m, calib, 64, 3);
  const nlohmann::json rep = loop_balanced_smoothing(m, samples, Grid{4, true}, act, true, 0);
  ASSERT_EQ(rep.size(), size_t(m.config().num_layers * kNumInputGroups));
  for (const auto& site : rep) {
    double off_worst = 0, chosen_worst = INFINITY;
    for (const auto& t : site["tried"]) {
      double w = 0;
      for (double e : t["rel_error"]) w = std::max(w, e);
      if (t["alpha"].is_null()) off_worst = w;
      if (t["alpha"] == site["alpha"]) chosen_worst = w;
    }
    EXPECT_LE(chosen_worst, off_worst);
  }
}
