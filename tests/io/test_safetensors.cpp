// Tests for the safetensors reader/writer, dtype conversions and atomic file output.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <sstream>

#include "io/atomic_file.h"
#include "io/mapped_file.h"
#include "io/safetensors.h"
#include "util/error.h"

namespace fs = std::filesystem;
using namespace loopq::io;

namespace {

uint32_t bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
float from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write_raw(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string u64_le(uint64_t v) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>((v >> (8 * i)) & 0xff);
  return s;
}

// A hand-made file: length prefix, header text as given (no padding), data bytes.
std::string st_bytes(const std::string& header, const std::string& data = "") {
  return u64_le(header.size()) + header + data;
}

// Runs fn, requires a one-line loopq::Error whose message contains every needle.
void expect_error(const std::function<void()>& fn, const std::vector<std::string>& needles) {
  try {
    fn();
  } catch (const loopq::Error& e) {
    const std::string msg = e.what();
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    for (const auto& n : needles) EXPECT_NE(msg.find(n), std::string::npos) << "'" << n << "' not in: " << msg;
    return;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "expected loopq::Error, got other exception: " << e.what();
    return;
  }
  ADD_FAILURE() << "expected loopq::Error, nothing thrown";
}

class SafetensorsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "loopq_st_XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string file(const std::string& name) const { return dir_ + "/" + name; }
  std::vector<std::string> dir_entries() const {
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(dir_)) out.push_back(e.path().filename().string());
    std::sort(out.begin(), out.end());
    return out;
  }
  // Writes a hand-crafted file and expects opening it to fail with the given message fragments.
  void expect_bad(const std::string& bytes, const std::vector<std::string>& needles) {
    const std::string p = file("bad.safetensors");
    write_raw(p, bytes);
    std::vector<std::string> all = needles;
    all.push_back(p);
    expect_error([&] { SafetensorsFile::open(p); }, all);
  }

  std::string dir_;
};

// ---- dtypes and conversions ---------------------------------------------------------------

TEST(DType, NamesAndSizes) {
  const std::pair<DType, size_t> cases[] = {{DType::F64, 8}, {DType::F32, 4}, {DType::F16, 2},
                                            {DType::BF16, 2}, {DType::I64, 8}, {DType::I32, 4},
                                            {DType::I16, 2}, {DType::I8, 1},   {DType::U8, 1},
                                            {DType::BOOL, 1}};
  for (const auto& [d, size] : cases) {
    EXPECT_EQ(dtype_size(d), size);
    EXPECT_EQ(dtype_from_name(dtype_name(d)), d);
  }
  EXPECT_STREQ(dtype_name(DType::BF16), "BF16");
  expect_error([] { dtype_from_name("F8_E4M3"); }, {"F8_E4M3"});
  expect_error([] { dtype_from_name("f32"); }, {"f32"});
}

TEST(DType, Bf16ClosedForm) {
  EXPECT_EQ(f32_to_bf16(1.0f), 0x3F80);
  EXPECT_EQ(f32_to_bf16(-2.5f), 0xC020);
  EXPECT_EQ(f32_to_bf16(0.0f), 0x0000);
  EXPECT_EQ(f32_to_bf16(-0.0f), 0x8000);
  EXPECT_EQ(bf16_to_f32(0x3F80), 1.0f);
  EXPECT_EQ(bf16_to_f32(0xC020), -2.5f);
  EXPECT_EQ(f32_to_bf16(std::numeric_limits<float>::infinity()), 0x7F80);
  EXPECT_EQ(f32_to_bf16(-std::numeric_limits<float>::infinity()), 0xFF80);
  EXPECT_TRUE(std::isinf(bf16_to_f32(0x7F80)));
  // Ties to even: exactly halfway between 0x3F80 and 0x3F81 goes down, between 0x3F81/0x3F82 up.
  EXPECT_EQ(f32_to_bf16(from_bits(0x3F808000)), 0x3F80);
  EXPECT_EQ(f32_to_bf16(from_bits(0x3F818000)), 0x3F82);
  EXPECT_EQ(f32_to_bf16(from_bits(0x3F808001)), 0x3F81);
  EXPECT_EQ(f32_to_bf16(from_bits(0x3F807FFF)), 0x3F80);
  // Largest finite f32 rounds up to inf; a bf16 subnormal converts exactly.
  EXPECT_EQ(f32_to_bf16(std::numeric_limits<float>::max()), 0x7F80);
  EXPECT_EQ(bits(bf16_to_f32(0x0001)), 0x00010000u);
  EXPECT_EQ(f32_to_bf16(from_bits(0x00010000)), 0x0001);
  // NaN stays NaN, including payloads that live only in the truncated low bits.
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(std::nanf("")))));
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(from_bits(0x7F800001)))));
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(from_bits(0xFFFFFFFF)))));
  EXPECT_EQ(f32_to_bf16(from_bits(0xFF800001)) & 0x8000, 0x8000);  // sign kept
  // Every non-NaN bf16 survives a round trip.
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const float f = bf16_to_f32(static_cast<uint16_t>(h));
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(f))));
    } else {
      ASSERT_EQ(f32_to_bf16(f), h) << h;
    }
  }
}

TEST(DType, F16ClosedForm) {
  EXPECT_EQ(f32_to_f16(1.0f), 0x3C00);
  EXPECT_EQ(f32_to_f16(-2.5f), 0xC100);
  EXPECT_EQ(f32_to_f16(65504.0f), 0x7BFF);
  EXPECT_EQ(f16_to_f32(0x7BFF), 65504.0f);
  EXPECT_EQ(f16_to_f32(0x3C00), 1.0f);
  EXPECT_EQ(f16_to_f32(0xC100), -2.5f);
  EXPECT_EQ(f32_to_f16(0.0f), 0x0000);
  EXPECT_EQ(f32_to_f16(-0.0f), 0x8000);
  EXPECT_EQ(bits(f16_to_f32(0x8000)), 0x80000000u);
  // Overflow: 65519 still rounds to 65504, 65520 (the halfway point) ties to even = inf.
  EXPECT_EQ(f32_to_f16(65519.0f), 0x7BFF);
  EXPECT_EQ(f32_to_f16(65520.0f), 0x7C00);
  EXPECT_EQ(f32_to_f16(-1e10f), 0xFC00);
  EXPECT_EQ(f32_to_f16(std::numeric_limits<float>::infinity()), 0x7C00);
  EXPECT_EQ(f32_to_f16(-std::numeric_limits<float>::infinity()), 0xFC00);
  EXPECT_EQ(f16_to_f32(0x7C00), std::numeric_limits<float>::infinity());
  EXPECT_EQ(f16_to_f32(0xFC00), -std::numeric_limits<float>::infinity());
  // Subnormals: 0x0001 = 2^-24, 0x03FF = 1023 * 2^-24, 0x0400 = 2^-14 (smallest normal).
  EXPECT_EQ(f16_to_f32(0x0001), std::ldexp(1.0f, -24));
  EXPECT_EQ(f16_to_f32(0x03FF), std::ldexp(1023.0f, -24));
  EXPECT_EQ(f16_to_f32(0x8001), -std::ldexp(1.0f, -24));
  EXPECT_EQ(f16_to_f32(0x0400), std::ldexp(1.0f, -14));
  EXPECT_EQ(f32_to_f16(std::ldexp(1.0f, -24)), 0x0001);
  EXPECT_EQ(f32_to_f16(std::ldexp(1023.0f, -24)), 0x03FF);
  EXPECT_EQ(f32_to_f16(std::ldexp(1.0f, -14)), 0x0400);
  // Ties to even, normal range: 1 + 2^-11 is halfway between 0x3C00 and 0x3C01.
  EXPECT_EQ(f32_to_f16(1.0f + std::ldexp(1.0f, -11)), 0x3C00);
  EXPECT_EQ(f32_to_f16(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3C02);
  EXPECT_EQ(f32_to_f16(std::nextafter(1.0f + std::ldexp(1.0f, -11), 2.0f)), 0x3C01);
  // Ties to even, subnormal range: 2^-25 -> 0, 3 * 2^-25 -> 2 * 2^-24, just above 2^-25 -> 2^-24.
  EXPECT_EQ(f32_to_f16(std::ldexp(1.0f, -25)), 0x0000);
  EXPECT_EQ(f32_to_f16(-std::ldexp(1.0f, -25)), 0x8000);
  EXPECT_EQ(f32_to_f16(std::ldexp(3.0f, -25)), 0x0002);
  EXPECT_EQ(f32_to_f16(std::nextafter(std::ldexp(1.0f, -25), 1.0f)), 0x0001);
  EXPECT_EQ(f32_to_f16(std::ldexp(1.0f, -30)), 0x0000);
  EXPECT_EQ(f32_to_f16(std::ldexp(2047.0f, -25)), 0x0400);  // 1023.5 * 2^-24 rounds up into normal
  // NaN stays NaN both ways.
  EXPECT_TRUE(std::isnan(f16_to_f32(0x7E00)));
  EXPECT_TRUE(std::isnan(f16_to_f32(0x7C01)));
  const uint16_t hn = f32_to_f16(std::nanf(""));
  EXPECT_EQ(hn & 0x7C00, 0x7C00);
  EXPECT_NE(hn & 0x03FF, 0);
  EXPECT_TRUE(std::isnan(f16_to_f32(f32_to_f16(from_bits(0x7F800001)))));
  // Every non-NaN half survives a round trip.
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const float f = f16_to_f32(static_cast<uint16_t>(h));
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(f16_to_f32(f32_to_f16(f))));
    } else {
      ASSERT_EQ(f32_to_f16(f), h) << h;
    }
  }
}

#ifdef __FLT16_MAX__
// The compiler's own _Float16 conversion (libgcc, RNE) as an independent reference.
TEST(DType, F16MatchesCompilerFloat16) {
  for (uint64_t u = 0; u <= 0xFFFFFFFFull; u += 4093) {
    const float f = from_bits(static_cast<uint32_t>(u));
    if (std::isnan(f)) continue;
    const _Float16 h = static_cast<_Float16>(f);
    uint16_t ref;
    std::memcpy(&ref, &h, 2);
    ASSERT_EQ(f32_to_f16(f), ref) << std::hex << u;
  }
}
#endif

TEST(DType, ConvertToF32Unaligned) {
  // Offset by one byte so no element is aligned, as in a memory-mapped file.
  alignas(8) uint8_t buf[1 + 3 * 8];
  const float want[3] = {1.0f, -2.5f, 0.25f};

  const uint16_t halves[3] = {0x3C00, 0xC100, 0x3400};
  std::memcpy(buf + 1, halves, sizeof halves);
  float got[3];
  convert_to_f32(DType::F16, buf + 1, got, 3);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(got[i], want[i]);

  const uint16_t bf[3] = {0x3F80, 0xC020, 0x3E80};
  std::memcpy(buf + 1, bf, sizeof bf);
  convert_to_f32(DType::BF16, buf + 1, got, 3);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(got[i], want[i]);

  const double d[3] = {1.0, -2.5, 0.25};
  std::memcpy(buf + 1, d, sizeof d);
  convert_to_f32(DType::F64, buf + 1, got, 3);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(got[i], want[i]);

  std::memcpy(buf + 1, want, sizeof want);
  convert_to_f32(DType::F32, buf + 1, got, 3);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(got[i], want[i]);

  expect_error([&] { convert_to_f32(DType::I32, buf, got, 1); }, {"I32"});
}

// ---- round trip ---------------------------------------------------------------------------

TEST_F(SafetensorsTest, RoundTripSeveralDtypes) {
  const std::vector<float> f32 = {1.0f, -2.0f, 3.5f, 0.0f, 1e-3f, 7.0f};
  std::vector<uint16_t> f16, bf16;
  for (float v : f32) {
    f16.push_back(f32_to_f16(v));
    bf16.push_back(f32_to_bf16(v));
  }
  const std::vector<int8_t> i8 = {-128, -1, 0, 127};
  const std::vector<uint8_t> u8 = {0, 1, 254, 255, 9};
  const std::vector<int32_t> i32 = {std::numeric_limits<int32_t>::min(), -1, 0, 42};
  const float scalar = 3.25f;

  const std::vector<TensorToWrite> tensors = {
      {"model.w", DType::F32, {2, 3}, f32.data(), 24},
      {"u8", DType::U8, {5}, u8.data(), 5},  // odd size: later tensors start unaligned
      {"half", DType::F16, {3, 2}, f16.data(), 12},
      {"brain", DType::BF16, {6}, bf16.data(), 12},
      {"scalar", DType::F32, {}, &scalar, 4},
      {"empty", DType::F32, {0, 3}, nullptr, 0},
      {"i8", DType::I8, {2, 2}, i8.data(), 4},
      {"empty2", DType::I32, {2, 0}, nullptr, 0},
      {"i32", DType::I32, {4}, i32.data(), 16},
  };
  const std::map<std::string, std::string> meta = {{"format", "pt"}, {"loopq.bits", "4"}};
  const std::string p = file("model.safetensors");
  write_safetensors(p, tensors, meta);

  // Header: length prefix, padded with spaces so the data section starts 8-aligned.
  const std::string raw = read_all(p);
  uint64_t n = 0;
  std::memcpy(&n, raw.data(), 8);
  EXPECT_EQ((8 + n) % 8, 0u);
  EXPECT_EQ(raw.size(), 8 + n + 24 + 5 + 12 + 12 + 4 + 4 + 16);
  EXPECT_EQ(raw[8], '{');

  const auto f = SafetensorsFile::open(p);
  EXPECT_EQ(f->path(), p);
  EXPECT_EQ(f->metadata(), meta);
  // File order; the empty tensors sit (zero-length) at their writer offsets.
  const std::vector<std::string> order = {"model.w", "u8", "half", "brain", "scalar",
                                          "empty", "i8", "empty2", "i32"};
  EXPECT_EQ(f->names(), order);
  for (const auto& t : tensors) {
    ASSERT_TRUE(f->has(t.name));
    const TensorInfo& info = f->get(t.name);
    EXPECT_EQ(info.name, t.name);
    EXPECT_EQ(info.dtype, t.dtype);
    EXPECT_EQ(info.shape, t.shape);
    EXPECT_EQ(info.nbytes, t.nbytes);
    if (t.nbytes) {
      EXPECT_EQ(std::memcmp(info.data, t.data, t.nbytes), 0) << t.name;
    }
  }
  EXPECT_EQ(f->get("scalar").numel(), 1);
  EXPECT_EQ(f->get("empty").numel(), 0);
  EXPECT_EQ(f->get("model.w").numel(), 6);
  EXPECT_FALSE(f->has("nope"));
  expect_error([&] { f->get("nope"); }, {p, "'nope'"});

  std::vector<float> back(6);
  convert_to_f32(DType::F16, f->get("half").data, back.data(), 6);
  for (size_t i = 0; i < 6; ++i) EXPECT_NEAR(back[i], f32[i], 1e-3f * std::fabs(f32[i]) + 1e-6f);
  convert_to_f32(DType::BF16, f->get("brain").data, back.data(), 6);
  for (size_t i = 0; i < 6; ++i) EXPECT_NEAR(back[i], f32[i], 1e-2f * std::fabs(f32[i]) + 1e-6f);

  EXPECT_EQ(dir_entries(), std::vector<std::string>{"model.safetensors"});  // no temp left

  // Checkpoint over the same file, by file path and by directory.
  for (const std::string& where : {p, dir_}) {
    const Checkpoint ck = Checkpoint::open(where);
    std::vector<std::string> sorted = order;
    std::sort(sorted.begin(), sorted.end());
    EXPECT_EQ(ck.names(), sorted);
    EXPECT_EQ(ck.metadata(), meta);
    EXPECT_EQ(ck.get("i32").nbytes, 16u);
    EXPECT_FALSE(ck.has("nope"));
    expect_error([&] { ck.get("nope"); }, {"'nope'"});
  }
}

TEST_F(SafetensorsTest, CheckpointOutlivesCopies) {
  const float v[2] = {1.0f, 2.0f};
  write_safetensors(file("model.safetensors"), {{"a", DType::F32, {2}, v, 8}});
  const TensorInfo* info;
  Checkpoint copy = [&] {
    Checkpoint ck = Checkpoint::open(dir_);
    return ck;  // the original goes away; the copy must keep the map alive
  }();
  info = &copy.get("a");
  float got[2];
  std::memcpy(got, info->data, 8);
  EXPECT_EQ(got[1], 2.0f);
}

TEST_F(SafetensorsTest, ReadsUnalignedHandMadeFile) {
  // Header of 13 bytes: the data section starts at byte 21, so the F32 data is unaligned.
  const std::string header = R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[1,9]}})";
  const float vals[2] = {1.5f, -4.0f};
  std::string data(1, '\x7f');
  data.append(reinterpret_cast<const char*>(vals), 8);
  write_raw(file("u.safetensors"), st_bytes(header, data));
  const auto f = SafetensorsFile::open(file("u.safetensors"));
  float got[2];
  convert_to_f32(DType::F32, f->get("x").data, got, 2);
  EXPECT_EQ(got[0], 1.5f);
  EXPECT_EQ(got[1], -4.0f);
  EXPECT_TRUE(f->metadata().empty());
}

// ---- sharded checkpoints ------------------------------------------------------------------

TEST_F(SafetensorsTest, ShardedCheckpoint) {
  const float a[2] = {1, 2}, b[3] = {3, 4, 5}, c[1] = {6};
  write_safetensors(file("model-00001-of-00002.safetensors"),
                    {{"a", DType::F32, {2}, a, 8}, {"b", DType::F32, {3}, b, 12}},
                    {{"format", "pt"}});
  write_safetensors(file("model-00002-of-00002.safetensors"), {{"c", DType::F32, {1}, c, 4}},
                    {{"format", "other"}});
  write_file_atomic(file("model.safetensors.index.json"), R"({
    "metadata": {"total_size": 24, "note": "hi", "format": "ignored"},
    "weight_map": {"c": "model-00002-of-00002.safetensors",
                   "a": "model-00001-of-00002.safetensors",
                   "b": "model-00001-of-00002.safetensors"}})");
  // A stray model.safetensors must lose to the index.
  write_safetensors(file("model.safetensors"), {{"zzz", DType::F32, {1}, c, 4}});

  for (const std::string& where : {dir_, file("model.safetensors.index.json")}) {
    const Checkpoint ck = Checkpoint::open(where);
    EXPECT_EQ(ck.names(), (std::vector<std::string>{"a", "b", "c"}));
    float got[3];
    std::memcpy(got, ck.get("b").data, 12);
    EXPECT_EQ(got[2], 5.0f);
    std::memcpy(got, ck.get("c").data, 4);
    EXPECT_EQ(got[0], 6.0f);
    EXPECT_EQ(ck.metadata().at("format"), "pt");  // first shard wins over the index
    EXPECT_EQ(ck.metadata().at("note"), "hi");
    EXPECT_EQ(ck.metadata().at("total_size"), "24");
    EXPECT_FALSE(ck.has("zzz"));
  }
}

TEST_F(SafetensorsTest, ShardedCheckpointErrors) {
  const float a[1] = {1};
  write_safetensors(file("s1.safetensors"), {{"a", DType::F32, {1}, a, 4}});
  const std::string idx = file("model.safetensors.index.json");
  auto bad_index = [&](const std::string& text, const std::vector<std::string>& needles) {
    write_raw(idx, text);
    std::vector<std::string> all = needles;
    all.push_back(idx);
    expect_error([&] { Checkpoint::open(dir_); }, all);
  };
  bad_index(R"({"weight_map": {"a": "s1.safetensors", "b": "s2.safetensors"}})", {"s2.safetensors", "missing"});
  bad_index(R"({"weight_map": {"a": "s1.safetensors", "x": "s1.safetensors"}})", {"'x'", "does not contain"});
  bad_index(R"({"weight_map": {"a": "s1.safetensors")", {"not valid JSON"});
  bad_index("", {"not valid JSON"});
  bad_index(R"([1, 2])", {"not a JSON object"});
  bad_index(R"({"metadata": {}})", {"weight_map"});
  bad_index(R"({"weight_map": []})", {"weight_map"});
  bad_index(R"({"weight_map": {}})", {"empty"});
  bad_index(R"({"weight_map": {"a": 7}})", {"'a'"});
  bad_index(R"({"weight_map": {"a": "/etc/passwd"}})", {"'a'"});
  bad_index(R"({"weight_map": {"a": "../s1.safetensors"}})", {"'a'"});
  bad_index(R"({"weight_map": {"a": "s1.safetensors"}, "metadata": 3})", {"metadata"});
  bad_index(R"({"weight_map": {"a": "s1.safetensors", "a": "s1.safetensors"}})", {"duplicate", "'a'"});
  // A broken shard is reported with its own file name.
  write_raw(file("s2.safetensors"), "abc");
  write_raw(idx, R"({"weight_map": {"a": "s1.safetensors", "b": "s2.safetensors"}})");
  expect_error([&] { Checkpoint::open(idx); }, {file("s2.safetensors"), "too short"});
}

TEST_F(SafetensorsTest, CheckpointPathErrors) {
  expect_error([&] { Checkpoint::open(file("nothing")); }, {file("nothing")});
  expect_error([&] { Checkpoint::open(dir_); }, {dir_, "model.safetensors"});
  expect_error([&] { Checkpoint::open(file("nothing.safetensors")); }, {"nothing.safetensors"});
  expect_error([&] { SafetensorsFile::open(dir_); }, {dir_, "not a regular file"});
}

// ---- malformed files ----------------------------------------------------------------------

TEST_F(SafetensorsTest, RejectsBadFraming) {
  expect_bad("", {"too short"});
  expect_bad("1234567", {"too short"});
  expect_bad(u64_le(0) + "{}", {"header length is 0"});
  expect_bad(u64_le(200ull * 1000 * 1000) + "{}", {"100 MB"});
  expect_bad(u64_le(~0ull) + "{}", {"100 MB"});
  expect_bad(u64_le(50) + "{}", {"exceeds the file size"});
  expect_bad(st_bytes("{not json"), {"not valid JSON"});
  expect_bad(st_bytes("{} trailing"), {"not valid JSON"});
  expect_bad(st_bytes("[1,2,3]"), {"not a JSON object"});
  expect_bad(st_bytes("\"str\""), {"not a JSON object"});
  expect_bad(st_bytes("{\"a\xff\":1}"), {"not valid JSON"});  // invalid UTF-8
}

TEST_F(SafetensorsTest, RejectsBadEntries) {
  const std::string d8(8, '\0');
  auto one = [](const std::string& body) { return st_bytes("{\"t\":" + body + "}", std::string(8, '\0')); };
  expect_bad(st_bytes(R"({"__metadata__": [1]})"), {"__metadata__", "not a JSON object"});
  expect_bad(st_bytes(R"({"__metadata__": {"k": 1}})"), {"__metadata__", "'k'", "not a string"});
  expect_bad(one("5"), {"'t'", "not a JSON object"});
  expect_bad(one(R"({"shape":[2],"data_offsets":[0,8]})"), {"'t'", "missing dtype"});
  expect_bad(one(R"({"dtype":4,"shape":[2],"data_offsets":[0,8]})"), {"'t'", "dtype is not a string"});
  expect_bad(one(R"({"dtype":"F33","shape":[2],"data_offsets":[0,8]})"), {"'t'", "unknown dtype", "F33"});
  expect_bad(one(R"({"dtype":"F32","data_offsets":[0,8]})"), {"'t'", "missing shape"});
  expect_bad(one(R"({"dtype":"F32","shape":2,"data_offsets":[0,8]})"), {"'t'", "shape is not an array"});
  expect_bad(one(R"({"dtype":"F32","shape":[-2],"data_offsets":[0,8]})"), {"'t'", "non-negative"});
  expect_bad(one(R"({"dtype":"F32","shape":[2.0],"data_offsets":[0,8]})"), {"'t'", "non-negative"});
  expect_bad(one(R"({"dtype":"F32","shape":["2"],"data_offsets":[0,8]})"), {"'t'", "non-negative"});
  expect_bad(one(R"({"dtype":"F32","shape":[18446744073709551615],"data_offsets":[0,8]})"), {"'t'"});
  expect_bad(one(R"({"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]})"),
             {"'t'", "too many elements"});
  expect_bad(one(R"({"dtype":"F64","shape":[2305843009213693952],"data_offsets":[0,8]})"),
             {"'t'", "too many elements"});  // numel fits, numel * 8 overflows
  expect_bad(one(R"({"dtype":"F32","shape":[2]})"), {"'t'", "missing data_offsets"});
  expect_bad(one(R"({"dtype":"F32","shape":[2],"data_offsets":"0,8"})"), {"'t'", "data_offsets"});
  expect_bad(one(R"({"dtype":"F32","shape":[2],"data_offsets":[0]})"), {"'t'", "data_offsets"});
  expect_bad(one(R"({"dtype":"F32","shape":[2],"data_offsets":[0,8,8]})"), {"'t'", "data_offsets"});
  expect_bad(one(R"({"dtype":"F32","shape":[2],"data_offsets":[-8,0]})"), {"'t'", "data_offsets"});
  expect_bad(one(R"({"dtype":"F32","shape":[2],"data_offsets":[0,8.5]})"), {"'t'", "data_offsets"});
  expect_bad(one(R"({"dtype":"F32","shape":[0],"data_offsets":[8,0]})"), {"'t'", "begin > end"});
  expect_bad(one(R"({"dtype":"F32","shape":[3],"data_offsets":[0,8]})"), {"'t'", "holds 8 bytes", "needs 12"});
  expect_bad(one(R"({"dtype":"F32","shape":[],"data_offsets":[0,8]})"), {"'t'", "needs 4"});
  expect_bad(one(R"({"dtype":"F32","shape":[0],"data_offsets":[0,4]})"), {"'t'", "needs 0"});
  // Truncated data section: the entry is consistent but the bytes are not all there.
  expect_bad(st_bytes(R"({"t":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", d8),
             {"'t'", "[0,16)", "exceeds data section of 8 bytes"});
  expect_bad(st_bytes(R"({"t":{"dtype":"U8","shape":[0],"data_offsets":[9,9]}})", d8),
             {"'t'", "exceeds data section"});
  // A 2^64-ish offset must not wrap around any check.
  expect_bad(st_bytes(R"({"t":{"dtype":"U8","shape":[1],"data_offsets":[18446744073709551615,0]}})", d8),
             {"'t'", "begin > end"});
}

TEST_F(SafetensorsTest, RejectsOverlapAndDuplicates) {
  const std::string d16(16, '\0');
  expect_bad(st_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                      R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", d16),
             {"'a'", "'b'", "overlap"});
  // Containment is an overlap too, even when a smaller tensor sits between.
  expect_bad(st_bytes(R"({"big":{"dtype":"U8","shape":[16],"data_offsets":[0,16]},)"
                      R"("x":{"dtype":"U8","shape":[2],"data_offsets":[2,4]},)"
                      R"("y":{"dtype":"U8","shape":[2],"data_offsets":[8,10]}})", d16),
             {"'big'", "overlap"});
  expect_bad(st_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                      R"("a":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})", d16),
             {"duplicate", "'a'"});
  expect_bad(st_bytes(R"({"a":{"dtype":"F32","dtype":"I32","shape":[2],"data_offsets":[0,8]}})", d16),
             {"duplicate", "'dtype'"});
  expect_bad(st_bytes(R"({"__metadata__":{"k":"1","k":"2"}})"), {"duplicate", "'k'"});

  // Not errors: adjacent ranges, gaps, and empty tensors inside another tensor's range.
  const std::string p = file("ok.safetensors");
  write_raw(p, st_bytes(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},)"
                        R"("e":{"dtype":"F32","shape":[0,5],"data_offsets":[2,2]},)"
                        R"("b":{"dtype":"U8","shape":[4],"data_offsets":[4,8]},)"
                        R"("c":{"dtype":"U8","shape":[4],"data_offsets":[12,16]}})", d16));
  EXPECT_EQ(SafetensorsFile::open(p)->names(), (std::vector<std::string>{"a", "e", "b", "c"}));
}

TEST_F(SafetensorsTest, ErrorMessagesStayOnOneLine) {
  // A tensor name with a newline must not break the one-line error convention.
  expect_bad(st_bytes("{\"bad\\nname\":{\"dtype\":\"X\",\"shape\":[],\"data_offsets\":[0,0]}}"),
             {"bad\\x0aname"});
}

// ---- writer failures and atomic output ----------------------------------------------------

TEST_F(SafetensorsTest, WriterLeavesNothingOnError) {
  const std::string p = file("out.safetensors");
  const float v[4] = {1, 2, 3, 4};
  expect_error([&] { write_safetensors(p, {{"a", DType::F32, {2, 2}, v, 12}}); }, {p, "'a'", "needs 16"});
  expect_error([&] { write_safetensors(p, {{"a", DType::F32, {1}, v, 4}, {"a", DType::F32, {1}, v, 4}}); },
               {p, "duplicate"});
  expect_error([&] { write_safetensors(p, {{"a", DType::F32, {-1}, v, 4}}); }, {p, "negative"});
  expect_error([&] { write_safetensors(p, {{"a", DType::F32, {1}, nullptr, 4}}); }, {p, "null"});
  expect_error([&] { write_safetensors(p, {{"__metadata__", DType::F32, {1}, v, 4}}); }, {p, "reserved"});
  expect_error([&] { write_safetensors(p, {{"a\xff", DType::F32, {1}, v, 4}}); }, {p, "UTF-8"});
  expect_error([&] { write_safetensors(p, {{"a", DType::F32, {1}, v, 4}}, {{"k", "\xc3"}}); }, {p, "UTF-8"});
  EXPECT_TRUE(dir_entries().empty());

  // A failed write must not disturb an existing file either.
  write_file_atomic(p, "old contents");
  expect_error([&] { write_safetensors(p, {{"a", DType::F32, {2}, v, 4}}); }, {p});
  EXPECT_EQ(read_all(p), "old contents");
  EXPECT_EQ(dir_entries(), std::vector<std::string>{"out.safetensors"});

  expect_error([&] { write_safetensors(file("no/such/dir.safetensors"), {}); }, {"no/such/dir.safetensors"});
  expect_error([&] { write_file_atomic(file("no/such/file.json"), "x"); }, {"no/such/file.json"});
}

TEST_F(SafetensorsTest, AtomicWriteReplacesExistingFile) {
  const std::string p = file("results.json");
  write_file_atomic(p, "first version, rather long");
  EXPECT_EQ(read_all(p), "first version, rather long");
  write_file_atomic(p, "second");
  EXPECT_EQ(read_all(p), "second");
  write_file_atomic(p, "");
  EXPECT_EQ(read_all(p), "");
  EXPECT_EQ(dir_entries(), std::vector<std::string>{"results.json"});

  // The temp file is hidden beside the target and disappears if not committed.
  {
    AtomicFile out(p);
    EXPECT_EQ(out.temp_path(), file(".results.json.tmp." + std::to_string(::getpid())));
    out.write("partial", 7);
    EXPECT_TRUE(fs::exists(out.temp_path()));
  }
  EXPECT_EQ(read_all(p), "");
  EXPECT_EQ(dir_entries(), std::vector<std::string>{"results.json"});

  // Overwriting a safetensors file in place while an old mapping is open keeps the old view intact.
  const float one = 1.0f, two = 2.0f;
  const std::string m = file("m.safetensors");
  write_safetensors(m, {{"x", DType::F32, {}, &one, 4}});
  const auto before = SafetensorsFile::open(m);
  write_safetensors(m, {{"x", DType::F32, {}, &two, 4}});
  float got;
  std::memcpy(&got, before->get("x").data, 4);
  EXPECT_EQ(got, 1.0f);
  std::memcpy(&got, SafetensorsFile::open(m)->get("x").data, 4);
  EXPECT_EQ(got, 2.0f);
}

TEST_F(SafetensorsTest, StaleTempFromKilledWriterIsRemoved) {
  // A writer killed with SIGKILL leaves its hidden temp; the next write of that path removes it,
  // but never the temp of a live writer (one that holds the temp's owner lock). A temp whose pid
  // now belongs to an unrelated live process (pid reuse) is stale all the same.
  const std::string p = file("out.json");
  int ready[2], go[2];
  ASSERT_EQ(::pipe(ready), 0);
  ASSERT_EQ(::pipe(go), 0);
  const pid_t writer = ::fork();
  ASSERT_GE(writer, 0);
  if (writer == 0) {  // a concurrent writer, mid-write
    AtomicFile f(p);
    f.write("in progress", 11);
    char c = 1;
    (void)!::write(ready[1], &c, 1);
    (void)!::read(go[0], &c, 1);
    f.discard();
    ::_exit(0);
  }
  char c = 0;
  ASSERT_EQ(::read(ready[0], &c, 1), 1);
  const pid_t gone = ::fork();
  ASSERT_GE(gone, 0);
  if (gone == 0) ::_exit(0);
  int status = 0;
  ASSERT_EQ(::waitpid(gone, &status, 0), gone);
  const std::string dead = hidden_temp_path(p, gone), live = hidden_temp_path(p, writer),
                    reused = hidden_temp_path(p, ::getppid());
  write_raw(dead, "half a fi");
  write_raw(reused, "a killed run's temp whose pid was reused");
  write_raw(file(".other.json.tmp.1"), "another target's temp");
  fs::create_directories(hidden_temp_path(file("dir"), gone));
  write_file_atomic(p, "whole");
  EXPECT_EQ(read_all(p), "whole");
  EXPECT_FALSE(fs::exists(dead));
  EXPECT_FALSE(fs::exists(reused));
  EXPECT_TRUE(fs::exists(live));
  EXPECT_TRUE(fs::exists(file(".other.json.tmp.1")));
  EXPECT_EQ(remove_stale_temps(p), 0);
  EXPECT_EQ(remove_stale_temps(file("dir")), 1);  // a killed run's staging folder
  c = 1;
  ASSERT_EQ(::write(go[1], &c, 1), 1);
  ASSERT_EQ(::waitpid(writer, &status, 0), writer);
  EXPECT_FALSE(fs::exists(live));  // the writer discarded its own temp on the way out
  for (int fd : {ready[0], ready[1], go[0], go[1]}) ::close(fd);
}

TEST_F(SafetensorsTest, LiveStagingFolderIsLeftAlone) {
  // AtomicDir holds its staging folder's owner lock: a second writer of the same folder never
  // removes it, and once the first has gone its leftover is removed.
  const std::string out = file("model");
  std::string staging;
  {
    AtomicDir first(out);
    staging = first.staging();
    write_raw(first.file("a.txt"), "a");
    EXPECT_EQ(remove_stale_temps(out), 0);  // same pid: ours
  }
  EXPECT_FALSE(fs::exists(staging));
  // Another process's live staging folder survives a scan; dead, it is removed.
  int ready[2], go[2];
  ASSERT_EQ(::pipe(ready), 0);
  ASSERT_EQ(::pipe(go), 0);
  const pid_t writer = ::fork();
  ASSERT_GE(writer, 0);
  if (writer == 0) {
    AtomicDir d(out);
    char c = 1;
    (void)!::write(ready[1], &c, 1);
    (void)!::read(go[0], &c, 1);
    ::_exit(0);  // like a kill: no destructor runs, the staging folder stays
  }
  char c = 0;
  ASSERT_EQ(::read(ready[0], &c, 1), 1);
  const std::string theirs = hidden_temp_path(out, writer);
  EXPECT_TRUE(fs::is_directory(theirs));
  EXPECT_EQ(remove_stale_temps(out), 0);
  EXPECT_TRUE(fs::is_directory(theirs));
  c = 1;
  ASSERT_EQ(::write(go[1], &c, 1), 1);
  int status = 0;
  ASSERT_EQ(::waitpid(writer, &status, 0), writer);
  EXPECT_EQ(remove_stale_temps(out), 1);
  EXPECT_FALSE(fs::exists(theirs));
  for (int fd : {ready[0], ready[1], go[0], go[1]}) ::close(fd);
}

TEST_F(SafetensorsTest, ReleasedPagesStayReadable) {
  // A loader drops the pages it has copied; reading them again faults them back from the file.
  std::string bytes(3 * 4096 + 123, '\0');
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = char(i * 7 + 1);
  const std::string p = file("pages.bin");
  write_raw(p, bytes);
  const MappedFile m(p);
  release_pages(m.data() + 100, m.size() - 200);  // whole pages inside only
  release_pages(m.data(), 10);                     // no whole page: nothing
  release_pages(nullptr, 0);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(m.data()), m.size()), bytes);
}

TEST_F(SafetensorsTest, EmptyTensorListWritesValidFile) {
  const std::string p = file("empty.safetensors");
  write_safetensors(p, {});
  const auto f = SafetensorsFile::open(p);
  EXPECT_TRUE(f->names().empty());
  EXPECT_TRUE(f->metadata().empty());
}

}  // namespace
