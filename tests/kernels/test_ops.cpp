// test-backend-ops style: every kernel path the CPU has, on many shapes and every format, against
// the scalar reference. Integer accumulation must be exact; fp32 outputs within 1e-5 relative.
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <random>
#include <thread>
#include <string>
#include <vector>

#include "helpers.h"
#include "kernels/cpu/kernels.h"
#include "util/thread_pool.h"
#include "util/error.h"

namespace loopq::kernels::test {
namespace {

struct Shape {
  int64_t out, in;
};

// Formats: int4 / int8, symmetric / asymmetric, per row / groups of 32, 64, 128.
std::vector<Format> formats() {
  std::vector<Format> f;
  for (int bits : {4, 8})
    for (bool sym : {true, false})
      for (int64_t g : {0, 32, 64, 128}) f.push_back({bits, sym, g});
  return f;
}

// Shapes with row tails (out not a multiple of 16, or of the 2-4 tiles per step) and column tails
// (in not a multiple of the 8-column chunk), for per-row formats; grouped formats need in % group
// == 0 and use multiples of 128 plus one odd group count.
std::vector<Shape> shapes(const Format& f) {
  if (f.group > 0) return {{1, 128}, {17, 256}, {33, 384}, {100, 640}, {64, 128 * 3}};
  if (f.bits == 4) return {{1, 2}, {5, 6}, {16, 8}, {17, 14}, {31, 130}, {64, 256}, {65, 1000}, {129, 258}};
  return {{1, 1}, {7, 3}, {16, 4}, {17, 5}, {47, 131}, {64, 256}, {65, 1001}, {130, 130}};
}

std::string name(const Format& f) {
  return "int" + std::to_string(f.bits) + (f.symmetric ? "_sym" : "_asym") + "_g" + std::to_string(f.group);
}

class PathTest : public test::OnPath {};

// Unit scales make every fp32 output the int32 accumulator itself (|acc| < 2^24 here), so the
// comparison is exact equality: integer accumulation, zero points and group sums bit for bit.
TEST_P(PathTest, IntegerAccumulationExact) {
  std::mt19937 gen(1234);
  for (const Format& f : formats())
    for (const Shape& s : shapes(f))
      for (int64_t rows : {1, 2, 3, 4, 5, 8, 9, 19}) {
        const LogicalWeight lw = random_weight(gen, f, s.out, s.in, true);
        const PackedWeight pw = pack(lw);
        for (int abits : {8, 4}) {
          const QuantAct x = random_codes(gen, rows, s.in, pw.in_pad, abits, true);
          std::vector<float> ref(size_t(rows * s.out)), got(size_t(rows * s.out), NAN);
          reference_linear(lw, x, {}, ref.data(), s.out);
          linear(pw, x, {}, got.data(), s.out, rows % 3 + 1);
          for (size_t i = 0; i < ref.size(); ++i)
            ASSERT_EQ(ref[i], got[i]) << name(f) << " [" << s.out << "x" << s.in << "] rows " << rows << " a" << abits
                                      << " at " << i;
        }
      }
}

// Random scales, bias and per-loop affine: the fused epilogue.
TEST_P(PathTest, EpilogueMatchesReference) {
  std::mt19937 gen(99);
  std::normal_distribution<float> d(0.0f, 1.0f);
  for (const Format& f : formats())
    for (const Shape& s : shapes(f))
      for (int64_t rows : {1, 3, 4, 12, 17}) {
        const LogicalWeight lw = random_weight(gen, f, s.out, s.in);
        const PackedWeight pw = pack(lw);
        std::vector<float> bias(size_t(s.out)), c(size_t(s.out)), b(size_t(s.out));
        for (auto* v : {&bias, &c, &b})
          for (auto& e : *v) e = d(gen);
        for (int mask = 0; mask < 8; mask += (rows == 1 ? 1 : 7)) {
          Epilogue ep;
          ep.bias = mask & 1 ? bias.data() : nullptr;
          ep.out_scale = mask & 2 ? c.data() : nullptr;
          ep.out_bias = mask & 4 ? b.data() : nullptr;
          const QuantAct x = random_codes(gen, rows, s.in, pw.in_pad, 8);
          const int64_t ldy = s.out + 3;  // output row stride wider than out
          std::vector<float> ref(size_t(rows * ldy), -7.0f), got(size_t(rows * ldy), -7.0f);
          reference_linear(lw, x, ep, ref.data(), ldy);
          linear(pw, x, ep, got.data(), ldy, 2);
          for (int64_t r = 0; r < rows; ++r)
            for (int64_t o = 0; o < ldy; ++o) {
              const float e = ref[size_t(r * ldy + o)], g = got[size_t(r * ldy + o)];
              if (o >= s.out) {
                ASSERT_EQ(g, -7.0f) << "wrote past out";
                continue;
              }
              ASSERT_NEAR(g, e, 1e-5f * std::max(1.0f, std::fabs(e)))
                  << name(f) << " [" << s.out << "x" << s.in << "] rows " << rows << " mask " << mask;
            }
        }
      }
}

// Fused quantize + matmul from fp32, dynamic (int8 and int4 grids, clip) and static.
TEST_P(PathTest, FusedFromFloat) {
  std::mt19937 gen(5);
  const Format f{4, true, 0};
  for (int64_t rows : {1, 4, 33}) {
    const int64_t out = 50, in = 90;
    const LogicalWeight lw = random_weight(gen, f, out, in);
    const PackedWeight pw = pack(lw);
    const std::vector<float> x = random_input(gen, rows, in);
    for (const ActParams& a : {ActParams{8, true, 1.0f, 0.0f}, ActParams{4, true, 0.9f, 0.0f},
                               ActParams{8, false, 1.0f, 0.05f}, ActParams{4, false, 1.0f, 0.4f}}) {
      QuantAct scratch, q;
      std::vector<float> ref(size_t(rows * out)), got(size_t(rows * out));
      quantize_act(x.data(), rows, in, in, a, pw.in_pad, q);
      reference_linear(lw, q, {}, ref.data(), out);
      linear_f32(pw, x.data(), rows, in, a, {}, got.data(), out, 2, scratch);
      for (size_t i = 0; i < ref.size(); ++i) ASSERT_NEAR(got[i], ref[i], 1e-5f * std::max(1.0f, std::fabs(ref[i])));
    }
  }
}

// Prefill sizes through the GEMM (several tasks per thread, row blocks of 8 plus a tail).
TEST_P(PathTest, PrefillGemm) {
  std::mt19937 gen(77);
  for (const Format& f : {Format{4, true, 0}, Format{4, false, 128}, Format{8, true, 0}, Format{8, true, 64}}) {
    const int64_t rows = 61, out = 300, in = 512;
    const LogicalWeight lw = random_weight(gen, f, out, in);
    const PackedWeight pw = pack(lw);
    const QuantAct x = random_codes(gen, rows, in, pw.in_pad, 8);
    std::vector<float> ref(size_t(rows * out)), got(size_t(rows * out));
    reference_linear(lw, x, {}, ref.data(), out);
    for (int threads : {1, 2, 4}) {
      linear(pw, x, {}, got.data(), out, threads);
      for (size_t i = 0; i < ref.size(); ++i)
        ASSERT_NEAR(got[i], ref[i], 1e-5f * std::max(1.0f, std::fabs(ref[i]))) << name(f) << " threads " << threads;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Paths, PathTest, ::testing::Values(Path::Scalar, Path::Avx2, Path::Avx512),
                         [](const auto& info) { return std::string(path_name(info.param)); });

// The reference itself against dequant(W) x dequant(x) in double.
TEST(Reference, MatchesDoubleDequant) {
  std::mt19937 gen(3);
  std::normal_distribution<float> d(0.0f, 1.0f);
  for (const Format& f : formats())
    for (const Shape& s : shapes(f)) {
      const int64_t rows = 3;
      const LogicalWeight w = random_weight(gen, f, s.out, s.in);
      const QuantAct x = random_codes(gen, rows, s.in, padded(f.bits, s.in), 8);
      std::vector<float> bias(size_t(s.out)), c(size_t(s.out)), b(size_t(s.out));
      for (auto* v : {&bias, &c, &b})
        for (auto& e : *v) e = d(gen);
      const Epilogue ep{bias.data(), c.data(), b.data()};
      std::vector<float> y(size_t(rows * s.out));
      reference_linear(w, x, ep, y.data(), s.out);
      const int64_t gs = w.group();
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t o = 0; o < s.out; ++o) {
          double acc = 0, mag = 0;
          for (int64_t k = 0; k < s.in; ++k) {
            const int64_t g = k / gs;
            const double wk = double(w.scale[size_t(o * w.groups() + g)]) *
                              (w.code[size_t(o * s.in + k)] - w.zero[size_t(o * w.groups() + g)]);
            const double xk = double(x.scale[size_t(r)]) * x.q[size_t(r * x.in_pad + k)];
            acc += wk * xk;
            mag += std::fabs(wk * xk);
          }
          const double e = (acc + bias[size_t(o)]) * c[size_t(o)] + b[size_t(o)];
          const double tol = 1e-5 * (std::fabs(e) + (mag + std::fabs(bias[size_t(o)])) * std::fabs(c[size_t(o)]) + 1e-6);
          ASSERT_NEAR(y[size_t(r * s.out + o)], e, tol) << name(f) << " [" << s.out << "x" << s.in << "]";
        }
    }
}

TEST(ThreadPool, NestedAndConcurrentCalls) {
  std::vector<std::atomic<int>> hits(64);
  parallel_for(3, 8, [&](int i) {
    parallel_for(3, 8, [&](int j) { hits[size_t(i * 8 + j)].fetch_add(1); });  // runs inline
  });
  for (auto& h : hits) EXPECT_EQ(h.load(), 1);
  std::atomic<long> sum{0};
  std::vector<std::thread> callers;
  for (int c = 0; c < 3; ++c)
    callers.emplace_back([&] { parallel_for(2, 100, [&](int i) { sum.fetch_add(i); }); });
  for (auto& t : callers) t.join();
  EXPECT_EQ(sum.load(), 3 * 4950);
}

TEST(Dispatch, PathNamesAndActive) {
  EXPECT_TRUE(path_supported(Path::Scalar));
  EXPECT_TRUE(path_supported(active_path()));
  for (Path p : {Path::Avx2, Path::Avx512})
    if (!path_supported(p)) EXPECT_THROW(set_path(p), Error) << path_name(p);
  EXPECT_NE(cpu_description().find('['), std::string::npos);
  // LOOPQ_KERNELS values.
  EXPECT_EQ(path_from_setting("scalar"), Path::Scalar);
  EXPECT_TRUE(path_supported(path_from_setting(nullptr)));
  EXPECT_EQ(path_from_setting(""), path_from_setting(nullptr));
  EXPECT_THROW(path_from_setting("avx1024"), Error);
  for (const char* v : {"avx2", "avx512"}) {
    const Path p = std::string(v) == "avx2" ? Path::Avx2 : Path::Avx512;
    if (path_supported(p)) EXPECT_EQ(path_from_setting(v), p);
    else EXPECT_THROW(path_from_setting(v), Error);
  }
}

TEST(BadInput, ClearErrors) {
  std::mt19937 gen(1);
  LogicalWeight w = random_weight(gen, {4, true, 0}, 4, 64);
  w.group_size = 48;  // does not divide 64
  w.scale.assign(4, 1.0f);
  EXPECT_THROW(pack(w), Error);
  w.group_size = 0;
  w.in = 63;  // int4 needs even in
  w.code.resize(4 * 63);
  EXPECT_THROW(pack(w), Error);
  LogicalWeight g = random_weight(gen, {4, true, 0}, 4, 96);
  g.group_size = 12;  // divides 96 but not a multiple of the 8-column chunk
  g.scale.assign(4 * 8, 1.0f);
  g.zero.assign(4 * 8, 0);
  EXPECT_THROW(pack(g), Error);
  LogicalWeight bits = random_weight(gen, {4, true, 0}, 4, 64);
  bits.bits = 3;
  EXPECT_THROW(pack(bits), Error);
  LogicalWeight range = random_weight(gen, {4, true, 0}, 4, 64);
  range.code[5] = 8;  // outside [-8, 7]
  EXPECT_THROW(pack(range), Error);

  const PackedWeight pw = pack(random_weight(gen, {4, true, 0}, 4, 64));
  const QuantAct x = random_codes(gen, 2, 32, 32, 8);
  std::vector<float> y(8);
  EXPECT_THROW(linear(pw, x, {}, y.data(), 4, 1), Error);  // width mismatch
  const QuantAct ok = random_codes(gen, 2, 64, 64, 8);
  EXPECT_THROW(linear(pw, ok, {}, y.data(), 3, 1), Error);  // ldy < out
  EXPECT_THROW(linear(pw, ok, {}, y.data(), 4, 0), Error);  // no threads
  QuantAct s;
  const std::vector<float> xf(128, 1.0f);
  EXPECT_THROW(quantize_act(xf.data(), 2, 64, 64, ActParams{3, true, 1.0f, 0.0f}, 64, s), Error);
  EXPECT_THROW(quantize_act(xf.data(), 2, 64, 64, ActParams{8, true, 0.0f, 0.0f}, 64, s), Error);
  EXPECT_THROW(quantize_act(xf.data(), 2, 64, 64, ActParams{8, false, 1.0f, 0.0f}, 64, s), Error);
}

}  // namespace
}  // namespace loopq::kernels::test
