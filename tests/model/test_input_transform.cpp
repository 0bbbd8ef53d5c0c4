// The input-shaping transform (quant/input_transform.h): its closed form reaches the minimum of
// tr(P C) tr(P⁻¹ G), reduces to rotation-aware smoothing on diagonal statistics, leaves the FP
// function unchanged, keeps a transform only where it lowers the measured error, and a quantized
// model carrying transforms reloads bit-exactly on both paths and rejects bad transform tensors.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <unistd.h>

#include "io/safetensors.h"
#include "quant/act_calibration.h"
#include "quant/input_transform.h"
#include "quant/ptq.h"
#include "quant/quantized_io.h"
#include "quant/quarot.h"
#include "test_helpers.h"
#include "util/error.h"

namespace fs = std::filesystem;
using namespace loopq;
using namespace loopq::quant;
using loopq::testing::quiet;
using loopq::testing::tiny_model;

namespace {

at::Tensor random_spd(int64_t n, uint64_t seed, double spread) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  const at::Tensor A = at::randn({n, n}, gen, at::kDouble);
  const at::Tensor Q = std::get<0>(at::linalg_qr(A));
  const at::Tensor e = at::exp(spread * at::randn({n}, gen, at::kDouble));
  return at::matmul(Q * e.unsqueeze(0), Q.t());
}

double objective(const at::Tensor& T, const at::Tensor& C, const at::Tensor& G) {
  const at::Tensor P = at::matmul(T, T.t());
  return (at::matmul(P, C).trace() * at::matmul(at::linalg_inv(P), G).trace()).item<double>();
}

at::Tensor sqrtm(const at::Tensor& S) {
  at::Tensor e, V;
  std::tie(e, V) = at::linalg_eigh(S);
  return at::matmul(V * e.clamp_min(0).sqrt().unsqueeze(0), V.t());
}

fs::path temp_dir(const std::string& name) {
  fs::path p = fs::temp_directory_path() / ("loopq_test_transform_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(p);
  return p;
}

}  // namespace

TEST(InputTransform, ClosedFormReachesTheMinimum) {
  // min over P of tr(P C) tr(P⁻¹ G) is (tr (C^1/2 G C^1/2)^1/2)²; identity and perturbed
  // transforms are never better.
  const int64_t n = 24;
  const at::Tensor C = random_spd(n, 1, 1.5), G = random_spd(n, 2, 1.0);
  const at::Tensor T = shaping_transform(C, G, 0.0);
  EXPECT_TRUE(at::allclose(T, T.t(), 0, 1e-10));
  const at::Tensor Ch = sqrtm(C);
  const double bound = std::pow(sqrtm(at::matmul(at::matmul(Ch, G), Ch)).trace().item<double>(), 2);
  const double at_T = objective(T, C, G);
  EXPECT_NEAR(at_T / bound, 1.0, 1e-9);
  EXPECT_LT(at_T, 0.9 * objective(at::eye(n, at::kDouble), C, G));
  auto gen = at::make_generator<at::CPUGeneratorImpl>(3);
  for (int k = 0; k < 20; ++k) {
    const at::Tensor D = at::eye(n, at::kDouble) + 0.05 * at::randn({n, n}, gen, at::kDouble);
    EXPECT_GE(objective(at::matmul(T, D), C, G), at_T * (1 - 1e-12));
  }
}

TEST(InputTransform, DiagonalStatisticsGiveRotationAwareSmoothing) {
  // With diagonal C and G the transform is diagonal, t_j ∝ (g_j / c_j)^(1/4), the smoothing
  // s_j = 1 / t_j ∝ (c_j / g_j)^(1/4) of rotation-aware smoothing (loop_smoothing.cpp).
  const at::Tensor c = at::tensor({1.0, 4.0, 9.0, 0.25, 100.0}, at::kDouble);
  const at::Tensor g = at::tensor({2.0, 1.0, 0.5, 3.0, 1.0}, at::kDouble);
  const at::Tensor T = shaping_transform(at::diag(c), at::diag(g), 0.0);
  EXPECT_LT((T - at::diag(T.diagonal())).abs().max().item<double>(), 1e-12);
  const at::Tensor want = (g / c).pow(0.25);
  const at::Tensor ratio = T.diagonal() / want;
  EXPECT_LT((ratio / ratio[0] - 1).abs().max().item<double>(), 1e-10);
  EXPECT_THROW(shaping_transform(at::eye(3, at::kDouble), at::eye(4, at::kDouble), 0.0), Error);
}

TEST(InputTransform, FoldingLeavesTheFpFunctionAndKeepsOnlyWhatHelps) {
  OuroModel ref = tiny_model(41), m = tiny_model(41);
  quarot_rotate_model(ref, 3);
  quarot_rotate_model(m, 3);
  const at::Tensor calib = loopq::testing::random_ids(6, 16, 42), ids = loopq::testing::random_ids(2, 12, 43);
  ActQuant act;
  act.bits = 4;
  act.clip = 0.9;
  const ActivationSampler samples = sample_activations(m, calib, 64, 3);
  const TransformChoice choice = shape_input_transforms(m, samples, Grid{4, true}, act, {true, true, true, true}, true);
  ASSERT_EQ(int64_t(choice.groups.size()), m.config().num_layers);
  ASSERT_EQ(choice.report.size(), size_t(m.config().num_layers * kNumInputGroups));
  int kept = 0;
  for (const auto& site : choice.report) {
    double with = 0, without = 0;
    for (double e : site["rel_error_transformed"]) with += e;
    for (double e : site["rel_error_rotated"]) without += e;
    EXPECT_EQ(site["transform"].get<bool>(), with < without);
    EXPECT_GT(site["predicted_noise_ratio"].get<double>(), 0.0);
    EXPECT_LE(site["predicted_noise_ratio"].get<double>(), 1.0 + 1e-9);
    kept += site["transform"].get<bool>();
    const int64_t l = site["layer"].get<int64_t>();
    const InputGroup g = site["input"] == "attn_in" ? InputGroup::AttnIn
                         : site["input"] == "o_in"  ? InputGroup::OIn
                         : site["input"] == "mlp_in" ? InputGroup::MlpIn
                                                     : InputGroup::DownIn;
    const LinearParts parts = linear_parts(m.weights().layers[size_t(l)].linear(sites_of(g).front()));
    EXPECT_EQ(parts.rotation.kind == InputRotation::Kind::Dense, site["transform"].get<bool>());
  }
  EXPECT_GT(kept, 0);  // random weights and inputs still leave something to shape
  const at::Tensor a = loopq::testing::stacked_loop_logits(m, ids), b = loopq::testing::stacked_loop_logits(ref, ids);
  EXPECT_LT(((a - b).norm() / b.norm()).item<double>(), 1e-4);
}

TEST(InputTransform, QuantizedModelsReloadBitExactlyOnBothPaths) {
  const at::Tensor calib = loopq::testing::random_ids(6, 16, 44), ids = loopq::testing::random_ids(2, 10, 45);
  for (const Method method : {Method::QuaRotGPTQ, Method::LoopQ}) {
    for (const bool static_acts : {false, true}) {
      OuroModel m = tiny_model(46);
      QuantConfig cfg;
      cfg.method = method;
      cfg.loopq = LoopQSpec::parse(method == Method::LoopQ ? "ABC" : "", true);
      cfg.act.bits = 4;
      cfg.act.clip = 0.9;
      cfg.act.static_scale = static_acts;
      cfg.act_samples = 64;
      cfg.transform_request = {true, true, true, true};
      quantize_model(m, cfg, calib, quiet());
      ASSERT_FALSE(cfg.transform_groups.empty());
      const fs::path dir = temp_dir(std::string(method_name(method)) + (static_acts ? "_static" : "_dynamic"));
      save_quantized_model(m, cfg, dir.string(), "");
      int stored = 0;
      {
        io::Checkpoint ck = io::Checkpoint::open(dir.string());
        for (const auto& name : ck.names()) stored += name.find(".input_transform") != std::string::npos;
      }
      int kept = 0;
      for (const auto& g : cfg.transform_groups) kept += g[0] + g[1] + g[2] + g[3];
      EXPECT_EQ(stored, kept);
      const at::Tensor want = loopq::testing::stacked_loop_logits(m, ids);
      OuroModel ref = load_any_model(dir.string(), LoadOptions{}, Kernels::Reference);
      EXPECT_TRUE(at::equal(loopq::testing::stacked_loop_logits(ref, ids), want)) << method_name(method);
      OuroModel packed = load_any_model(dir.string(), LoadOptions{}, Kernels::Packed);
      EXPECT_TRUE(at::equal(loopq::testing::stacked_loop_logits(packed, ids), want)) << method_name(method);
      EXPECT_EQ(quantized_format_bytes(m.config(), cfg).transform, [&] {
        int64_t b = 0;
        io::Checkpoint ck = io::Checkpoint::open(dir.string());
        for (const auto& name : ck.names())
          if (name.find(".input_transform") != std::string::npos) b += int64_t(ck.get(name).nbytes);
        return b;
      }());
      fs::remove_all(dir);
    }
  }
}

TEST(InputTransform, RejectsARotationlessMethod) {
  OuroModel m = tiny_model(47);
  QuantConfig cfg;
  cfg.method = Method::GPTQ;
  cfg.transform_request = {true, false, false, false};
  EXPECT_THROW(quantize_model(m, cfg, loopq::testing::random_ids(2, 8, 48), quiet()), Error);
}

TEST(InputTransform, OnOneLoopTheLoopBalancedTransformIsThePooledOne) {
  // One loop: the balanced second moment is the pooled one divided by a scalar, which the
  // normalised closed form does not see.
  const LoopLMConfig c = loopq::testing::tiny_config(2, /*loops=*/1);
  const at::Tensor calib = loopq::testing::random_ids(4, 16, 49);
  ActQuant act;
  act.bits = 4;
  act.clip = 0.9;
  std::vector<at::Tensor> maps[2];
  for (int balanced = 0; balanced < 2; ++balanced) {
    OuroModel m = random_model(c, 50, 0.2, true);
    quarot_rotate_model(m, 1);
    const ActivationSampler samples = sample_activations(m, calib, 64, 4);
    shape_input_transforms(m, samples, Grid{4, true}, act, {true, true, true, true}, balanced == 1);
    for (auto& L : m.weights().layers)
      for (int g = 0; g < kNumInputGroups; ++g) {
        const LinearParts p = linear_parts(L.linear(sites_of(InputGroup(g)).front()));
        maps[balanced].push_back(p.rotation.kind == InputRotation::Kind::Dense ? p.rotation.dense : at::Tensor());
      }
  }
  for (size_t i = 0; i < maps[0].size(); ++i) {
    ASSERT_EQ(maps[0][i].defined(), maps[1][i].defined()) << i;
    if (maps[0][i].defined()) EXPECT_TRUE(at::allclose(maps[0][i], maps[1][i], 1e-5, 1e-6)) << i;
  }
}
