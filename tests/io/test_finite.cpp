// NaN/Inf detection on raw checkpoint bits, for every float dtype, with the tensor named.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>

#include "io/dtype.h"
#include "io/finite.h"
#include "io/safetensors.h"
#include "util/error.h"

namespace fs = std::filesystem;
using namespace loopq::io;

namespace {

std::string check_message(const TensorInfo& t) {
  try {
    check_finite(t, "ckpt: ");
  } catch (const loopq::Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(Finite, EveryFloatDtype) {
  const float inf = std::numeric_limits<float>::infinity(), nan = std::nanf("");
  const float ok[] = {0.0f, -0.0f, 1e-45f, -3.4e38f, 3.4e38f, 1.0f};
  EXPECT_FALSE(find_non_finite(DType::F32, ok, 6));
  const float f32[] = {1.0f, 2.0f, -inf, nan};
  EXPECT_EQ(find_non_finite(DType::F32, f32, 4), std::optional<size_t>(2));
  const double f64[] = {1e300, -1e-300, std::nan("")};
  EXPECT_EQ(find_non_finite(DType::F64, f64, 3), std::optional<size_t>(2));
  // 16-bit formats: largest finite values pass, all-ones exponents do not.
  const uint16_t f16[] = {0x7bff, 0xfbff, 0x0001, 0xfc00};  // 65504, -65504, subnormal, -inf
  EXPECT_EQ(find_non_finite(DType::F16, f16, 4), std::optional<size_t>(3));
  const uint16_t bf16[] = {0x7f7f, 0xff7f, 0x7fc0};  // max, -max, nan
  EXPECT_EQ(find_non_finite(DType::BF16, bf16, 3), std::optional<size_t>(2));
  // Integer data is never "non-finite", whatever its bits.
  const uint32_t ints[] = {0x7f800000u, 0xffffffffu};
  EXPECT_FALSE(find_non_finite(DType::I32, ints, 2));
  EXPECT_FALSE(find_non_finite(DType::U8, ints, 8));
  // Unaligned source.
  alignas(4) unsigned char buf[9] = {};
  std::memcpy(buf + 1, &f32[3], 4);
  EXPECT_EQ(find_non_finite(DType::F32, buf + 1, 2), std::optional<size_t>(0));
}

TEST(Finite, ErrorNamesTensorKindAndElement) {
  std::string tmpl = (fs::temp_directory_path() / "loopq_finite_XXXXXX").string();
  ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
  const std::string p = tmpl + "/m.safetensors";
  const float good[3] = {1, 2, 3}, bad_nan[3] = {1, std::nanf(""), 3};
  const float bad_inf[2] = {std::numeric_limits<float>::infinity(), 0};
  const uint16_t bf[2] = {0x3f80, 0xff80};  // 1.0, -inf
  write_safetensors(p, {{"good", DType::F32, {3}, good, 12},
                        {"model.layers.1.mlp.up_proj.weight", DType::F32, {3}, bad_nan, 12},
                        {"inf", DType::F32, {2}, bad_inf, 8},
                        {"bf", DType::BF16, {2}, bf, 4}});
  const auto f = SafetensorsFile::open(p);
  EXPECT_EQ(check_message(f->get("good")), "");
  EXPECT_EQ(check_message(f->get("model.layers.1.mlp.up_proj.weight")),
            "ckpt: tensor 'model.layers.1.mlp.up_proj.weight' has NaN at element 1 of 3");
  EXPECT_EQ(check_message(f->get("inf")), "ckpt: tensor 'inf' has Inf at element 0 of 2");
  EXPECT_EQ(check_message(f->get("bf")), "ckpt: tensor 'bf' has Inf at element 1 of 2");
  fs::remove_all(tmpl);
}
