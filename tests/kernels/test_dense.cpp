// The dense fp32 / bf16 decode kernel on every dispatch path against an fp64 dot product: odd
// sizes (row and column tails of every vector width), 1-4 rows and more, thread counts.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "helpers.h"
#include "kernels/cpu/kernels.h"
#include "util/error.h"

namespace loopq::kernels {
namespace {

uint16_t to_bf16(float f) {  // round to nearest even (test data only)
  uint32_t b;
  std::memcpy(&b, &f, sizeof b);
  b += 0x7FFF + ((b >> 16) & 1);
  return uint16_t(b >> 16);
}
float from_bf16(uint16_t h) {
  const uint32_t b = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &b, sizeof f);
  return f;
}

class DensePath : public test::OnPath {};

// Every output within fp32 accumulation error of the exact dot product: |y - ref| <= 1e-5 *
// sum_k |x_k w_k| (in <= 1000: the bound of sequential fp32 summation is in * 2^-24).
TEST_P(DensePath, MatchesDoubleDotProduct) {
  std::mt19937 gen(7);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  const int64_t shapes[][2] = {{1, 1}, {3, 7}, {17, 15}, {64, 16}, {65, 33}, {130, 129}, {257, 1000}};
  for (const bool bf16 : {false, true})
    for (const auto& s : shapes)
      for (const int64_t rows : {1, 2, 3, 4, 5, 9})
        for (const int threads : {1, 2, 3}) {
          const int64_t out = s[0], in = s[1], ldx = in + 3, ldy = out + 2;
          std::vector<float> wf(size_t(out * in));
          std::vector<uint16_t> wh(wf.size());
          for (size_t i = 0; i < wf.size(); ++i) {
            wh[i] = to_bf16(nd(gen));
            wf[i] = bf16 ? from_bf16(wh[i]) : nd(gen);
          }
          std::vector<float> x(size_t(rows * ldx), 1e30f);  // padding must never be read
          for (int64_t r = 0; r < rows; ++r)
            for (int64_t k = 0; k < in; ++k) x[size_t(r * ldx + k)] = nd(gen);
          std::vector<float> y(size_t(rows * ldy), -7.0f);
          const DenseWeight w{bf16 ? static_cast<const void*>(wh.data()) : wf.data(), bf16, out, in};
          dense_linear(w, x.data(), rows, ldx, y.data(), ldy, threads);
          for (int64_t r = 0; r < rows; ++r) {
            for (int64_t o = 0; o < out; ++o) {
              double ref = 0, mag = 0;
              for (int64_t k = 0; k < in; ++k) {
                const double p = double(x[size_t(r * ldx + k)]) * wf[size_t(o * in + k)];
                ref += p;
                mag += std::fabs(p);
              }
              ASSERT_NEAR(y[size_t(r * ldy + o)], ref, 1e-5 * mag + 1e-30)
                  << path_name(GetParam()) << (bf16 ? " bf16" : " fp32") << " [" << out << ", " << in
                  << "] rows " << rows << " row " << r << " out " << o;
            }
            for (int64_t o = out; o < ldy; ++o) ASSERT_EQ(y[size_t(r * ldy + o)], -7.0f) << "wrote past out";
          }
        }
}

// Threads split the outputs, never a dot product: every thread count gives the same bits.
TEST_P(DensePath, ThreadCountDoesNotChangeBits) {
  std::mt19937 gen(3);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  const int64_t out = 1000, in = 515;
  std::vector<float> wf(size_t(out * in)), x(size_t(2 * in));
  for (auto& v : wf) v = nd(gen);
  for (auto& v : x) v = nd(gen);
  const DenseWeight w{wf.data(), false, out, in};
  std::vector<float> y1(size_t(2 * out)), y2(y1.size());
  dense_linear(w, x.data(), 2, in, y1.data(), out, 1);
  dense_linear(w, x.data(), 2, in, y2.data(), out, 2);
  EXPECT_EQ(0, std::memcmp(y1.data(), y2.data(), y1.size() * sizeof(float)));
}

INSTANTIATE_TEST_SUITE_P(Paths, DensePath, ::testing::Values(Path::Scalar, Path::Avx2, Path::Avx512),
                         [](const auto& info) { return std::string(path_name(info.param)); });

TEST(DenseBadInput, ClearErrors) {
  std::vector<float> w(6), x(3), y(2);
  const DenseWeight ok{w.data(), false, 2, 3};
  EXPECT_THROW(dense_linear(ok, x.data(), 1, 2, y.data(), 2, 1), Error);   // ldx < in
  EXPECT_THROW(dense_linear(ok, x.data(), 1, 3, y.data(), 1, 1), Error);   // ldy < out
  EXPECT_THROW(dense_linear(ok, x.data(), 1, 3, y.data(), 2, 0), Error);   // no threads
  EXPECT_THROW(dense_linear(ok, nullptr, 1, 3, y.data(), 2, 1), Error);    // null input
  EXPECT_THROW(dense_linear(DenseWeight{nullptr, false, 2, 3}, x.data(), 1, 3, y.data(), 2, 1), Error);
  EXPECT_THROW(dense_linear(DenseWeight{w.data(), false, 2, 0}, x.data(), 1, 3, y.data(), 2, 1), Error);
  EXPECT_NO_THROW(dense_linear(ok, nullptr, 0, 3, nullptr, 2, 1));  // no rows: nothing to do
}

}  // namespace
}  // namespace loopq::kernels
