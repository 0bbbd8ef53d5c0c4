// Repacking from the project's file layout (codes [out, in] two per byte, even column in the low
// nibble, two's complement; scales [out, groups]; zeros for asymmetric grids).
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

#include "helpers.h"
#include "kernels/cpu/kernels.h"
#include "util/error.h"

namespace loopq::kernels::test {
namespace {

TEST(Pack, FileLayoutNibbleOrder) {
  // Row 0: codes 1, -2, 7, -8 -> bytes 0xE1 (even col 1 low, odd col -2 = 0xE high), 0x87.
  LogicalWeight w;
  w.bits = 4;
  w.out = 1;
  w.in = 4;
  w.code = {1, -2, 7, -8};
  w.scale = {1.0f};
  w.zero = {0};
  EXPECT_EQ(file_codes(w), (std::vector<uint8_t>{0xE1, 0x87}));
  const std::vector<uint8_t> bytes = file_codes(w);
  FileWeight f{4, true, 1, 4, 0, bytes.data(), w.scale.data(), nullptr};
  EXPECT_EQ(unpack_file(f).code, w.code);
  // Kernel layout: u = code + 8 in the low nibble of byte 4r+j for columns 0-3.
  const PackedWeight p = repack(f);
  EXPECT_EQ(p.codes.data()[0], 9);
  EXPECT_EQ(p.codes.data()[1], 6);
  EXPECT_EQ(p.codes.data()[2], 15);
  EXPECT_EQ(p.codes.data()[3], 0);
}

TEST(Pack, AsymmetricCodesStoredShifted) {
  // Asymmetric int4 codes 0, 15, 8, 1 are stored as -8, 7, 0, -7: nibbles 8, 7, 0, 9.
  LogicalWeight w;
  w.bits = 4;
  w.symmetric = false;
  w.out = 1;
  w.in = 4;
  w.code = {0, 15, 8, 1};
  w.scale = {1.0f};
  w.zero = {3};
  EXPECT_EQ(file_codes(w), (std::vector<uint8_t>{0x78, 0x90}));
  // int8: 0 -> -128 (0x80), 255 -> 127 (0x7F).
  LogicalWeight w8 = w;
  w8.bits = 8;
  w8.code = {0, 255, 128, 1};
  EXPECT_EQ(file_codes(w8), (std::vector<uint8_t>{0x80, 0x7F, 0x00, 0x81}));
  const std::vector<uint8_t> bytes = file_codes(w);
  const std::vector<float> zero = {3.0f};
  const PackedWeight p = repack(FileWeight{4, false, 1, 4, 0, bytes.data(), w.scale.data(), zero.data()});
  EXPECT_EQ(p.codes.data()[0], 0);  // unsigned code itself, zero point kept apart
  EXPECT_EQ(p.codes.data()[1], 15);
  EXPECT_EQ(p.zeros[0], 3);
}

TEST(Pack, RepackEqualsPackOfLogical) {
  std::mt19937 gen(2);
  for (int bits : {4, 8})
    for (bool sym : {true, false})
      for (int64_t g : {0, 32, 128}) {
        const LogicalWeight w = random_weight(gen, {bits, sym, g}, 37, 256);
        const std::vector<uint8_t> bytes = file_codes(w);
        std::vector<float> zeros(w.zero.begin(), w.zero.end());
        FileWeight f{bits, sym, w.out, w.in, g, bytes.data(), w.scale.data(), sym ? nullptr : zeros.data()};
        const LogicalWeight back = unpack_file(f);
        EXPECT_EQ(back.code, w.code);
        EXPECT_EQ(back.zero, w.zero);
        const PackedWeight a = repack(f), b = pack(w);
        ASSERT_EQ(a.codes.size, b.codes.size);
        EXPECT_EQ(std::memcmp(a.codes.data(), b.codes.data(), a.codes.size), 0);
        EXPECT_EQ(a.scales, b.scales);
        EXPECT_EQ(a.zeros, b.zeros);
        EXPECT_EQ(a.tiles, 3);
        EXPECT_EQ(a.groups, g ? 256 / g : 1);
        EXPECT_EQ(a.bytes(), int64_t(a.codes.size + a.scales.size() * 4 + a.zeros.size()));
      }
}

TEST(Pack, UnpackInvertsPack) {
  // Odd sizes (row and column tails), every grid and group size.
  std::mt19937 gen(5);
  for (int bits : {4, 8})
    for (bool sym : {true, false})
      for (int64_t g : {0, 32, 64, 128})
        for (int64_t out : {1, 17, 40}) {
          const int64_t in = g ? 2 * g : (bits == 4 ? 134 : 37);
          const LogicalWeight w = random_weight(gen, {bits, sym, g}, out, in);
          const LogicalWeight back = unpack(pack(w));
          EXPECT_EQ(back.out, w.out);
          EXPECT_EQ(back.in, w.in);
          EXPECT_EQ(back.groups(), w.groups());
          EXPECT_EQ(back.code, w.code) << bits << (sym ? " sym" : " asym") << " g" << g << " out " << out;
          EXPECT_EQ(back.scale, w.scale);
          EXPECT_EQ(back.zero, w.zero);
        }
}

TEST(Pack, BadFileWeights) {
  std::vector<uint8_t> bytes(64);
  std::vector<float> s(8, 1.0f), z(8, 0.5f);
  EXPECT_THROW(repack(FileWeight{4, true, 2, 64, 0, nullptr, s.data(), nullptr}), Error);
  EXPECT_THROW(repack(FileWeight{4, false, 2, 64, 0, bytes.data(), s.data(), nullptr}), Error);
  EXPECT_THROW(repack(FileWeight{4, false, 2, 64, 0, bytes.data(), s.data(), z.data()}), Error);  // zero 0.5
  EXPECT_THROW(repack(FileWeight{4, true, 2, 64, 24, bytes.data(), s.data(), nullptr}), Error);   // 24 ∤ 64
  EXPECT_THROW(repack(FileWeight{4, true, 2, 63, 0, bytes.data(), s.data(), nullptr}), Error);    // odd in
}

}  // namespace
}  // namespace loopq::kernels::test
