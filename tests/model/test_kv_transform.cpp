// The KV-cache shaping transforms (quant/kv_transform.h): the key map keeps every attention score,
// the value map with its folded inverse keeps the FP function, each map is kept only where it
// lowers the measured error, a quantized model carrying them reloads bit-exactly on both paths,
// and a singular stored key map is refused.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <unistd.h>

#include "io/safetensors.h"
#include "quant/kv_quant.h"
#include "quant/kv_transform.h"
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

at::Tensor random_maps(int64_t heads, int64_t hd, uint64_t seed) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  return (at::eye(hd).expand({heads, hd, hd}) + 0.3 * at::randn({heads, hd, hd}, gen)).contiguous();
}

}  // namespace

TEST(KVTransform, MapsKeepScoresAndValuesUpToTheirInverse) {
  // q H T⁻ᵀ (k H T)ᵀ = q kᵀ for every query head of a KV head (GQA: 4 query heads on 2 KV
  // heads), and v T is v mapped per head.
  const int64_t KVH = 2, hd = 8, B = 2, S = 5;
  KVQuantSpec spec;
  spec.rotate_qk = true;
  auto shaping = std::make_shared<KVShaping>();
  shaping->k = {at::Tensor(), random_maps(KVH, hd, 1)};
  shaping->v = {random_maps(KVH, hd, 2)};
  spec.shaping = shaping;
  const KVFakeQuant kvq(spec, KVH, hd);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(3);
  const at::Tensor q0 = at::randn({B, 2 * KVH, S, hd}, gen), k0 = at::randn({B, KVH, S, hd}, gen),
                   v0 = at::randn({B, KVH, S, hd}, gen);
  auto scores = [&](const at::Tensor& q, const at::Tensor& k) {
    return at::matmul(q.reshape({B, KVH, 2 * S, hd}), k.transpose(2, 3));
  };
  for (int layer : {0, 1}) {
    at::Tensor q = q0, k = k0, v = v0;
    kvq.apply_unquantized(0, layer, q, k, v);
    EXPECT_TRUE(at::allclose(scores(q, k), scores(q0, k0), 1e-4, 1e-4)) << layer;
    if (layer == 1) EXPECT_FALSE(at::allclose(k, k0, 1e-2, 1e-2));  // mapped, not only rotated
    const at::Tensor want_v = layer == 0 ? at::matmul(v0, shaping->v[0]) : v0;
    EXPECT_TRUE(at::allclose(v, want_v, 1e-5, 1e-5)) << layer;
  }
  KVQuantSpec bad = spec;
  auto singular = std::make_shared<KVShaping>(), misshapen = std::make_shared<KVShaping>();
  singular->k = {at::zeros({KVH, hd, hd})};
  misshapen->k = {at::zeros({KVH, hd + 1, hd})};
  bad.shaping = singular;
  EXPECT_THROW(KVFakeQuant(bad, KVH, hd), Error);
  bad.shaping = misshapen;
  EXPECT_THROW(KVFakeQuant(bad, KVH, hd), Error);
}

TEST(KVTransform, FoldingLeavesTheFpFunctionAndKeepsOnlyWhatHelps) {
  OuroModel ref = tiny_model(61), m = tiny_model(61);
  quarot_rotate_model(ref, 3);
  quarot_rotate_model(m, 3);
  KVQuantSpec kv;
  kv.bits = 4;
  kv.group_size = 8;
  kv.rotate_qk = true;
  const at::Tensor calib = loopq::testing::random_ids(6, 16, 62), ids = loopq::testing::random_ids(2, 12, 63);
  const KVTransformChoice choice = shape_kv_transforms(m, calib, 64, 3, kv, {true, true}, true);
  ASSERT_EQ(int64_t(choice.layers.size()), m.config().num_layers);
  ASSERT_EQ(choice.report.size(), size_t(2 * m.config().num_layers));
  int kept = 0;
  for (const auto& r : choice.report) {
    double with = 0, without = 0;
    for (double e : r["rel_error_transformed"]) with += e;
    for (double e : r["rel_error_plain"]) without += e;
    EXPECT_EQ(r["transform"].get<bool>(), with < without);
    const int64_t l = r["layer"].get<int64_t>();
    const int tensor = r["tensor"] == "k" ? 0 : 1;
    EXPECT_EQ(choice.layers[size_t(l)][size_t(tensor)], r["transform"].get<bool>());
    EXPECT_EQ((tensor == 0 ? choice.shaping.k : choice.shaping.v)[size_t(l)].defined(), r["transform"].get<bool>());
    kept += r["transform"].get<bool>();
  }
  EXPECT_GT(kept, 0);
  // The maps (cache in FP) with o_proj's folded inverse give the model R3 alone gives.
  KVQuantSpec maps = kv, plain = kv;
  maps.bits = plain.bits = 16;
  maps.shaping = std::make_shared<const KVShaping>(choice.shaping);
  const auto& c = m.config();
  m.set_attention_transform(std::make_shared<KVFakeQuant>(maps, c.num_kv_heads, c.head_dim));
  ref.set_attention_transform(std::make_shared<KVFakeQuant>(plain, c.num_kv_heads, c.head_dim));
  const at::Tensor a = loopq::testing::stacked_loop_logits(m, ids), b = loopq::testing::stacked_loop_logits(ref, ids);
  EXPECT_LT(((a - b).norm() / b.norm()).item<double>(), 1e-4);
}

TEST(KVTransform, QuantizedModelsReloadBitExactlyOnBothPaths) {
  const at::Tensor calib = loopq::testing::random_ids(6, 16, 64), ids = loopq::testing::random_ids(2, 10, 65);
  for (const Method method : {Method::QuaRotGPTQ, Method::LoopQ}) {
    OuroModel m = tiny_model(66);
    QuantConfig cfg;
    cfg.method = method;
    cfg.loopq = LoopQSpec::parse(method == Method::LoopQ ? "A" : "", true);
    cfg.act.bits = 4;
    cfg.act.clip = 0.9;
    cfg.kv.bits = 4;
    cfg.kv.group_size = 8;
    cfg.act_samples = 64;
    cfg.kv_transform_request = {true, true};
    quantize_model(m, cfg, calib, quiet());
    ASSERT_EQ(int64_t(cfg.kv_transform_layers.size()), m.config().num_layers);
    const fs::path dir = fs::temp_directory_path() /
                         ("loopq_test_kv_transform_" + std::string(method_name(method)) + "_" + std::to_string(::getpid()));
    fs::remove_all(dir);
    save_quantized_model(m, cfg, dir.string(), "");
    int stored = 0, kept = 0;
    int64_t bytes = 0;
    {
      io::Checkpoint ck = io::Checkpoint::open(dir.string());
      for (const auto& name : ck.names())
        if (name.find("_transform") != std::string::npos) ++stored, bytes += int64_t(ck.get(name).nbytes);
    }
    for (const auto& b : cfg.kv_transform_layers) kept += b[0] + b[1];
    EXPECT_EQ(stored, kept);
    EXPECT_EQ(quantized_format_bytes(m.config(), cfg).transform, bytes);
    const at::Tensor want = loopq::testing::stacked_loop_logits(m, ids);
    OuroModel ref = load_any_model(dir.string(), LoadOptions{}, Kernels::Reference);
    EXPECT_TRUE(at::equal(loopq::testing::stacked_loop_logits(ref, ids), want)) << method_name(method);
    OuroModel packed = load_any_model(dir.string(), LoadOptions{}, Kernels::Packed);
    EXPECT_TRUE(at::equal(loopq::testing::stacked_loop_logits(packed, ids), want)) << method_name(method);
    fs::remove_all(dir);
  }
}

TEST(KVTransform, NeedsAQuantizedCacheAndARotatedMethod) {
  QuantConfig cfg;
  cfg.method = Method::QuaRotGPTQ;
  cfg.kv_transform_request = {true, false};
  cfg.kv.group_size = 8;
  EXPECT_THROW(cfg.validate(32, 44, 32, 16), Error);  // KV16
  cfg.kv.bits = 4;
  EXPECT_NO_THROW(cfg.validate(32, 44, 32, 16));
  cfg.method = Method::GPTQ;
  EXPECT_THROW(cfg.validate(32, 44, 32, 16), Error);
}
