// Whole models on the packed kernels against the fake-quant reference: the same quantized
// directory loaded with Kernels::Packed and Kernels::Reference must give each layer's outputs
// within 1e-5 relative error, logits within 1e-4, and identical greedy generations. Both paths sum
// the integer codes exactly and apply the scales in one order, so they agree bit for bit.
#include <gtest/gtest.h>
#include <unistd.h>

#include <ATen/ATen.h>

#include <filesystem>
#include <string>
#include <vector>

#include "../model/test_helpers.h"
#include "packed_cases.h"
#include "kernels/cpu/kernels.h"
#include "model/generate.h"
#include "model/hooks.h"
#include "quant/packed_linear.h"
#include "quant/ptq.h"
#include "quant/quantized_io.h"
#include "util/error.h"

namespace fs = std::filesystem;
using namespace loopq;
using namespace loopq::quant;

namespace {

using Case = loopq::testing::PackedCase;
using loopq::testing::config_of;

fs::path quantized_dir(const Case& c) {
  const fs::path dir = fs::temp_directory_path() / (std::string("loopq_test_packed_") + c.name + "_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  OuroModel m = loopq::testing::tiny_model(31);
  PtqRunOptions run;
  run.progress = false;
  run.batch_size = 4;
  QuantConfig cfg = config_of(c);
  quantize_model(m, cfg, loopq::testing::random_ids(4, 24, 7), run);
  save_quantized_model(m, cfg, dir.string(), "");
  return dir;
}

class PackedModel : public ::testing::TestWithParam<Case> {};

TEST_P(PackedModel, EqualsTheReferencePath) {
  const Case& c = GetParam();
  const fs::path dir = quantized_dir(c);
  const QuantConfig cfg = config_of(c);
  ASSERT_EQ(why_not_packed(cfg), "");
  const OuroModel ref = load_any_model(dir.string(), {}, Kernels::Reference);
  const OuroModel packed = load_any_model(dir.string(), {}, Kernels::Packed);
  for (const auto& L : packed.weights().layers)
    for (int s = 0; s < kNumLayerSites; ++s)
      ASSERT_EQ(L.linear(LinearSite(s))->kind().rfind("packed_", 0), 0u) << L.linear(LinearSite(s))->kind();
  for (const auto& L : ref.weights().layers) ASSERT_EQ(L.linear(LinearSite::Q)->kind().rfind("fake_", 0), 0u);

  // Exact sums on both paths and one epilogue order: bit for bit, far inside the 1e-5 / 1e-4 bounds.
  loopq::testing::expect_same_outputs(ref, packed, loopq::testing::random_ids(2, 20, 99), c.name);

  GenerateOptions go;
  go.max_new_tokens = 16;
  go.stop_ids = {};
  const std::vector<int64_t> prompt = {3, 14, 15, 9, 26, 5};
  EXPECT_EQ(generate(packed, prompt, go), generate(ref, prompt, go)) << c.name;
  fs::remove_all(dir);
}

INSTANTIATE_TEST_SUITE_P(
    Configs, PackedModel,
    ::testing::Values(Case{"rtn_w4a8", Method::RTN, 4, 8}, Case{"rtn_w4a8_asym", Method::RTN, 4, 8, false, 0},
                      Case{"rtn_w8a8_asym_g4", Method::RTN, 8, 8, false, 4},
                      Case{"rtn_w8a8", Method::RTN, 8, 8}, Case{"quarot_rtn_w4a4", Method::QuaRotRTN, 4, 4},
                      Case{"gptq_w4a8_static", Method::GPTQ, 4, 8, true, 0, true},
                      Case{"loopq_ac_w4a4_static", Method::LoopQ, 4, 4, true, 0, true, "AC"},
                      Case{"loopq_abc_w4a4_dynamic", Method::LoopQ, 4, 4, true, 0, false, "ABC"}),
    [](const auto& info) { return std::string(info.param.name); });

TEST(PackedModelLoad, UnsupportedConfigsAreNamed) {
  QuantConfig cfg;
  cfg.w_bits = 4;
  cfg.act.bits = 16;
  EXPECT_NE(why_not_packed(cfg).find("16-bit activations"), std::string::npos);
  cfg.act.bits = 8;
  cfg.w_bits = 3;
  EXPECT_NE(why_not_packed(cfg).find("3-bit weights"), std::string::npos);
  cfg.w_bits = 4;
  cfg.w_group_size = 4;
  EXPECT_NE(why_not_packed(cfg).find("group size 4"), std::string::npos);
  cfg.w_group_size = 0;
  cfg.act.symmetric = false;
  EXPECT_NE(why_not_packed(cfg).find("asymmetric"), std::string::npos);
  cfg.act.symmetric = true;
  EXPECT_EQ(why_not_packed(cfg), "");
  EXPECT_EQ(parse_kernels("packed"), Kernels::Packed);
  EXPECT_EQ(parse_kernels("reference"), Kernels::Reference);
  EXPECT_THROW(parse_kernels("fast"), Error);
}

TEST(PackedModelLoad, PackedModelKeepsNoFp32WeightCopy) {
  const Case c{"bytes_w4a8", Method::RTN, 4, 8};
  const fs::path dir = quantized_dir(c);
  const OuroModel packed = load_any_model(dir.string(), {}, Kernels::Packed);
  const OuroModel ref = load_any_model(dir.string(), {}, Kernels::Reference);
  int64_t packed_bytes = 0, codes = 0;
  for (const auto& L : packed.weights().layers)
    for (int s = 0; s < kNumLayerSites; ++s) {
      const auto* p = dynamic_cast<const PackedLinear*>(L.linear(LinearSite(s)).get());
      ASSERT_NE(p, nullptr);
      packed_bytes += p->parameter_bytes();
      codes += int64_t(p->packed().codes.size);
    }
  // The dense view is rebuilt from the packed codes and equals the reference's bit for bit.
  for (size_t l = 0; l < ref.weights().layers.size(); ++l)
    for (int s = 0; s < kNumLayerSites; ++s)
      EXPECT_TRUE(packed.weights().layers[l].linear(LinearSite(s))->dense_weight().equal(
          ref.weights().layers[l].linear(LinearSite(s))->dense_weight()));
  // Resident bytes are the packed codes plus fp32 scales: about half a byte per weight.
  int64_t weights = 0;
  for (const auto& L : packed.weights().layers)
    for (int s = 0; s < kNumLayerSites; ++s)
      weights += L.linear(LinearSite(s))->in_features() * L.linear(LinearSite(s))->out_features();
  EXPECT_LT(packed_bytes, weights);  // < 1 byte per weight (fp32 would be 4)
  EXPECT_GE(codes, weights / 2);
  fs::remove_all(dir);
}

TEST(PackedModelLoad, SharedInputsAreQuantizedOnceAndRecomputedAfterAnInPlaceChange) {
  at::manual_seed(4);
  QuantizedWeight a = rtn_quantize(at::randn({24, 64}), Grid{4, true}, 0, false);
  QuantizedWeight b = rtn_quantize(at::randn({40, 64}), Grid{4, true}, 0, false);
  ActQuant act;
  act.bits = 4;
  InputRotation rot;
  rot.kind = InputRotation::Kind::Full;
  rot.hadamard = std::make_shared<HadamardTransform>(64, random_signs(64, 3));
  PackedLinear pa(a, act, rot, {}, 1), pb(b, act, rot, {}, 1);
  const PackedLinear alone(b, act, rot, {}, 1);
  ASSERT_TRUE(pa.share_input_with(pb));
  at::Tensor x = at::randn({3, 64});
  pa.forward(x, 0);
  EXPECT_EQ(x.use_count(), 2);  // held for the second reader
  EXPECT_TRUE(pb.forward(x, 0).equal(alone.forward(x, 0)));
  EXPECT_EQ(x.use_count(), 1);  // every reader has read it: released
  x.mul_(3.0).add_(1.0);  // same tensor, new contents: the cache must not answer
  pa.forward(x, 0);
  EXPECT_TRUE(pb.forward(x, 0).equal(alone.forward(x, 0)));
  // Different activation parameters never share.
  ActQuant act8 = act;
  act8.bits = 8;
  PackedLinear pc(b, act8, rot, {}, 1);
  EXPECT_FALSE(pa.share_input_with(pc));
  InputRotation other = rot;
  other.hadamard = std::make_shared<HadamardTransform>(64, random_signs(64, 4));
  PackedLinear pd(b, act, other, {}, 1);
  EXPECT_FALSE(pa.share_input_with(pd));
}

}  // namespace
