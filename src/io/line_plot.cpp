#include "io/line_plot.h"


#include <algorithm>
#include <array>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>

#include "io/atomic_file.h"
#include "util/error.h"

namespace loopq::io {
namespace {

// ------------------------------------------------------------------------------------------------
// PNG encoding
// ------------------------------------------------------------------------------------------------

const std::array<uint32_t, 256>& crc_table() {
  static const std::array<uint32_t, 256> table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t n = 0; n < 256; ++n) {
      uint32_t c = n;
      for (int k = 0; k < 8; ++k) c = (c & 1u) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[n] = c;
    }
    return t;
  }();
  return table;
}

void put_u32_be(std::string& out, uint32_t v) {
  out.push_back(static_cast<char>(v >> 24));
  out.push_back(static_cast<char>(v >> 16));
  out.push_back(static_cast<char>(v >> 8));
  out.push_back(static_cast<char>(v));
}

// Appends one chunk: length, type, data, CRC over type + data.
void put_chunk(std::string& out, const char type[4], const std::string& data) {
  put_u32_be(out, static_cast<uint32_t>(data.size()));
  const size_t crc_from = out.size();
  out.append(type, 4);
  out += data;
  put_u32_be(out, crc32(out.data() + crc_from, out.size() - crc_from));
}

constexpr size_t kStoredBlockMax = 65535;  // LEN is a 16-bit field

// zlib stream (RFC 1950) of stored deflate blocks (RFC 1951, BTYPE=00).
std::string zlib_stored(const std::string& raw) {
  const size_t blocks = std::max<size_t>(1, (raw.size() + kStoredBlockMax - 1) / kStoredBlockMax);
  std::string z;
  z.reserve(2 + blocks * 5 + raw.size() + 4);
  // CMF 0x78 = deflate with a 32 KiB window; FLG 0x01 makes CMF*256+FLG a multiple of 31.
  z.push_back(static_cast<char>(0x78));
  z.push_back(static_cast<char>(0x01));
  size_t pos = 0;
  for (size_t b = 0; b < blocks; ++b) {
    const size_t len = std::min(kStoredBlockMax, raw.size() - pos);
    const bool last = b + 1 == blocks;
    z.push_back(static_cast<char>(last ? 0x01 : 0x00));  // BFINAL bit, BTYPE=00, rest of byte pad
    const uint16_t nlen = static_cast<uint16_t>(~len);
    z.push_back(static_cast<char>(len & 0xFF));
    z.push_back(static_cast<char>(len >> 8));
    z.push_back(static_cast<char>(nlen & 0xFF));
    z.push_back(static_cast<char>(nlen >> 8));
    z.append(raw, pos, len);
    pos += len;
  }
  put_u32_be(z, adler32(raw.data(), raw.size()));
  return z;
}

// ------------------------------------------------------------------------------------------------
// Bitmap font: 5x8 cells for ASCII 32..126, one byte per column, bit 0 = top row. Capitals and
// digits use rows 0..6 (baseline at row 6); row 7 holds descenders (g j p q y , _).
// ------------------------------------------------------------------------------------------------

constexpr int kGlyphW = 5, kGlyphH = 8, kAdvance = 6, kCapH = 7;

const uint8_t kFont[95][5] = {
    {0x00, 0x00, 0x00, 0x00, 0x00},  // ' '
    {0x00, 0x00, 0x5F, 0x00, 0x00},  // !
    {0x00, 0x07, 0x00, 0x07, 0x00},  // "
    {0x14, 0x7F, 0x14, 0x7F, 0x14},  // #
    {0x24, 0x2A, 0x7F, 0x2A, 0x12},  // $
    {0x23, 0x13, 0x08, 0x64, 0x62},  // %
    {0x36, 0x49, 0x55, 0x22, 0x50},  // &
    {0x00, 0x00, 0x07, 0x00, 0x00},  // '
    {0x00, 0x1C, 0x22, 0x41, 0x00},  // (
    {0x00, 0x41, 0x22, 0x1C, 0x00},  // )
    {0x14, 0x08, 0x3E, 0x08, 0x14},  // *
    {0x08, 0x08, 0x3E, 0x08, 0x08},  // +
    {0x00, 0x80, 0x60, 0x00, 0x00},  // ,
    {0x08, 0x08, 0x08, 0x08, 0x08},  // -
    {0x00, 0x60, 0x60, 0x00, 0x00},  // .
    {0x20, 0x10, 0x08, 0x04, 0x02},  // /
    {0x3E, 0x51, 0x49, 0x45, 0x3E},  // 0
    {0x00, 0x42, 0x7F, 0x40, 0x00},  // 1
    {0x42, 0x61, 0x51, 0x49, 0x46},  // 2
    {0x21, 0x41, 0x45, 0x4B, 0x31},  // 3
    {0x18, 0x14, 0x12, 0x7F, 0x10},  // 4
    {0x27, 0x45, 0x45, 0x45, 0x39},  // 5
    {0x3C, 0x4A, 0x49, 0x49, 0x30},  // 6
    {0x01, 0x71, 0x09, 0x05, 0x03},  // 7
    {0x36, 0x49, 0x49, 0x49, 0x36},  // 8
    {0x06, 0x49, 0x49, 0x29, 0x1E},  // 9
    {0x00, 0x66, 0x66, 0x00, 0x00},  // :
    {0x00, 0x86, 0x66, 0x00, 0x00},  // ;
    {0x08, 0x14, 0x22, 0x41, 0x00},  // <
    {0x14, 0x14, 0x14, 0x14, 0x14},  // =
    {0x00, 0x41, 0x22, 0x14, 0x08},  // >
    {0x02, 0x01, 0x51, 0x09, 0x06},  // ?
    {0x32, 0x49, 0x79, 0x41, 0x3E},  // @
    {0x7E, 0x11, 0x11, 0x11, 0x7E},  // A
    {0x7F, 0x49, 0x49, 0x49, 0x36},  // B
    {0x3E, 0x41, 0x41, 0x41, 0x22},  // C
    {0x7F, 0x41, 0x41, 0x22, 0x1C},  // D
    {0x7F, 0x49, 0x49, 0x49, 0x41},  // E
    {0x7F, 0x09, 0x09, 0x09, 0x01},  // F
    {0x3E, 0x41, 0x49, 0x49, 0x7A},  // G
    {0x7F, 0x08, 0x08, 0x08, 0x7F},  // H
    {0x00, 0x41, 0x7F, 0x41, 0x00},  // I
    {0x20, 0x40, 0x41, 0x3F, 0x01},  // J
    {0x7F, 0x08, 0x14, 0x22, 0x41},  // K
    {0x7F, 0x40, 0x40, 0x40, 0x40},  // L
    {0x7F, 0x02, 0x0C, 0x02, 0x7F},  // M
    {0x7F, 0x04, 0x08, 0x10, 0x7F},  // N
    {0x3E, 0x41, 0x41, 0x41, 0x3E},  // O
    {0x7F, 0x09, 0x09, 0x09, 0x06},  // P
    {0x3E, 0x41, 0x51, 0x21, 0x5E},  // Q
    {0x7F, 0x09, 0x19, 0x29, 0x46},  // R
    {0x46, 0x49, 0x49, 0x49, 0x31},  // S
    {0x01, 0x01, 0x7F, 0x01, 0x01},  // T
    {0x3F, 0x40, 0x40, 0x40, 0x3F},  // U
    {0x1F, 0x20, 0x40, 0x20, 0x1F},  // V
    {0x3F, 0x40, 0x38, 0x40, 0x3F},  // W
    {0x63, 0x14, 0x08, 0x14, 0x63},  // X
    {0x07, 0x08, 0x70, 0x08, 0x07},  // Y
    {0x61, 0x51, 0x49, 0x45, 0x43},  // Z
    {0x00, 0x7F, 0x41, 0x41, 0x00},  // [
    {0x02, 0x04, 0x08, 0x10, 0x20},  // backslash
    {0x00, 0x41, 0x41, 0x7F, 0x00},  // ]
    {0x04, 0x02, 0x01, 0x02, 0x04},  // ^
    {0x80, 0x80, 0x80, 0x80, 0x80},  // _
    {0x00, 0x01, 0x02, 0x04, 0x00},  // `
    {0x20, 0x54, 0x54, 0x54, 0x78},  // a
    {0x7F, 0x48, 0x44, 0x44, 0x38},  // b
    {0x38, 0x44, 0x44, 0x44, 0x28},  // c
    {0x38, 0x44, 0x44, 0x48, 0x7F},  // d
    {0x38, 0x54, 0x54, 0x54, 0x18},  // e
    {0x08, 0x7E, 0x09, 0x01, 0x02},  // f
    {0x18, 0xA4, 0xA4, 0xA4, 0x7C},  // g
    {0x7F, 0x08, 0x04, 0x04, 0x78},  // h
    {0x00, 0x44, 0x7D, 0x40, 0x00},  // i
    {0x40, 0x80, 0x84, 0x7D, 0x00},  // j
    {0x7F, 0x10, 0x28, 0x44, 0x00},  // k
    {0x00, 0x41, 0x7F, 0x40, 0x00},  // l
    {0x7C, 0x04, 0x78, 0x04, 0x78},  // m
    {0x7C, 0x08, 0x04, 0x04, 0x78},  // n
    {0x38, 0x44, 0x44, 0x44, 0x38},  // o
    {0xFC, 0x24, 0x24, 0x24, 0x18},  // p
    {0x18, 0x24, 0x24, 0x24, 0xFC},  // q
    {0x7C, 0x08, 0x04, 0x04, 0x08},  // r
    {0x48, 0x54, 0x54, 0x54, 0x24},  // s
    {0x04, 0x3F, 0x44, 0x40, 0x20},  // t
    {0x3C, 0x40, 0x40, 0x20, 0x7C},  // u
    {0x1C, 0x20, 0x40, 0x20, 0x1C},  // v
    {0x3C, 0x40, 0x30, 0x40, 0x3C},  // w
    {0x44, 0x28, 0x10, 0x28, 0x44},  // x
    {0x1C, 0xA0, 0xA0, 0xA0, 0x7C},  // y
    {0x44, 0x64, 0x54, 0x4C, 0x44},  // z
    {0x00, 0x08, 0x36, 0x41, 0x00},  // {
    {0x00, 0x00, 0x7F, 0x00, 0x00},  // |
    {0x00, 0x41, 0x36, 0x08, 0x00},  // }
    {0x08, 0x04, 0x08, 0x10, 0x08},  // ~
};

const uint8_t* glyph(char ch) {
  const unsigned char c = static_cast<unsigned char>(ch);
  return kFont[(c >= 32 && c <= 126) ? c - 32 : '?' - 32];  // unprintable -> '?'
}

int text_width(const std::string& s, int scale) {
  return s.empty() ? 0 : (static_cast<int>(s.size()) * kAdvance - 1) * scale;
}

// Cuts `s` to fit in max_px, marking the cut with "..".
std::string fit_text(const std::string& s, int max_px, int scale) {
  if (text_width(s, scale) <= max_px) return s;
  const int chars = (max_px / scale + 1) / kAdvance;
  if (chars <= 2) return std::string(static_cast<size_t>(std::max(chars, 0)), '.');
  return s.substr(0, static_cast<size_t>(chars - 2)) + "..";
}

// ------------------------------------------------------------------------------------------------
// Canvas: RGB pixels with a clip rectangle; every write is bounds-checked so odd layouts at small
// sizes can never write out of range.
// ------------------------------------------------------------------------------------------------

constexpr Rgb kWhite{255, 255, 255};
constexpr Rgb kText{34, 34, 34};
constexpr Rgb kFrame{64, 64, 64};
constexpr Rgb kGrid{225, 225, 225};
constexpr Rgb kMinorGrid{243, 243, 243};
constexpr Rgb kLegendBorder{190, 190, 190};

struct Canvas {
  int w, h;
  std::vector<uint8_t> px;
  int cx0 = 0, cy0 = 0, cx1, cy1;  // clip rectangle, half-open

  Canvas(int width, int height)
      : w(width), h(height), px(static_cast<size_t>(width) * height * 3, 255), cx1(width),
        cy1(height) {}

  void clip(int x0, int y0, int x1, int y1) {
    cx0 = std::max(0, x0), cy0 = std::max(0, y0);
    cx1 = std::min(w, x1), cy1 = std::min(h, y1);
  }
  void unclip() { clip(0, 0, w, h); }

  void put(int x, int y, Rgb c) {
    if (x < cx0 || x >= cx1 || y < cy0 || y >= cy1) return;
    uint8_t* p = &px[(static_cast<size_t>(y) * w + x) * 3];
    p[0] = c.r, p[1] = c.g, p[2] = c.b;
  }
  void blend(int x, int y, Rgb c, double a) {
    if (a <= 0.0 || x < cx0 || x >= cx1 || y < cy0 || y >= cy1) return;
    if (a >= 1.0) return put(x, y, c);
    uint8_t* p = &px[(static_cast<size_t>(y) * w + x) * 3];
    auto mix = [a](uint8_t dst, uint8_t src) {
      return static_cast<uint8_t>(std::lround(dst + (src - dst) * a));
    };
    p[0] = mix(p[0], c.r), p[1] = mix(p[1], c.g), p[2] = mix(p[2], c.b);
  }
  void fill(int x0, int y0, int x1, int y1, Rgb c) {  // half-open
    for (int y = std::max(y0, cy0); y < std::min(y1, cy1); ++y)
      for (int x = std::max(x0, cx0); x < std::min(x1, cx1); ++x) put(x, y, c);
  }
  void hline(int x0, int x1, int y, Rgb c) { fill(x0, y, x1 + 1, y + 1, c); }  // inclusive
  void vline(int x, int y0, int y1, Rgb c) { fill(x, y0, x + 1, y1 + 1, c); }
  void outline(int x0, int y0, int x1, int y1, Rgb c) {  // inclusive corners
    hline(x0, x1, y0, c), hline(x0, x1, y1, c), vline(x0, y0, y1, c), vline(x1, y0, y1, c);
  }

  // Pixel box [x0, x1) x [y0, y1) around a shape, limited to the clip rectangle; false if empty.
  // Done in double first so huge or non-finite coordinates never reach an int conversion.
  bool box(double lx, double ly, double hx, double hy, int& x0, int& y0, int& x1, int& y1) const {
    if (!(std::isfinite(lx) && std::isfinite(ly) && std::isfinite(hx) && std::isfinite(hy))) {
      return false;
    }
    x0 = static_cast<int>(std::max<double>(cx0, std::floor(lx)));
    y0 = static_cast<int>(std::max<double>(cy0, std::floor(ly)));
    x1 = static_cast<int>(std::min<double>(cx1, std::ceil(hx) + 1));
    y1 = static_cast<int>(std::min<double>(cy1, std::ceil(hy) + 1));
    return x0 < x1 && y0 < y1;
  }

  // Anti-aliased segment of the given width: coverage falls off over one pixel at the edge.
  void segment(double ax, double ay, double bx, double by, double width, Rgb c) {
    const double r = width / 2;
    int x0, y0, x1, y1;
    if (!box(std::min(ax, bx) - r - 1, std::min(ay, by) - r - 1, std::max(ax, bx) + r + 1,
             std::max(ay, by) + r + 1, x0, y0, x1, y1)) {
      return;
    }
    const double dx = bx - ax, dy = by - ay, len2 = dx * dx + dy * dy;
    for (int y = y0; y < y1; ++y) {
      for (int x = x0; x < x1; ++x) {
        const double qx = x + 0.5 - ax, qy = y + 0.5 - ay;
        const double t = len2 > 0 ? std::clamp((qx * dx + qy * dy) / len2, 0.0, 1.0) : 0.0;
        const double d = std::hypot(qx - t * dx, qy - t * dy);
        blend(x, y, c, std::clamp(r + 0.5 - d, 0.0, 1.0));
      }
    }
  }

  void disk(double cx, double cy, double r, Rgb c) {
    int x0, y0, x1, y1;
    if (!box(cx - r - 1, cy - r - 1, cx + r + 1, cy + r + 1, x0, y0, x1, y1)) return;
    for (int y = y0; y < y1; ++y)
      for (int x = x0; x < x1; ++x)
        blend(x, y, c, std::clamp(r + 0.5 - std::hypot(x + 0.5 - cx, y + 0.5 - cy), 0.0, 1.0));
  }

  // Text with its top-left at (x, y); `scale` blows each font pixel up to scale x scale.
  void text(int x, int y, const std::string& s, Rgb c, int scale = 1) {
    for (size_t i = 0; i < s.size(); ++i) {
      const uint8_t* g = glyph(s[i]);
      const int gx = x + static_cast<int>(i) * kAdvance * scale;
      for (int col = 0; col < kGlyphW; ++col)
        for (int row = 0; row < kGlyphH; ++row)
          if (g[col] >> row & 1) fill(gx + col * scale, y + row * scale, gx + (col + 1) * scale,
                                      y + (row + 1) * scale, c);
    }
  }

  // Text turned 90 degrees counter-clockwise (reads bottom to top, as a y-axis label): the
  // glyph tops face x_left and the first character sits at y_bottom.
  void text_up(int x_left, int y_bottom, const std::string& s, Rgb c) {
    for (size_t i = 0; i < s.size(); ++i) {
      const uint8_t* g = glyph(s[i]);
      const int gy = y_bottom - static_cast<int>(i) * kAdvance;
      for (int col = 0; col < kGlyphW; ++col)
        for (int row = 0; row < kGlyphH; ++row)
          if (g[col] >> row & 1) put(x_left + row, gy - col, c);
    }
  }
};

// ------------------------------------------------------------------------------------------------
// Axes and ticks
// ------------------------------------------------------------------------------------------------

struct Axis {
  double lo = 0, hi = 1;  // axis limits in plotting space (log10 of the value on a log axis)
  bool log = false;
  std::vector<double> major;  // plotting space, with a label each
  std::vector<std::string> labels;
  std::vector<double> minor;  // plotting space, grid only
};

// The 1-2-5 step nearest to `raw`.
double nice_step(double raw) {
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  const double r = raw / mag;
  return (r < 1.5 ? 1 : r < 3 ? 2 : r < 7 ? 5 : 10) * mag;
}

// Shortest readable label for a tick at v on a grid of spacing `step`: fixed notation with just
// enough decimals for the step, scientific ("2.5e-5") for very large or small magnitudes.
std::string format_tick(double v, double step) {
  if (!std::isfinite(v)) return "?";
  step = std::fabs(step);
  if (std::fabs(v) < step * 1e-6) v = 0;  // rounding residue of k * step; also avoids "-0"
  const double a = std::fabs(v);
  const int step_exp = static_cast<int>(std::floor(std::log10(step) + 1e-9));
  if (v == 0 && (step_exp < -3 || step_exp >= 5)) return "0";  // neighbours are scientific
  char buf[64];
  if (v != 0 && (a >= 1e5 || a < 1e-3)) {
    const int e = static_cast<int>(std::floor(std::log10(a) + 1e-9));
    std::snprintf(buf, sizeof buf, "%.*e", std::clamp(e - step_exp, 0, 5), v);
    std::string m(buf);
    const size_t epos = m.find('e');
    const int exp = std::atoi(m.c_str() + epos + 1);
    m.resize(epos);
    if (m.find('.') != std::string::npos) {
      while (m.back() == '0') m.pop_back();
      if (m.back() == '.') m.pop_back();
    }
    return m + "e" + std::to_string(exp);
  }
  std::snprintf(buf, sizeof buf, "%.*f", std::clamp(-step_exp, 0, 10), v);
  return buf;
}

void linear_ticks(Axis& ax, int target, bool integer_step) {
  double step = nice_step((ax.hi - ax.lo) / std::max(target, 1));
  if (integer_step) step = std::max(step, 1.0);
  const double first = std::ceil(ax.lo / step - 1e-9), last = std::floor(ax.hi / step + 1e-9);
  for (double k = first; k <= last && ax.major.size() < 64; ++k) {
    ax.major.push_back(k * step);
    ax.labels.push_back(format_tick(k * step, step));
  }
}

void log_ticks(Axis& ax, int target) {
  const int kmin = static_cast<int>(std::ceil(ax.lo - 1e-9));
  const int kmax = static_cast<int>(std::floor(ax.hi + 1e-9));
  const int decades = kmax - kmin + 1;
  auto add_major = [&](double t) {
    const double v = std::pow(10.0, t);
    ax.major.push_back(t);
    ax.labels.push_back(format_tick(v, std::pow(10.0, std::floor(t + 1e-9))));
  };
  auto in_range = [&](double t) { return t >= ax.lo - 1e-9 && t <= ax.hi + 1e-9; };
  if (decades >= 3) {
    // Decade ticks, thinned to every 2nd/3rd/... decade when there are many.
    const int every = std::max(1, (decades + target - 1) / std::max(target, 1));
    for (int k = kmin; k <= kmax; ++k) {
      if (((k % every) + every) % every == 0) add_major(k);
    }
    if (every == 1 && decades <= 8) {
      for (int k = kmin - 1; k <= kmax; ++k)
        for (int m = 2; m <= 9; ++m)
          if (in_range(k + std::log10(m))) ax.minor.push_back(k + std::log10(m));
    }
    return;
  }
  // Under three decades: label 1, 2 and 5 of each decade so the axis still has numbers on it.
  const int lo_k = static_cast<int>(std::floor(ax.lo)), hi_k = static_cast<int>(std::ceil(ax.hi));
  for (int k = lo_k; k <= hi_k; ++k) {
    for (int m = 1; m <= 9; ++m) {
      const double t = k + std::log10(m);
      if (!in_range(t)) continue;
      if (m == 1 || m == 2 || m == 5) add_major(t);
      else ax.minor.push_back(t);
    }
  }
  if (ax.major.size() >= 2) return;
  // A narrow range (well under a decade): plain 1-2-5 steps in value space, placed on the log axis.
  ax.major.clear(), ax.labels.clear(), ax.minor.clear();
  const double vlo = std::pow(10.0, ax.lo), vhi = std::pow(10.0, ax.hi);
  const double step = nice_step((vhi - vlo) / std::max(target, 1));
  for (double k = std::ceil(vlo / step - 1e-9); k * step <= vhi && ax.major.size() < 64; ++k) {
    if (k * step <= 0) continue;
    ax.major.push_back(std::log10(k * step));
    ax.labels.push_back(format_tick(k * step, step));
  }
}

// Widens an empty range [v, v] so a single value or all-equal values sit mid-axis.
void widen_degenerate(double& lo, double& hi, double half_width) {
  if (hi > lo) return;
  lo -= half_width, hi += half_width;
}

// Plotting-space value of a data value; values are clamped so that ranges and pixel positions
// stay finite even for absurd inputs like +-1e308.
double to_plot(double v, bool log) {
  return log ? std::log10(v) : std::clamp(v, -1e300, 1e300);
}

bool valid_point(double x, double y, bool log_y) {
  return std::isfinite(x) && std::isfinite(y) && (!log_y || y > 0);
}

// ------------------------------------------------------------------------------------------------
// Panel rendering
// ------------------------------------------------------------------------------------------------

struct Point {
  double x, y;
};

void check_panels(const std::vector<PlotPanel>& panels, int width, int height) {
  if (width < 64 || width > 8192 || height < 64 || height > 8192) {
    throw Error("line plot: size " + std::to_string(width) + "x" + std::to_string(height) +
                " is outside 64..8192 pixels");
  }
  if (panels.empty() || panels.size() > 4) {
    throw Error("line plot: needs 1 to 4 panels, got " + std::to_string(panels.size()));
  }
  for (const PlotPanel& p : panels)
    for (const PlotSeries& s : p.series)
      if (s.x.size() != s.y.size()) {
        throw Error("line plot: series '" + s.label + "' in panel '" + p.title + "' has " +
                    std::to_string(s.x.size()) + " x values but " + std::to_string(s.y.size()) +
                    " y values");
      }
}

void draw_panel(Canvas& cv, const PlotPanel& panel, int px0, int px1) {
  const int pad = 8, tick_len = 4;
  const int pw = px1 - px0;

  // Title: 2x when it fits, else 1x, else truncated.
  int title_scale = 2;
  if (text_width(panel.title, 2) > pw - 2 * pad) title_scale = 1;
  const std::string title = fit_text(panel.title, pw - 2 * pad, title_scale);
  const int title_h = title.empty() ? 0 : kCapH * title_scale + 10;

  // Data ranges over the points that will actually be drawn.
  bool any = false, integer_x = true;
  double xmin = 0, xmax = 0, ymin = 0, ymax = 0;
  for (const PlotSeries& s : panel.series) {
    for (size_t i = 0; i < s.x.size(); ++i) {
      if (!valid_point(s.x[i], s.y[i], panel.log_y)) continue;
      const double x = to_plot(s.x[i], false), y = to_plot(s.y[i], panel.log_y);
      if (!any) xmin = xmax = x, ymin = ymax = y, any = true;
      xmin = std::min(xmin, x), xmax = std::max(xmax, x);
      ymin = std::min(ymin, y), ymax = std::max(ymax, y);
      integer_x = integer_x && x == std::round(x);
    }
  }
  Axis ax, ay;
  ay.log = panel.log_y;
  if (any) {
    // Integer x (loop indices) widens by a whole step so a lone point gets neighbours 0 and 2.
    widen_degenerate(xmin, xmax, integer_x ? 1.0 : (xmin == 0 ? 1.0 : std::fabs(xmin) * 0.1));
    widen_degenerate(ymin, ymax, ay.log ? 0.5 : (ymin == 0 ? 1.0 : std::fabs(ymin) * 0.1));
    // 5% margin so markers at the extremes stay clear of the frame.
    const double mx = (xmax - xmin) * 0.05, my = (ymax - ymin) * 0.05;
    ax.lo = xmin - mx, ax.hi = xmax + mx, ay.lo = ymin - my, ay.hi = ymax + my;
  } else {
    integer_x = false;
    ay.lo = 0, ay.hi = 1;  // also 1..10 on a log axis
  }

  // Vertical layout, then y ticks (they depend only on the frame height), then the left margin.
  const int top = pad + title_h;
  const int bottom_margin = tick_len + 4 + kGlyphH + (panel.x_label.empty() ? 0 : 8 + kGlyphH) + pad;
  const int ft = top, fb = cv.h - 1 - bottom_margin;
  if (fb - ft < 16) {
    cv.text(px0 + (pw - text_width(title, title_scale)) / 2, pad, title, kText, title_scale);
    return;  // too small for a plot; the title alone is all that fits
  }
  if (ay.log) log_ticks(ay, std::max(2, (fb - ft) / 40));
  else linear_ticks(ay, std::max(2, (fb - ft) / 50), false);
  int ytick_w = 0;
  for (const std::string& l : ay.labels) ytick_w = std::max(ytick_w, text_width(l, 1));
  const int ylabel_w = panel.y_label.empty() ? 0 : kGlyphH + 8;
  const int fl = px0 + pad + ylabel_w + ytick_w + tick_len + 4;
  const int fr = px1 - 1 - 2 * pad;
  if (fr - fl < 16) {
    cv.text(px0 + (pw - text_width(title, title_scale)) / 2, pad, title, kText, title_scale);
    return;
  }

  // x ticks: fewer while the labels would crowd each other.
  for (int target = std::max(2, (fr - fl) / 80); target >= 2; --target) {
    ax.major.clear(), ax.labels.clear();
    linear_ticks(ax, target, integer_x);
    int widest = 0;
    for (const std::string& l : ax.labels) widest = std::max(widest, text_width(l, 1));
    if (static_cast<int>(ax.major.size()) * (widest + 12) <= fr - fl) break;
  }

  // Plotting space -> pixel coordinates (pixel centers of the frame lines are at fl + 0.5 ...).
  auto sx = [&](double x) { return fl + 0.5 + (x - ax.lo) / (ax.hi - ax.lo) * (fr - fl); };
  auto sy = [&](double y) { return fb + 0.5 - (y - ay.lo) / (ay.hi - ay.lo) * (fb - ft); };
  auto pix = [](double v) { return static_cast<int>(std::floor(v)); };

  // Grid inside the frame.
  cv.clip(fl + 1, ft + 1, fr, fb);
  for (double t : ay.minor) cv.hline(fl, fr, pix(sy(t)), kMinorGrid);
  for (double t : ay.major) cv.hline(fl, fr, pix(sy(t)), kGrid);
  for (double t : ax.major) cv.vline(pix(sx(t)), ft, fb, kGrid);

  // Series: lines first, then markers on top; a skipped point breaks the line.
  size_t max_points = 0;
  for (const PlotSeries& s : panel.series) max_points = std::max(max_points, s.x.size());
  const double marker_r = max_points * 10 > static_cast<size_t>(fr - fl) ? 2.0 : 3.0;
  std::vector<Point> occupied;  // pixel samples of the drawn data, for legend placement
  for (size_t si = 0; si < panel.series.size(); ++si) {
    const PlotSeries& s = panel.series[si];
    const Rgb color = series_color(si);
    std::vector<Point> pts;  // NaN marks a break
    for (size_t i = 0; i < s.x.size(); ++i) {
      if (valid_point(s.x[i], s.y[i], panel.log_y)) {
        pts.push_back({sx(to_plot(s.x[i], false)), sy(to_plot(s.y[i], panel.log_y))});
      } else {
        pts.push_back({NAN, NAN});
      }
    }
    for (size_t i = 1; i < pts.size(); ++i) {
      const Point a = pts[i - 1], b = pts[i];
      if (std::isnan(a.x) || std::isnan(b.x)) continue;
      cv.segment(a.x, a.y, b.x, b.y, 2.0, color);
      const double len = std::hypot(b.x - a.x, b.y - a.y);
      const int steps = static_cast<int>(std::min(len / 3.0, 4096.0));
      for (int k = 1; k < steps; ++k) {
        const double t = static_cast<double>(k) / steps;
        occupied.push_back({a.x + (b.x - a.x) * t, a.y + (b.y - a.y) * t});
      }
    }
    for (const Point& p : pts) {
      if (std::isnan(p.x)) continue;
      cv.disk(p.x, p.y, marker_r, color);
      occupied.push_back(p);
    }
  }

  // Frame, ticks and tick labels; a label that would overlap the previous one is dropped.
  cv.unclip();
  cv.outline(fl, ft, fr, fb, kFrame);
  int last_right = std::numeric_limits<int>::min();
  for (size_t i = 0; i < ax.major.size(); ++i) {
    const int x = pix(sx(ax.major[i]));
    cv.vline(x, fb + 1, fb + tick_len, kFrame);
    const int lw = text_width(ax.labels[i], 1), lx = x - lw / 2;
    if (lx < last_right + 6) continue;
    cv.text(lx, fb + tick_len + 4, ax.labels[i], kText);
    last_right = lx + lw;
  }
  int last_top = std::numeric_limits<int>::max();
  for (size_t i = 0; i < ay.major.size(); ++i) {  // ascending values: bottom to top
    const int y = pix(sy(ay.major[i]));
    cv.hline(fl - tick_len, fl - 1, y, kFrame);
    const int ly = y - kCapH / 2;
    if (ly + kCapH + 5 > last_top) continue;
    cv.text(fl - tick_len - 4 - text_width(ay.labels[i], 1), ly, ay.labels[i], kText);
    last_top = ly;
  }

  // Title and axis labels, centred on the frame.
  const int fcx = (fl + fr) / 2;
  cv.text(std::max(px0 + pad, fcx - text_width(title, title_scale) / 2), pad, title, kText,
          title_scale);
  if (!panel.x_label.empty()) {
    const std::string xl = fit_text(panel.x_label, fr - fl, 1);
    cv.text(fcx - text_width(xl, 1) / 2, fb + tick_len + 4 + kGlyphH + 8, xl, kText);
  }
  if (!panel.y_label.empty()) {
    const std::string yl = fit_text(panel.y_label, fb - ft, 1);
    cv.text_up(px0 + pad, (ft + fb) / 2 + text_width(yl, 1) / 2, yl, kText);
  }
  if (!any) {
    const std::string msg = "no data";
    cv.text(fcx - text_width(msg, 1) / 2, (ft + fb) / 2 - kCapH / 2, msg, kFrame);
  }

  // Legend: a box in whichever frame corner covers the fewest data samples.
  std::vector<size_t> entries;
  for (size_t si = 0; si < panel.series.size(); ++si)
    if (!panel.series[si].label.empty()) entries.push_back(si);
  const int swatch = 22, row_h = 12, inset = 6;
  // In a frame too short for every entry, keep those that fit rather than cover the whole plot.
  const size_t max_rows = static_cast<size_t>(std::max(0, (fb - ft - 2 * inset - 8) / row_h));
  if (entries.size() > max_rows) entries.resize(max_rows);
  if (entries.empty()) return;
  const int max_label_px = std::max(6, (fr - fl) - 2 * inset - swatch - 16);
  int label_w = 0;
  for (size_t si : entries)
    label_w = std::max(label_w, text_width(fit_text(panel.series[si].label, max_label_px, 1), 1));
  const int lw = 6 + swatch + 6 + label_w + 7;
  const int lh = 5 + static_cast<int>(entries.size()) * row_h + 3;
  const int left = fl + inset + 1, right = fr - inset - lw;
  const int upper = ft + inset + 1, lower = fb - inset - lh;
  const std::array<std::array<int, 2>, 4> corners = {
      {{right, upper}, {left, upper}, {right, lower}, {left, lower}}};  // preference order
  size_t best = 0, best_hits = std::numeric_limits<size_t>::max();
  for (size_t c = 0; c < corners.size(); ++c) {
    const int bx = corners[c][0], by = corners[c][1];
    size_t hits = 0;
    for (const Point& p : occupied)
      hits += p.x >= bx - 4 && p.x <= bx + lw + 4 && p.y >= by - 4 && p.y <= by + lh + 4;
    if (hits < best_hits) best = c, best_hits = hits;
  }
  const int bx = std::max(corners[best][0], fl + 1), by = std::max(corners[best][1], ft + 1);
  cv.clip(fl + 1, ft + 1, fr, fb);
  cv.fill(bx, by, bx + lw, by + lh, kWhite);
  cv.outline(bx, by, bx + lw - 1, by + lh - 1, kLegendBorder);
  for (size_t e = 0; e < entries.size(); ++e) {
    const Rgb color = series_color(entries[e]);
    const int cy = by + 5 + static_cast<int>(e) * row_h + kCapH / 2;
    cv.segment(bx + 6, cy + 0.5, bx + 6 + swatch, cy + 0.5, 2.0, color);
    cv.disk(bx + 6 + swatch / 2.0, cy + 0.5, 3.0, color);
    cv.text(bx + 6 + swatch + 6, cy - kCapH / 2,
            fit_text(panel.series[entries[e]].label, max_label_px, 1), kText);
  }
  cv.unclip();
}

}  // namespace

uint32_t crc32(const void* data, size_t n, uint32_t crc) {
  const auto& table = crc_table();
  const auto* p = static_cast<const uint8_t*>(data);
  uint32_t c = crc ^ 0xFFFFFFFFu;
  for (size_t i = 0; i < n; ++i) c = table[(c ^ p[i]) & 0xFFu] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

uint32_t adler32(const void* data, size_t n, uint32_t adler) {
  constexpr uint32_t kMod = 65521;
  constexpr size_t kNMax = 5552;  // most bytes before the 32-bit sums could overflow
  const auto* p = static_cast<const uint8_t*>(data);
  uint32_t a = adler & 0xFFFFu, b = adler >> 16;
  while (n > 0) {
    const size_t chunk = std::min(n, kNMax);
    for (size_t i = 0; i < chunk; ++i) a += p[i], b += a;
    a %= kMod, b %= kMod;
    p += chunk, n -= chunk;
  }
  return (b << 16) | a;
}

Rgb series_color(size_t index) {
  // Matplotlib's tab10 minus grey and olive, which read poorly on white next to the grid.
  static const Rgb kPalette[8] = {{31, 119, 180}, {255, 127, 14}, {44, 160, 44},  {214, 39, 40},
                                  {148, 103, 189}, {140, 86, 75}, {227, 119, 194}, {23, 190, 207}};
  return kPalette[index % 8];
}

std::string encode_png_rgb(int width, int height, const std::vector<uint8_t>& rgb) {
  if (width <= 0 || height <= 0) {
    throw Error("png: image size " + std::to_string(width) + "x" + std::to_string(height) +
                " is not positive");
  }
  const uint64_t row = 1 + 3 * static_cast<uint64_t>(width);
  const uint64_t raw_size = row * static_cast<uint64_t>(height);
  // A chunk length must fit in 31 bits; leave room for the zlib framing.
  if (raw_size + raw_size / kStoredBlockMax * 5 + 64 > 0x7FFFFFFFull) {
    throw Error("png: image " + std::to_string(width) + "x" + std::to_string(height) +
                " is too large");
  }
  if (rgb.size() != static_cast<uint64_t>(width) * height * 3) {
    throw Error("png: expected " + std::to_string(static_cast<uint64_t>(width) * height * 3) +
                " bytes of RGB pixels, got " + std::to_string(rgb.size()));
  }
  std::string raw;
  raw.reserve(raw_size);
  const size_t stride = static_cast<size_t>(width) * 3;
  for (int y = 0; y < height; ++y) {
    raw.push_back('\0');  // filter type 0 (None)
    raw.append(reinterpret_cast<const char*>(rgb.data()) + static_cast<size_t>(y) * stride, stride);
  }

  std::string png("\x89PNG\r\n\x1a\n", 8);
  std::string ihdr;
  put_u32_be(ihdr, static_cast<uint32_t>(width));
  put_u32_be(ihdr, static_cast<uint32_t>(height));
  ihdr += std::string("\x08\x02\x00\x00\x00", 5);  // 8-bit, RGB, deflate, adaptive filter, no interlace
  put_chunk(png, "IHDR", ihdr);
  put_chunk(png, "IDAT", zlib_stored(raw));
  put_chunk(png, "IEND", std::string());
  return png;
}

std::vector<uint8_t> render_line_plot_rgb(const std::vector<PlotPanel>& panels, int width,
                                          int height) {
  check_panels(panels, width, height);
  Canvas cv(width, height);
  const int n = static_cast<int>(panels.size());
  for (int i = 0; i < n; ++i) {
    const int x0 = width * i / n, x1 = width * (i + 1) / n;
    cv.unclip();
    draw_panel(cv, panels[static_cast<size_t>(i)], x0, x1);
  }
  return std::move(cv.px);
}

void write_line_plot_png(const std::string& path, const std::vector<PlotPanel>& panels, int width,
                         int height) {
  std::string png;
  try {
    png = encode_png_rgb(width, height, render_line_plot_rgb(panels, width, height));
  } catch (const Error& e) {
    throw Error(path + ": " + e.what());
  }
  io::write_file_atomic(path, png);  // temp file, fsync, rename
}

}  // namespace loopq::io
