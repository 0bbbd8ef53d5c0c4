// The packed KV cache (int4 / int8 codes with fp32 group scales) against the fp32 cache with
// KV fake quantization: the same logits bit for bit, the same greedy generations, and the bytes
// of the closed-form formula.
#include <gtest/gtest.h>

#include <ATen/core/grad_mode.h>

#include <random>
#include <tuple>

#include "kernels/cpu/kv_codes.h"
#include "model/generate.h"
#include "quant/kv_quant.h"
#include "test_helpers.h"

using namespace loopq;
using loopq::quant::KVFakeQuant;
using loopq::quant::KVPackedCodec;
using loopq::quant::KVQuantSpec;

namespace {

// 2 loops x 2 layers; GQA (4 query heads on 2 KV heads) with head_dim 64, so the flattened KV
// vector (128) takes groups of 32, 64 and 128.
LoopLMConfig kv_config() {
  LoopLMConfig c = loopq::testing::tiny_config(/*kv_heads=*/2, /*loops=*/2);
  c.hidden_size = 64;
  c.head_dim = 64;
  return c;
}

OuroModel kv_model(const KVQuantSpec& spec, uint64_t seed = 3) {
  OuroModel m = random_model(kv_config(), seed, /*init_std=*/0.2, /*random_norms=*/true);
  m.set_attention_transform(std::make_shared<KVFakeQuant>(spec, m.config().num_kv_heads, m.config().head_dim));
  return m;
}

KVQuantSpec spec_of(int bits, bool symmetric, int64_t group, bool rotate = true) {
  KVQuantSpec s;
  s.bits = bits;
  s.symmetric = symmetric;
  s.group_size = group;
  s.rotate_qk = rotate;
  return s;
}

ForwardOptions all_loops() {
  ForwardOptions o;
  o.loops = 2;
  o.loop_logits = true;
  o.exit = ExitMode{};  // last
  return o;
}

// Closed form: per token, 2 (K, V) x loops x layers x batch x (codes + fp32 scales + fp32 zeros).
int64_t packed_bytes_per_token(int bits, bool symmetric, int64_t group, int64_t D, int64_t slots, int64_t batch) {
  const int64_t groups = group > 0 ? D / group : 1;
  const int64_t codes = bits == 4 ? (D + 1) / 2 : D;
  return 2 * slots * batch * (codes + groups * 4 * (symmetric ? 1 : 2));
}

}  // namespace

using Case = std::tuple<int, bool, int64_t>;  // bits, symmetric, group (0: per token)

class PackedKV : public ::testing::TestWithParam<Case> {};

TEST_P(PackedKV, DecodeEqualsFakeQuantFp32CacheBitForBit) {
  const auto [bits, sym, group] = GetParam();
  OuroModel m = kv_model(spec_of(bits, sym, group));
  KVCache packed = m.make_cache(2, 2, 4);  // small capacity: growth of the planes too
  m.set_packed_kv(false);
  KVCache fp32 = m.make_cache(2, 2, 4);
  m.set_packed_kv(true);
  ASSERT_TRUE(packed.codec());
  ASSERT_FALSE(fp32.codec());

  const at::Tensor ids = loopq::testing::random_ids(2, 16, 21);
  at::Tensor mask = at::ones({2, 16}, at::kLong);
  mask[1].narrow(0, 0, 2).fill_(0);  // left padding in the second sequence
  int64_t begin = 0;
  for (int64_t chunk : {5, 1, 1, 3, 1, 1, 1, 1, 1, 1}) {
    const at::Tensor step = ids.narrow(1, begin, chunk), sm = mask.narrow(1, begin, chunk);
    ForwardResult a = m.forward(step, all_loops(), &packed, sm);
    ForwardResult b = m.forward(step, all_loops(), &fp32, sm);
    for (int t = 0; t < 2; ++t)
      EXPECT_TRUE(at::equal(a.loop_logits[t], b.loop_logits[t])) << "tokens " << begin << "+" << chunk << " loop " << t;
    EXPECT_TRUE(at::equal(a.logits, b.logits));
    begin += chunk;
  }
  EXPECT_EQ(packed.length(), 16);
  EXPECT_GE(packed.capacity(), 16);
}

TEST_P(PackedKV, GreedyGenerationsAreIdentical) {
  const auto [bits, sym, group] = GetParam();
  OuroModel m = kv_model(spec_of(bits, sym, group), 5);
  GenerateOptions go;
  go.max_new_tokens = 12;
  go.forward.loops = 2;
  const std::vector<int64_t> prompt = {3, 17, 42, 8, 8, 29, 1};
  const std::vector<int64_t> a = generate(m, prompt, go);
  m.set_packed_kv(false);
  const std::vector<int64_t> b = generate(m, prompt, go);
  EXPECT_EQ(a, b);
  EXPECT_EQ(int64_t(a.size()), 12);
}

// One sequence decodes through the plain decode step, whose attention reads the codes a block
// at a time: the same bits as the fp32 cache of fake-quantized K/V (whose in-place attention
// DecodeMath checks against ATen). Against the ATen step itself there is no tight bound: fp32
// rounding differences in q/k/v flip K/V codes.
TEST_P(PackedKV, SingleSequenceDecodeReadsTheCodesBitForBit) {
  const auto [bits, sym, group] = GetParam();
  at::NoGradGuard no_grad;
  OuroModel m = kv_model(spec_of(bits, sym, group), 7);
  KVCache packed = m.make_cache(1, 2, 4);
  m.set_packed_kv(false);
  KVCache fp32 = m.make_cache(1, 2, 4);
  m.set_packed_kv(true);
  const at::Tensor ids = loopq::testing::random_ids(1, 40, 23);  // > one 32-token attention block
  m.forward(ids.narrow(1, 0, 3), all_loops(), &packed);
  m.forward(ids.narrow(1, 0, 3), all_loops(), &fp32);
  for (int64_t i = 3; i < 40; ++i) {
    const int64_t before = m.fast_decode_layers();
    ForwardResult a = m.forward(ids.narrow(1, i, 1), all_loops(), &packed);
    ForwardResult b = m.forward(ids.narrow(1, i, 1), all_loops(), &fp32);
    EXPECT_EQ(m.fast_decode_layers(), before + 2 * 2 * 2);
    for (int t = 0; t < 2; ++t)
      EXPECT_TRUE(at::equal(a.loop_logits[t], b.loop_logits[t])) << "token " << i << " loop " << t;
  }
  EXPECT_EQ(packed.buffer_bytes(), 0);  // no decoded copy of any slot was made
}

TEST_P(PackedKV, BytesPerTokenFollowTheFormula) {
  const auto [bits, sym, group] = GetParam();
  OuroModel m = kv_model(spec_of(bits, sym, group));
  const int64_t D = 2 * 64, slots = 2 * 2, B = 3;
  KVCache packed = m.make_cache(B, 2, 5);
  m.set_packed_kv(false);
  KVCache fp32 = m.make_cache(B, 2, 5);
  EXPECT_EQ(fp32.bytes_per_token(), 2 * slots * B * D * 4);
  EXPECT_EQ(packed.bytes_per_token(), packed_bytes_per_token(bits, sym, group, D, slots, B));
  if (bits == 4) EXPECT_LE(double(packed.bytes_per_token()), 0.30 * double(fp32.bytes_per_token()));
  if (bits == 8) EXPECT_LE(double(packed.bytes_per_token()), 0.35 * double(fp32.bytes_per_token()));
  // bytes() is the storage at capacity plus the one dequantization buffer, before and after growth.
  EXPECT_EQ(packed.bytes(), packed.bytes_per_token() * packed.capacity());
  EXPECT_EQ(fp32.bytes(), fp32.bytes_per_token() * fp32.capacity());
  const at::Tensor ids = loopq::testing::random_ids(B, 9, 4);
  m.forward(ids, all_loops(), &packed);
  EXPECT_EQ(packed.buffer_bytes(), 2 * B * D * packed.capacity() * 4);
  EXPECT_EQ(packed.bytes(), packed.bytes_per_token() * packed.capacity() + packed.buffer_bytes());
}

INSTANTIATE_TEST_SUITE_P(BitsGridGroup, PackedKV,
                         ::testing::Combine(::testing::Values(4, 8), ::testing::Bool(),
                                            ::testing::Values(int64_t(32), int64_t(64), int64_t(128), int64_t(0))),
                         [](const ::testing::TestParamInfo<Case>& i) {
                           return "int" + std::to_string(std::get<0>(i.param)) + (std::get<1>(i.param) ? "_sym" : "_asym") +
                                  "_g" + std::to_string(std::get<2>(i.param));
                         });

TEST(PackedKVCache, WithoutHeadRotationToo) {
  OuroModel m = kv_model(spec_of(4, false, 64, /*rotate=*/false));
  KVCache packed = m.make_cache(1, 2, 16);
  m.set_packed_kv(false);
  KVCache fp32 = m.make_cache(1, 2, 16);
  const at::Tensor ids = loopq::testing::random_ids(1, 10, 8);
  for (int64_t i = 0; i < 10; ++i) {
    const at::Tensor step = ids.narrow(1, i, 1);
    EXPECT_TRUE(at::equal(m.forward(step, all_loops(), &packed).logits, m.forward(step, all_loops(), &fp32).logits)) << i;
  }
}

TEST(PackedKVCache, ForwardWithoutCacheIsTheFakeQuantPath) {
  // The perplexity path: no cache, so apply() fake-quantizes K/V as before; a packed-cache
  // prefill of the same tokens agrees (up to the matmul on a strided view of the buffer).
  OuroModel m = kv_model(spec_of(4, false, 32));
  const at::Tensor ids = loopq::testing::random_ids(1, 12, 6);
  const at::Tensor plain = m.forward(ids, all_loops()).logits;
  KVCache packed = m.make_cache(1, 2, 12);
  const at::Tensor cached = m.forward(ids, all_loops(), &packed).logits;
  EXPECT_LT(loopq::testing::max_abs_diff(plain, cached), 1e-4);
  // And the fake quant is really applied: an FP-KV model gives other logits.
  OuroModel fp = kv_model(spec_of(16, false, 32, /*rotate=*/false));
  EXPECT_GT(loopq::testing::max_abs_diff(fp.forward(ids, all_loops()).logits, plain), 1e-4);
}

TEST(PackedKVCache, CopiesOfAContextStepIndependently) {
  // The log-likelihood scorer's use: copies of one context cache share its storage and the
  // dequantization buffer, and step one after another past the context.
  OuroModel m = kv_model(spec_of(8, true, 64));
  const at::Tensor ctx = loopq::testing::random_ids(1, 6, 1), c1 = loopq::testing::random_ids(1, 3, 2),
                   c2 = loopq::testing::random_ids(1, 4, 3);
  KVCache packed = m.make_cache(1, 2, 10);
  m.set_packed_kv(false);
  KVCache fp32 = m.make_cache(1, 2, 10);
  m.set_packed_kv(true);
  m.forward(ctx, all_loops(), &packed);
  m.forward(ctx, all_loops(), &fp32);
  for (const at::Tensor& c : {c1, c2, c1}) {
    KVCache p = packed, f = fp32;
    EXPECT_TRUE(at::equal(m.forward(c, all_loops(), &p).logits, m.forward(c, all_loops(), &f).logits));
  }
}

TEST(PackedKVCache, RejectsACacheOfAnotherQuantization) {
  OuroModel m = kv_model(spec_of(4, false, 64));
  KVCache packed = m.make_cache(1, 2, 8);
  m.set_attention_transform(std::make_shared<KVFakeQuant>(spec_of(4, false, 64), 2, 64));
  EXPECT_THROW(m.forward(at::zeros({1, 2}, at::kLong), all_loops(), &packed), loopq::Error);
  m.set_attention_transform(nullptr);
  EXPECT_THROW(m.forward(at::zeros({1, 2}, at::kLong), all_loops(), &packed), loopq::Error);
}

TEST(PackedKVCache, UnsupportedBitsFallBackToFp32WithOneNotice) {
  for (int bits : {2, 3, 5, 6, 7}) {
    OuroModel m = kv_model(spec_of(bits, false, 64));
    ::testing::internal::CaptureStderr();
    KVCache c1 = m.make_cache(1, 2, 8);
    KVCache c2 = m.make_cache(1, 2, 8);
    const std::string err = ::testing::internal::GetCapturedStderr();
    EXPECT_FALSE(c1.codec());
    EXPECT_FALSE(c2.codec());
    EXPECT_NE(err.find("KV cache stays fp32"), std::string::npos) << err;
    EXPECT_NE(err.find("KV bits " + std::to_string(bits)), std::string::npos) << err;
    EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << "one line, once per model: " << err;
    EXPECT_EQ(c1.bytes_per_token(), 2 * 4 * 128 * 4);
  }
  // Packed formats and FP KV caches print nothing; neither does a cache with packing turned off.
  for (int bits : {4, 8, 16}) {
    OuroModel m = kv_model(spec_of(bits, true, 32));
    ::testing::internal::CaptureStderr();
    KVCache c = m.make_cache(1, 2, 8);
    m.set_packed_kv(false);
    KVCache d = m.make_cache(1, 2, 8);
    EXPECT_EQ(::testing::internal::GetCapturedStderr(), "");
    EXPECT_EQ(bool(c.codec()), bits < 16);
    EXPECT_FALSE(d.codec());
  }
}

// ---- the int4 / int8 row format --------------------------------------------------------------

TEST(PackedKVCodes, Int4PackingRoundTripsOnOddSizes) {
  std::mt19937 rng(5);
  for (int bits : {4, 8})
    for (int64_t n : {1, 2, 3, 7, 15, 16, 33, 127}) {
      std::vector<uint8_t> u(n), packed(bits == 4 ? (n + 1) / 2 : n, 0xAA), back(n, 0xFF);
      for (auto& x : u) x = uint8_t(rng() % (1u << bits));
      kernels::kv_pack_codes(bits, u.data(), n, packed.data());
      kernels::kv_unpack_codes(bits, packed.data(), n, back.data());
      EXPECT_EQ(u, back) << bits << " bits, n " << n;
      if (bits == 4) {
        EXPECT_EQ(packed[0] & 0xF, u[0]);  // even value in the low nibble
        if (n % 2) EXPECT_EQ(packed.back() >> 4, 0) << "odd tail: high nibble zero";
      }
    }
}

TEST(PackedKVCodes, DequantizedRowsScatterIntoHeads) {
  // 3 heads of 5 (odd row of 15 values), groups of 5 and 3, with and without zero points.
  for (int64_t group : {5, 3, 15})
    for (bool zero : {false, true}) {
      kernels::KVRowFormat f;
      f.bits = 4, f.code_offset = zero ? 0 : -8, f.n = 15, f.group = group, f.has_zero = zero;
      const int64_t rows = 4, G = f.groups(), cap = 6;
      std::vector<uint8_t> u(rows * 15), codes(rows * f.code_bytes());
      std::vector<float> s(rows * G), z(rows * G);
      std::mt19937 rng{static_cast<unsigned>(group)};
      for (auto& x : u) x = uint8_t(rng() % 16);
      for (auto& x : s) x = 0.01f * float(1 + rng() % 100);
      for (auto& x : z) x = float(int(rng() % 16));
      for (int64_t r = 0; r < rows; ++r) kernels::kv_pack_codes(4, &u[r * 15], 15, &codes[r * f.code_bytes()]);
      std::vector<float> out(3 * cap * 5, -1.0f);
      kernels::kv_dequant_rows(f, codes.data(), s.data(), zero ? z.data() : nullptr, rows, out.data(), 5, 5, cap * 5);
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t j = 0; j < 15; ++j) {
          const int64_t g = r * G + j / group;
          const float want = s[g] * (float(int(u[r * 15 + j]) + f.code_offset) - (zero ? z[g] : 0.0f));
          EXPECT_EQ(out[(j / 5) * cap * 5 + r * 5 + j % 5], want) << "row " << r << " value " << j;
        }
      EXPECT_EQ(out[rows * 5], -1.0f) << "tokens past `rows` untouched";
    }
}

TEST(PackedKVCodes, CodecDecodesTheFakeQuantValuesBitForBit) {
  // Odd row: 3 KV heads of 6 -> 18 values; odd group 9 and per-token too.
  auto gen = at::make_generator<at::CPUGeneratorImpl>(17);
  for (int bits : {4, 8})
    for (bool sym : {false, true})
      for (int64_t group : {int64_t(6), int64_t(9), int64_t(0)}) {
        const KVQuantSpec spec = spec_of(bits, sym, group, /*rotate=*/false);
        KVFakeQuant fq(spec, 3, 6);
        KVPackedCodec codec(spec, 3, 6);
        at::Tensor k = at::randn({2, 3, 5, 6}, gen) * 3.0;
        k[0][1][2].fill_(0.0);  // an all-zero stretch
        at::Tensor q = at::randn({2, 3, 5, 6}, gen), v = k.clone(), kf = k.clone();
        fq.apply(0, 0, q, kf, v);
        std::vector<at::Tensor> planes = codec.make_planes(2, 7, at::TensorOptions());
        codec.encode(k.narrow(2, 0, 2), 0, planes);
        codec.encode(k.narrow(2, 2, 3), 2, planes);
        at::Tensor out = at::full({2, 3, 8, 6}, -7.0);
        codec.decode(planes, 5, out);
        EXPECT_TRUE(at::equal(out.narrow(2, 0, 5), kf)) << bits << (sym ? " sym g" : " asym g") << group;
        // One head's block of tokens, as attention reads it, is the same bits (groups of 9 straddle heads).
        for (int64_t b = 0; b < 2; ++b)
          for (int64_t h = 0; h < 3; ++h)
            for (int64_t t0 : {0, 1, 3}) {
              const int64_t count = 5 - t0;
              at::Tensor block = at::full({count, 6}, -7.0);
              codec.decode_head(planes, b, h, t0, count, block.data_ptr<float>());
              EXPECT_TRUE(at::equal(block, kf[b][h].narrow(0, t0, count))) << b << " " << h << " " << t0;
            }
        EXPECT_THROW(codec.decode_head(planes, 0, 3, 0, 1, out.data_ptr<float>()), Error);
        EXPECT_THROW(codec.decode_head(planes, 0, 0, 5, 3, out.data_ptr<float>()), Error);
        EXPECT_EQ(planes[0].size(2), bits == 4 ? 9 : 18);
        EXPECT_EQ(int64_t(planes.size()), sym ? 2 : 3);
      }
}

TEST(PackedKVCodes, KernelQuantizationMatchesQuantizeActivationBitForBit) {
  // Rows with all-zero, constant, all-positive and all-negative groups besides random ones, at
  // several magnitudes; 4 and 8 bits, both grids, groups and per-token (widened) ranges.
  auto gen = at::make_generator<at::CPUGeneratorImpl>(23);
  const int64_t n = 24, rows = 9;
  at::Tensor x = at::randn({rows, n}, gen) * at::pow(10.0, at::randint(-3, 4, {rows, 1}, gen).to(at::kFloat));
  x[0].zero_();
  x[1].fill_(0.37);
  x[2] = x[2].abs() + 0.5;
  x[3] = -x[3].abs() - 0.25;
  x[4].narrow(0, 0, 8).zero_();
  x = x.contiguous();
  for (int bits : {4, 8})
    for (bool sym : {false, true})
      for (int64_t group : {int64_t(8), int64_t(12), int64_t(0)})
        for (double clip : {0.95, 1.0}) {
          kernels::KVRowFormat f;
          const quant::Grid grid{bits, sym};
          f.bits = bits, f.code_offset = int32_t(grid.qmin()), f.n = n, f.group = group > 0 ? group : n;
          f.has_zero = !sym;
          std::vector<uint8_t> codes(rows * f.code_bytes()), u(n);
          std::vector<float> s(rows * f.groups()), z(rows * f.groups(), -5.0f);
          kernels::kv_quantize_rows(f, x.data_ptr<float>(), rows, float(clip), group <= 0, codes.data(), s.data(), z.data());
          const quant::ActCodes want = quant::quantize_activation(x, grid, clip, group);
          const at::Tensor ws = want.params.scale.reshape({rows, -1}).contiguous(), wz = want.params.zero.reshape({rows, -1}).contiguous();
          const at::Tensor wc = want.codes.reshape({rows, n}).contiguous();
          for (int64_t r = 0; r < rows; ++r) {
            kernels::kv_unpack_codes(bits, &codes[r * f.code_bytes()], n, u.data());
            for (int64_t j = 0; j < n; ++j)
              ASSERT_EQ(float(int(u[j]) + f.code_offset), wc[r][j].item<float>()) << "row " << r << " value " << j;
            for (int64_t g = 0; g < f.groups(); ++g) {
              ASSERT_EQ(s[r * f.groups() + g], ws[r][g].item<float>()) << "scale, row " << r;
              if (!sym) ASSERT_EQ(z[r * f.groups() + g], wz[r][g].item<float>()) << "zero, row " << r;
            }
          }
        }
}

TEST(PackedKVCache, BytesPerTokenAtTheOuro14BShape) {
  // 24 layers x 4 loops = 96 slots, 16 KV heads x 128 = 2048 values per token and slot: the
  // figures docs/RESULTS.md section 6 quotes.
  const int64_t slots = 96, D = 2048;
  auto cache = [&](int bits, bool sym, int64_t group) {
    std::shared_ptr<const KVCodec> codec;
    if (bits < 16) codec = std::make_shared<KVPackedCodec>(spec_of(bits, sym, group), 16, 128);
    return KVCache(1, 4, 24, 16, 128, 1, at::TensorOptions().dtype(at::kFloat), codec).bytes_per_token();
  };
  EXPECT_EQ(cache(16, false, 0), 1572864);
  EXPECT_EQ(cache(8, false, 128), 417792);
  EXPECT_EQ(cache(4, false, 128), 221184);
  EXPECT_EQ(cache(4, false, 32), 294912);
  EXPECT_EQ(cache(4, true, 128), packed_bytes_per_token(4, true, 128, D, slots, 1));
  EXPECT_LE(cache(4, false, 32), 0.30 * 1572864);
}
