#pragma once
// Dependency-free line plots written as PNG, for `loopq diagnose` (per-loop error curves of
// several models overlaid). No zlib/libpng: the PNG holds stored (uncompressed) deflate blocks,
// which every decoder accepts; plots are small enough that the missing compression is harmless.
//
// Rendering: white background; per panel a frame with light grid lines at "nice" ticks (1-2-5
// steps, decades on a log axis), tick labels, a title, axis labels, 2 px anti-aliased lines with
// a filled circle at each point, one palette color per series and a legend placed in the frame
// corner that hides the fewest data. Text uses an embedded 5x7 bitmap font (ASCII 32..126).
//
// Data handling: a point whose x or y is NaN/Inf (or y <= 0 on a log axis) is skipped and breaks
// the line there; empty series, a single point and all-equal values are drawn without fuss.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace loopq::io {

struct PlotSeries {
  std::string label;        // legend text; series with an empty label are left out of the legend
  std::vector<double> x, y;  // must have the same length
};

struct PlotPanel {
  std::string title, x_label, y_label;
  bool log_y = false;
  std::vector<PlotSeries> series;  // series i gets series_color(i) in every panel
};

struct Rgb {
  uint8_t r = 0, g = 0, b = 0;
};

// Fixed 8-color palette, cycled: index i and i + 8 share a color.
Rgb series_color(size_t index);

// Renders 1..4 panels side by side into row-major RGB pixels (3 bytes each, width * height * 3).
// Throws loopq::Error for width/height outside [64, 8192], no panels or more than 4, or a series
// whose x and y lengths differ.
std::vector<uint8_t> render_line_plot_rgb(const std::vector<PlotPanel>& panels, int width = 1200,
                                          int height = 420);

// render_line_plot_rgb + encode_png_rgb, written atomically (io::write_file_atomic); throws
// loopq::Error naming the path.
void write_line_plot_png(const std::string& path, const std::vector<PlotPanel>& panels,
                         int width = 1200, int height = 420);

// Encodes raw RGB pixels (row-major, 3 bytes per pixel) as a PNG byte string: 8-bit RGB, filter 0
// on every row, one IDAT chunk holding a zlib stream of stored blocks. Throws loopq::Error when
// the size is not positive, the pixel count does not match or the image would exceed 2 GiB.
std::string encode_png_rgb(int width, int height, const std::vector<uint8_t>& rgb);

// Checksums used by PNG, exposed for tests. crc32 is the PNG/zlib CRC (reflected 0xEDB88320,
// init and final xor 0xFFFFFFFF); pass a previous result as `crc` to continue a running CRC.
uint32_t crc32(const void* data, size_t n, uint32_t crc = 0);
uint32_t adler32(const void* data, size_t n, uint32_t adler = 1);

}  // namespace loopq::io
