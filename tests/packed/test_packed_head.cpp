// The LM head and embedding on the packed runtime: PackedDenseLinear against DenseLinear, and a
// bf16-born model whose quantized directory keeps them in bf16 (exactly), loaded in bf16.
#include <gtest/gtest.h>
#include <unistd.h>

#include <ATen/ATen.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "../model/test_helpers.h"
#include "io/safetensors.h"
#include "model/generate.h"
#include "quant/packed_dense_linear.h"
#include "quant/ptq.h"
#include "quant/quantized_io.h"
#include "util/error.h"

namespace fs = std::filesystem;
using namespace loopq;
using namespace loopq::quant;

namespace {

double rel(const at::Tensor& a, const at::Tensor& b) {
  return (a - b).norm().item<double>() / std::max(b.norm().item<double>(), 1e-30);
}

// Decode rows (the kernel) and prefill rows (the GEMM, bf16 widened in blocks) both equal the
// fp32 dense linear on the same values, in every leading shape.
TEST(PackedDenseLinear, EqualsDenseLinear) {
  at::manual_seed(5);
  for (const bool bf16 : {false, true}) {
    const at::Tensor w = bf16 ? at::randn({4100, 37}).to(at::kBFloat16) : at::randn({4100, 37});
    const PackedDenseLinear p(w, 2);
    const DenseLinear ref(w.to(at::kFloat));
    EXPECT_EQ(p.kind(), bf16 ? "packed_dense_bf16" : "packed_dense_f32");
    EXPECT_EQ(p.parameter_bytes(), 4100 * 37 * (bf16 ? 2 : 4));
    EXPECT_TRUE(p.dense_weight().equal(w.to(at::kFloat)));
    for (const auto& shape : std::vector<std::vector<int64_t>>{{37}, {1, 37}, {3, 37}, {1, 4, 37}, {7, 37}, {2, 5, 37}}) {
      const at::Tensor x = at::randn(shape);
      const at::Tensor y = p.forward(x, 0), e = ref.forward(x, 0);
      ASSERT_EQ(y.sizes(), e.sizes());
      EXPECT_LT(rel(y, e), 1e-6) << (bf16 ? "bf16 " : "fp32 ") << x.sizes();
    }
  }
  EXPECT_THROW(PackedDenseLinear(at::randn({4, 5}).to(at::kHalf)), Error);
  EXPECT_THROW(PackedDenseLinear(at::randn({4})), Error);
  const PackedDenseLinear p(at::randn({4, 5}));
  EXPECT_THROW(p.forward(at::randn({2, 6}), 0), Error);
}

fs::path save_quantized(OuroModel& m, const std::string& tag) {
  const fs::path dir = fs::temp_directory_path() / ("loopq_test_packed_head_" + tag + "_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  QuantConfig cfg;
  cfg.method = Method::RTN;
  cfg.w_bits = 4;
  cfg.act.bits = 8;
  PtqRunOptions run;
  run.progress = false;
  quantize_model(m, cfg, loopq::testing::random_ids(2, 16, 7), run);
  save_quantized_model(m, cfg, dir.string(), "");
  return dir;
}

// A model whose embedding and head hold bf16 values: stored as BF16, loaded as bf16 on the packed
// runtime (fp32 on the reference path), with the same logits and generations.
TEST(PackedHead, Bf16BornModelKeepsBf16EmbeddingAndHead) {
  OuroModel m = loopq::testing::tiny_model(31);
  ASSERT_FALSE(m.config().tie_word_embeddings);
  {
    at::NoGradGuard g;
    m.weights().embed.copy_(m.weights().embed.to(at::kBFloat16).to(at::kFloat));
    auto* head = dynamic_cast<DenseLinear*>(m.weights().lm_head.get());
    ASSERT_NE(head, nullptr);
    head->weight().copy_(head->weight().to(at::kBFloat16).to(at::kFloat));
  }
  const fs::path dir = save_quantized(m, "bf16");
  {
    const io::Checkpoint ck = io::Checkpoint::open(dir.string());
    EXPECT_EQ(ck.get("model.embed_tokens.weight").dtype, io::DType::BF16);
    EXPECT_EQ(ck.get("lm_head.weight").dtype, io::DType::BF16);
  }
  const OuroModel packed = load_any_model(dir.string(), {}, Kernels::Packed);
  const OuroModel ref = load_any_model(dir.string(), {}, Kernels::Reference);
  EXPECT_EQ(packed.weights().embed.scalar_type(), at::kBFloat16);
  EXPECT_EQ(packed.weights().lm_head->kind(), "packed_dense_bf16");
  EXPECT_EQ(ref.weights().embed.scalar_type(), at::kFloat);
  EXPECT_EQ(ref.weights().lm_head->kind(), "dense_f32");
  EXPECT_TRUE(packed.weights().embed.to(at::kFloat).equal(ref.weights().embed));
  EXPECT_TRUE(packed.weights().lm_head->dense_weight().equal(ref.weights().lm_head->dense_weight()));
  const at::Tensor ids = loopq::testing::random_ids(2, 12, 3);
  const at::Tensor a = loopq::testing::stacked_loop_logits(ref, ids);
  const at::Tensor b = loopq::testing::stacked_loop_logits(packed, ids);
  EXPECT_LT(loopq::testing::max_abs_diff(b, a), 1e-4 * std::max(1.0, a.abs().max().item<double>()));
  GenerateOptions go;
  go.max_new_tokens = 12;
  go.stop_ids = {};
  const std::vector<int64_t> prompt = {3, 14, 15, 9};
  EXPECT_EQ(generate(packed, prompt, go), generate(ref, prompt, go));
  fs::remove_all(dir);
}

// A NaN in a BF16 embedding (mapped, not copied) is still refused, naming the tensor, on both paths.
TEST(PackedHead, NanInBf16EmbeddingIsNamed) {
  OuroModel m = loopq::testing::tiny_model(33);
  {
    at::NoGradGuard g;
    m.weights().embed.copy_(m.weights().embed.to(at::kBFloat16).to(at::kFloat));
  }
  const fs::path dir = save_quantized(m, "nan");
  const std::string file = (dir / "model.safetensors").string();
  {
    std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
    uint64_t n = 0;
    f.read(reinterpret_cast<char*>(&n), 8);
    std::string header(size_t(n), '\0');
    f.read(header.data(), std::streamsize(n));
    const auto j = nlohmann::json::parse(header);
    const auto& e = j.at("model.embed_tokens.weight");
    ASSERT_EQ(e.at("dtype"), "BF16");
    const uint64_t at = 8 + n + e.at("data_offsets")[0].get<uint64_t>() + 2 * 37;  // element 37
    const uint16_t nan = 0x7FC0;
    f.seekp(std::streamoff(at));
    f.write(reinterpret_cast<const char*>(&nan), 2);
  }
  for (const Kernels k : {Kernels::Packed, Kernels::Reference}) {
    try {
      load_any_model(dir.string(), {}, k);
      ADD_FAILURE() << "a NaN embedding loaded";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("model.embed_tokens.weight"), std::string::npos) << e.what();
    }
  }
  fs::remove_all(dir);
}

// fp32 values that bf16 would round stay fp32, in the file and in memory.
TEST(PackedHead, Fp32ModelStaysFp32) {
  OuroModel m = loopq::testing::tiny_model(32);
  const fs::path dir = save_quantized(m, "fp32");
  {
    const io::Checkpoint ck = io::Checkpoint::open(dir.string());
    EXPECT_EQ(ck.get("model.embed_tokens.weight").dtype, io::DType::F32);
    EXPECT_EQ(ck.get("lm_head.weight").dtype, io::DType::F32);
  }
  const OuroModel packed = load_any_model(dir.string(), {}, Kernels::Packed);
  EXPECT_EQ(packed.weights().embed.scalar_type(), at::kFloat);
  EXPECT_EQ(packed.weights().lm_head->kind(), "packed_dense_f32");
  fs::remove_all(dir);
}

}  // namespace
