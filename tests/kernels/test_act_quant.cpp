// Activation quantization: quant/quantizer.cpp's symmetric fake_quant_activation semantics, to
// the bit (round half to even, clamp to the grid, absmax * clip / qmax, zero rows scale 1).
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "helpers.h"
#include "kernels/cpu/kernels.h"

namespace loopq::kernels::test {
namespace {

std::vector<int> codes(const std::vector<float>& x, const ActParams& p, float* scale = nullptr) {
  QuantAct q;
  quantize_act(x.data(), 1, int64_t(x.size()), int64_t(x.size()), p, padded(8, int64_t(x.size())), q);
  if (scale) *scale = q.scale[0];
  return std::vector<int>(q.q.begin(), q.q.begin() + int64_t(x.size()));
}

TEST(ActQuant, StaticRoundsHalfToEvenAndClamps) {
  const std::vector<float> x = {0.5f, 1.5f, 2.5f, -0.5f, -1.5f, -2.5f, 3.49f, 200.0f, -200.0f, 126.5f, -128.5f};
  EXPECT_EQ(codes(x, {8, false, 1.0f, 1.0f}), (std::vector<int>{0, 2, 2, 0, -2, -2, 3, 127, -128, 126, -128}));
  // int4 grid [-8, 7] in int8 lanes.
  const std::vector<float> y = {7.5f, 6.5f, -8.5f, -7.5f, -9.0f, 100.0f, 0.5f, 1e30f};
  EXPECT_EQ(codes(y, {4, false, 1.0f, 1.0f}), (std::vector<int>{7, 6, -8, -8, -8, 7, 0, 7}));
}

TEST(ActQuant, DynamicScaleAndClip) {
  float s = 0;
  // absmax 3.5 -> scale 3.5 / 127, the extreme maps to 127.
  auto q = codes({1.0f, -2.0f, 3.5f}, {8, true, 1.0f, 0.0f}, &s);
  EXPECT_EQ(s, 3.5f / 127.0f);
  EXPECT_EQ(q[2], 127);
  EXPECT_EQ(q[1], int(std::nearbyint(-2.0f / s)));
  // Negative extreme with clip 0.5 on the int4 grid: absmax 4, scale 4/7, -8/s = -14 -> -8.
  q = codes({-8.0f, 4.0f, 2.0f}, {4, true, 0.5f, 0.0f}, &s);
  EXPECT_EQ(s, (8.0f * 0.5f) / 7.0f);
  EXPECT_EQ(q, (std::vector<int>{-8, 7, int(std::nearbyint(2.0f / s))}));  // 2/s is just below 3.5 in fp32
  // All-positive row: the range is widened to include 0, absmax = max.
  q = codes({2.0f, 1.0f}, {8, true, 1.0f, 0.0f}, &s);
  EXPECT_EQ(s, 2.0f / 127.0f);
  // Zero row: scale 1, codes 0.
  q = codes({0.0f, 0.0f, 0.0f}, {4, true, 1.0f, 0.0f}, &s);
  EXPECT_EQ(s, 1.0f);
  EXPECT_EQ(q, (std::vector<int>{0, 0, 0}));
}

// Many rows against a plain restatement of quantizer.cpp (row_params with weight = false).
TEST(ActQuant, MatchesQuantizerFormulaOnRandomRows) {
  std::mt19937 gen(11);
  for (int bits : {8, 4})
    for (float clip : {1.0f, 0.9f})
      for (int64_t in : {1, 3, 8, 37, 256}) {
        const int64_t rows = 5;
        const std::vector<float> x = random_input(gen, rows, in);
        QuantAct q;
        const int64_t pad = padded(4, in) + 8;
        quantize_act(x.data(), rows, in, in, {bits, true, clip, 0.0f}, pad, q);
        const float qmax = bits == 8 ? 127.0f : 7.0f;
        for (int64_t r = 0; r < rows; ++r) {
          float mn = 0, mx = 0;
          for (int64_t k = 0; k < in; ++k) mn = std::min(mn, x[size_t(r * in + k)]), mx = std::max(mx, x[size_t(r * in + k)]);
          mn *= clip, mx *= clip;
          float absmax = std::max(std::fabs(mn), mx);
          if (absmax == 0) absmax = qmax;
          const float s = absmax / qmax;
          ASSERT_EQ(q.scale[size_t(r)], s);
          for (int64_t k = 0; k < pad; ++k) {
            const int want = k < in ? int(std::fmin(std::fmax(std::nearbyint(x[size_t(r * in + k)] / s), -qmax - 1), qmax)) : 0;
            ASSERT_EQ(int(q.q[size_t(r * pad + k)]), want) << "bits " << bits << " in " << in << " k " << k;
          }
        }
      }
}

}  // namespace
}  // namespace loopq::kernels::test
