#pragma once
// Shared generators for the kernel op tests: random logical weights and activations, and the
// fixture that runs a test on one dispatch path.
#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <vector>

#include "kernels/cpu/kernels.h"

namespace loopq::kernels::test {

// Forces the parameter's path for the test (skipped where the CPU lacks it), then restores it.
class OnPath : public ::testing::TestWithParam<Path> {
 protected:
  void SetUp() override {
    if (!path_supported(GetParam()))
      GTEST_SKIP() << "this CPU lacks the " << path_name(GetParam()) << " path (" << cpu_description() << ")";
    saved_ = active_path();
    set_path(GetParam());
  }
  void TearDown() override {
    if (path_supported(GetParam())) set_path(saved_);
  }
  Path saved_ = Path::Scalar;
};

struct Format {
  int bits;
  bool symmetric;
  int64_t group;  // 0: per row
};

inline LogicalWeight random_weight(std::mt19937& gen, const Format& f, int64_t out, int64_t in,
                                   bool unit_scales = false) {
  LogicalWeight w;
  w.bits = f.bits;
  w.symmetric = f.symmetric;
  w.out = out;
  w.in = in;
  w.group_size = f.group;
  const int lo = f.symmetric ? -(1 << (f.bits - 1)) : 0, hi = f.symmetric ? (1 << (f.bits - 1)) - 1 : (1 << f.bits) - 1;
  std::uniform_int_distribution<int> code(lo, hi);
  std::uniform_real_distribution<float> scale(0.001f, 0.1f);
  w.code.resize(size_t(out * in));
  for (auto& c : w.code) c = code(gen);
  const int64_t n = out * w.groups();
  w.scale.resize(size_t(n));
  for (auto& s : w.scale) s = unit_scales ? 1.0f : scale(gen);
  w.zero.assign(size_t(n), 0);
  if (!f.symmetric)
    for (auto& z : w.zero) z = code(gen);
  return w;
}

// Random fp32 activations with a few outliers, quantized by the kernel's own quantizer.
inline std::vector<float> random_input(std::mt19937& gen, int64_t rows, int64_t in) {
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> x(size_t(rows * in));
  for (auto& v : x) v = d(gen);
  for (int64_t r = 0; r < rows; ++r) x[size_t(r * in + (r * 7) % in)] *= 20.0f;
  return x;
}

// Codes drawn directly on the grid (reaching -128 / -8, which absmax scaling alone never does).
inline QuantAct random_codes(std::mt19937& gen, int64_t rows, int64_t in, int64_t in_pad, int bits,
                             bool unit_scale = false) {
  QuantAct a;
  a.rows = rows;
  a.in = in;
  a.in_pad = in_pad;
  a.bits = bits;
  a.q.assign(size_t(rows * in_pad), 0);
  std::uniform_int_distribution<int> code(bits == 8 ? -128 : -8, bits == 8 ? 127 : 7);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t k = 0; k < in; ++k) a.q[size_t(r * in_pad + k)] = int8_t(code(gen));
  std::uniform_real_distribution<float> s(0.01f, 0.5f);
  a.scale.resize(size_t(rows));
  for (auto& v : a.scale) v = unit_scale ? 1.0f : s(gen);
  return a;
}

inline int64_t padded(int bits, int64_t in) {
  const int64_t c = bits == 4 ? 8 : 4;
  return (in + c - 1) / c * c;
}

}  // namespace loopq::kernels::test
