// Tests for the dependency-free PNG line-plot writer: checksums, the PNG container (decoded by an
// independent stored-block inflater here and, when available, by Python's zlib), rendering edge
// cases and the atomic file write.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
#include <sstream>
#include <stdexcept>

#include "util/error.h"
#include "io/line_plot.h"

namespace fs = std::filesystem;
using namespace loopq::io;

namespace {

const char kPngSignature[] = "\x89PNG\r\n\x1a\n";

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

uint32_t be32(const std::string& s, size_t at) {
  if (at + 4 > s.size()) throw std::runtime_error("truncated at " + std::to_string(at));
  const auto* p = reinterpret_cast<const uint8_t*>(s.data()) + at;
  return uint32_t{p[0]} << 24 | uint32_t{p[1]} << 16 | uint32_t{p[2]} << 8 | p[3];
}

// Bitwise CRC-32, written independently of the table-driven one under test.
uint32_t slow_crc32(const std::string& s) {
  uint32_t c = 0xFFFFFFFFu;
  for (unsigned char ch : s) {
    c ^= ch;
    for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
  }
  return ~c;
}

struct Image {
  int width = 0, height = 0;
  std::vector<uint8_t> rgb;
  int stored_blocks = 0;
};

// Minimal PNG reader for what encode_png_rgb produces: checks every chunk CRC, the zlib header and
// Adler-32, inflates stored blocks only (anything else is an error) and undoes filter 0.
Image decode_png(const std::string& png) {
  if (png.compare(0, 8, kPngSignature, 8) != 0) throw std::runtime_error("bad signature");
  Image img;
  std::string idat;
  bool seen_end = false;
  for (size_t pos = 8; pos < png.size();) {
    const uint32_t len = be32(png, pos);
    if (pos + 12 + len > png.size()) throw std::runtime_error("chunk overruns file");
    const std::string type = png.substr(pos + 4, 4);
    const std::string data = png.substr(pos + 8, len);
    if (be32(png, pos + 8 + len) != slow_crc32(type + data)) {
      throw std::runtime_error("bad CRC on " + type);
    }
    if (type == "IHDR") {
      if (len != 13) throw std::runtime_error("IHDR length");
      img.width = static_cast<int>(be32(data, 0));
      img.height = static_cast<int>(be32(data, 4));
      if (data.substr(8) != std::string("\x08\x02\x00\x00\x00", 5)) {
        throw std::runtime_error("not 8-bit RGB, non-interlaced");
      }
    } else if (type == "IDAT") {
      idat += data;
    } else if (type == "IEND") {
      seen_end = true;
      if (pos + 12 != png.size()) throw std::runtime_error("data after IEND");
    }
    pos += 12 + len;
  }
  if (!seen_end || img.width <= 0) throw std::runtime_error("missing IHDR/IEND");

  const auto* z = reinterpret_cast<const uint8_t*>(idat.data());
  if (idat.size() < 6 || (z[0] & 0x0F) != 8 || (z[0] * 256 + z[1]) % 31 != 0 || (z[1] & 0x20)) {
    throw std::runtime_error("bad zlib header");
  }
  std::string raw;
  size_t pos = 2;
  for (bool final = false; !final;) {
    if (pos + 5 > idat.size()) throw std::runtime_error("truncated deflate block");
    final = z[pos] & 1;
    if ((z[pos] >> 1 & 3) != 0) throw std::runtime_error("not a stored block");
    const unsigned len = z[pos + 1] | z[pos + 2] << 8, nlen = z[pos + 3] | z[pos + 4] << 8;
    if ((len ^ 0xFFFFu) != nlen) throw std::runtime_error("LEN/NLEN mismatch");
    if (pos + 5 + len > idat.size()) throw std::runtime_error("stored block overruns");
    raw.append(idat, pos + 5, len);
    pos += 5 + len;
    ++img.stored_blocks;
  }
  if (pos + 4 != idat.size()) throw std::runtime_error("junk after deflate stream");
  uint32_t a = 1, b = 0;  // naive Adler-32, independent of the one under test
  for (unsigned char ch : raw) a = (a + ch) % 65521, b = (b + a) % 65521;
  if (be32(idat, pos) != (b << 16 | a)) throw std::runtime_error("bad Adler-32");

  const size_t stride = static_cast<size_t>(img.width) * 3;
  if (raw.size() != (stride + 1) * img.height) throw std::runtime_error("wrong raw size");
  for (int y = 0; y < img.height; ++y) {
    const size_t row = y * (stride + 1);
    if (raw[row] != 0) throw std::runtime_error("filter type is not 0");
    img.rgb.insert(img.rgb.end(), raw.begin() + row + 1, raw.begin() + row + 1 + stride);
  }
  return img;
}

std::vector<uint8_t> random_pixels(int w, int h, unsigned seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> px(static_cast<size_t>(w) * h * 3);
  for (auto& v : px) v = static_cast<uint8_t>(rng());
  return px;
}

bool has_color(const Image& img, Rgb c) {
  for (size_t i = 0; i + 2 < img.rgb.size(); i += 3)
    if (img.rgb[i] == c.r && img.rgb[i + 1] == c.g && img.rgb[i + 2] == c.b) return true;
  return false;
}

bool has_color(const std::vector<uint8_t>& rgb, Rgb c) {
  Image img;
  img.rgb = rgb;
  return has_color(img, c);
}

class TempDir {
 public:
  TempDir() {
    std::string tmpl = ::testing::TempDir() + "loopq_line_plot_XXXXXX";
    if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string file(const std::string& name) const { return path_ + "/" + name; }
  std::vector<std::string> entries() const {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(path_)) names.push_back(e.path().filename());
    return names;
  }

 private:
  std::string path_;
};

std::vector<PlotPanel> sample_panels() {
  const std::vector<double> x = {1, 2, 3, 4};
  PlotPanel err{"relative state error", "loop", "rel. error", false, {}};
  err.series = {{"int8", x, {0.012, 0.019, 0.027, 0.034}},
                {"int4 g128", x, {0.041, 0.066, 0.089, 0.121}},
                {"int4 + loop-aware", x, {0.022, 0.031, 0.038, 0.045}}};
  PlotPanel kl{"KL", "loop", "KL [nats]", true, {}};
  kl.series = {{"int8", x, {1.2e-4, 3.1e-4, 6.5e-4, 1.1e-3}},
               {"int4 g128", x, {4.0e-3, 1.5e-2, 4.2e-2, 0.11}},
               {"int4 + loop-aware", x, {9.0e-4, 2.1e-3, 3.9e-3, 6.0e-3}}};
  return {err, kl};
}

}  // namespace

TEST(LinePlotChecksums, Crc32KnownValues) {
  const std::string check = "123456789";
  EXPECT_EQ(crc32(check.data(), check.size()), 0xCBF43926u);
  EXPECT_EQ(crc32(nullptr, 0), 0u);
  // Continuing a running CRC gives the same result as one pass.
  const uint32_t head = crc32(check.data(), 4);
  EXPECT_EQ(crc32(check.data() + 4, check.size() - 4, head), 0xCBF43926u);
}

TEST(LinePlotChecksums, Adler32KnownValues) {
  const std::string wiki = "Wikipedia";
  EXPECT_EQ(adler32(wiki.data(), wiki.size()), 0x11E60398u);
  EXPECT_EQ(adler32(nullptr, 0), 1u);
  // Long all-0xFF input crosses the deferred-modulo boundary (5552 bytes) several times.
  const std::string ff(20000, '\xFF');
  uint32_t a = 1, b = 0;
  for (unsigned char ch : ff) a = (a + ch) % 65521, b = (b + a) % 65521;
  EXPECT_EQ(adler32(ff.data(), ff.size()), b << 16 | a);
  const uint32_t head = adler32(ff.data(), 7000);
  EXPECT_EQ(adler32(ff.data() + 7000, ff.size() - 7000, head), b << 16 | a);
}

TEST(LinePlotPng, SignatureAndIhdr) {
  const std::string png = encode_png_rgb(3, 2, random_pixels(3, 2, 1));
  ASSERT_GE(png.size(), 33u);
  EXPECT_EQ(png.substr(0, 8), std::string(kPngSignature, 8));
  EXPECT_EQ(be32(png, 8), 13u);
  EXPECT_EQ(png.substr(12, 4), "IHDR");
  EXPECT_EQ(be32(png, 16), 3u);
  EXPECT_EQ(be32(png, 20), 2u);
  EXPECT_EQ(png[24], 8);  // bit depth
  EXPECT_EQ(png[25], 2);  // color type RGB
  EXPECT_EQ(be32(png, 29), slow_crc32(png.substr(12, 17)));
  EXPECT_EQ(png.substr(png.size() - 12), std::string("\0\0\0\0IEND\xAE\x42\x60\x82", 12));
}

TEST(LinePlotPng, RoundTripsPixelsExactly) {
  for (auto [w, h] : {std::pair{1, 1}, std::pair{3, 2}, std::pair{17, 5}}) {
    const auto px = random_pixels(w, h, static_cast<unsigned>(w * 100 + h));
    const Image img = decode_png(encode_png_rgb(w, h, px));
    EXPECT_EQ(img.width, w);
    EXPECT_EQ(img.height, h);
    EXPECT_EQ(img.rgb, px);
    EXPECT_EQ(img.stored_blocks, 1);
  }
}

TEST(LinePlotPng, SplitsIntoStoredBlocksOf64KiB) {
  // 200x150 RGB is 150 * 601 = 90150 raw bytes: two stored blocks. 21845 * 3 + 1 = 65536 raw
  // bytes in one row is one byte over a block, exercising a block of length 1.
  for (auto [w, h, blocks] : {std::tuple{200, 150, 2}, std::tuple{21845, 1, 2}}) {
    const auto px = random_pixels(w, h, 7);
    const Image img = decode_png(encode_png_rgb(w, h, px));
    EXPECT_EQ(img.rgb, px);
    EXPECT_EQ(img.stored_blocks, blocks);
  }
}

TEST(LinePlotPng, PythonZlibDecodesIt) {
  const char* python = "/usr/bin/python3";
  if (::access(python, X_OK) != 0) GTEST_SKIP() << "no " << python;
  TempDir dir;
  const int w = 123, h = 200;  // more than one stored block
  const auto px = random_pixels(w, h, 3);
  const std::string in = dir.file("in.png"), out = dir.file("out.rgb");
  std::ofstream(in, std::ios::binary) << encode_png_rgb(w, h, px);
  // zlib.decompress validates the Adler-32; zlib.crc32 checks every chunk.
  const std::string script =
      "import struct, sys, zlib\n"
      "d = open(sys.argv[1], 'rb').read()\n"
      "assert d[:8] == b'\\x89PNG\\r\\n\\x1a\\n'\n"
      "p, idat = 8, b''\n"
      "while p < len(d):\n"
      "    n, = struct.unpack('>I', d[p:p+4]); t = d[p+4:p+8]; body = d[p+8:p+8+n]\n"
      "    assert struct.unpack('>I', d[p+8+n:p+12+n])[0] == zlib.crc32(t + body), t\n"
      "    if t == b'IHDR': w, h = struct.unpack('>II', body[:8])\n"
      "    if t == b'IDAT': idat += body\n"
      "    p += 12 + n\n"
      "raw = zlib.decompress(idat); s = 3 * w + 1\n"
      "assert len(raw) == s * h and all(raw[y * s] == 0 for y in range(h))\n"
      "open(sys.argv[2], 'wb').write(b''.join(raw[y*s+1:(y+1)*s] for y in range(h)))\n";
  const std::string script_path = dir.file("decode.py");
  std::ofstream(script_path) << script;
  const std::string cmd = std::string(python) + " " + script_path + " " + in + " " + out;
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  const std::string got = read_all(out);
  EXPECT_EQ(std::vector<uint8_t>(got.begin(), got.end()), px);
}

TEST(LinePlotPng, RejectsBadInput) {
  EXPECT_THROW(encode_png_rgb(0, 1, {}), loopq::Error);
  EXPECT_THROW(encode_png_rgb(1, -1, {}), loopq::Error);
  EXPECT_THROW(encode_png_rgb(2, 2, std::vector<uint8_t>(11)), loopq::Error);
  EXPECT_THROW(encode_png_rgb(50000, 50000, {}), loopq::Error);  // over the 2 GiB chunk limit
}

TEST(LinePlot, WritesPngWithSeriesColorsAndNoTempFile) {
  TempDir dir;
  const std::string path = dir.file("plot.png");
  write_line_plot_png(path, sample_panels());
  const std::string png = read_all(path);
  ASSERT_GE(png.size(), 8u);
  EXPECT_EQ(png.substr(0, 8), std::string(kPngSignature, 8));
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"plot.png"});
  const Image img = decode_png(png);
  EXPECT_EQ(img.width, 1200);
  EXPECT_EQ(img.height, 420);
  for (size_t i = 0; i < 3; ++i) EXPECT_TRUE(has_color(img, series_color(i))) << "series " << i;
  EXPECT_FALSE(has_color(img, series_color(3)));  // only three series were given
  EXPECT_TRUE(has_color(img, Rgb{255, 255, 255}));

  // Rewriting replaces the file in place and again leaves nothing behind.
  write_line_plot_png(path, {sample_panels()[1]}, 300, 200);
  EXPECT_EQ(decode_png(read_all(path)).width, 300);
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"plot.png"});
}

TEST(LinePlot, RejectsBadSizesAndPanelCounts) {
  TempDir dir;
  const std::string path = dir.file("plot.png");
  const auto panels = sample_panels();
  EXPECT_THROW(write_line_plot_png(path, panels, 63, 420), loopq::Error);
  EXPECT_THROW(write_line_plot_png(path, panels, 8193, 420), loopq::Error);
  EXPECT_THROW(write_line_plot_png(path, panels, 1200, 63), loopq::Error);
  EXPECT_THROW(write_line_plot_png(path, panels, 1200, 8193), loopq::Error);
  EXPECT_THROW(write_line_plot_png(path, {}), loopq::Error);
  EXPECT_THROW(write_line_plot_png(path, std::vector<PlotPanel>(5)), loopq::Error);
  PlotPanel ragged;
  ragged.series = {{"ragged", {1, 2, 3}, {1, 2}}};
  EXPECT_THROW(write_line_plot_png(path, {ragged}), loopq::Error);
  EXPECT_TRUE(dir.entries().empty());
  // Boundaries themselves are fine.
  EXPECT_EQ(render_line_plot_rgb(panels, 64, 64).size(), 64u * 64 * 3);
  EXPECT_NO_THROW(render_line_plot_rgb(std::vector<PlotPanel>(4), 8192, 64));
}

TEST(LinePlot, UnwritableDirectoryThrowsNamingThePath) {
  TempDir dir;
  const std::string path = dir.file("missing/plot.png");
  try {
    write_line_plot_png(path, sample_panels(), 200, 100);
    FAIL() << "expected loopq::Error";
  } catch (const loopq::Error& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
  }
  EXPECT_TRUE(dir.entries().empty());
}

TEST(LinePlot, OddDataRendersWithoutCrashing) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  PlotPanel gaps{"gaps", "loop", "err", false, {}};
  gaps.series = {{"nan and inf", {1, 2, 3, 4, 5}, {1, nan, 3, inf, -inf}},
                 {"single point", {2}, {2}},
                 {"empty", {}, {}},
                 {"", {nan}, {1}}};
  PlotPanel flat{"flat", "", "", true, {{"equal", {1, 2, 3}, {0.5, 0.5, 0.5}}}};
  PlotPanel logbad{"log with non-positive", "x", "y", true,
                   {{"mixed", {1, 2, 3}, {-1, 0, 0.01}}, {"all bad", {1, 2}, {0, -3}}}};
  PlotPanel extreme{"extreme", "x", "y", false,
                    {{"huge", {-1e308, 1e308}, {-1e308, 1e308}}, {"tiny", {0, 1e-300}, {0, 1e-300}}}};
  for (auto [w, h] : {std::pair{1200, 420}, std::pair{64, 64}, std::pair{300, 64}}) {
    std::vector<uint8_t> px;
    ASSERT_NO_THROW(px = render_line_plot_rgb({gaps, flat, logbad, extreme}, w, h)) << w << "x" << h;
    EXPECT_EQ(px.size(), static_cast<size_t>(w) * h * 3);
  }
  // A lone point and an all-equal series still show up in their colors.
  PlotPanel single{"single", "x", "y", false, {{"one", {3}, {7}}}};
  EXPECT_TRUE(has_color(render_line_plot_rgb({single}, 400, 300), series_color(0)));
  PlotPanel eq{"equal", "x", "y", true, {{"a", {}, {}}, {"b", {1, 2}, {4, 4}}}};
  EXPECT_TRUE(has_color(render_line_plot_rgb({eq}, 400, 300), series_color(1)));
}
