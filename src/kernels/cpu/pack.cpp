// Repacking from the project's file layout (and from logical codes) into the kernel layout of
// format.h. Runs once at load time, so it is plain scalar code.
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>

#include "kernels/cpu/kernels.h"
#include "util/error.h"

namespace loopq::kernels {

void AlignedBytes::Free::operator()(void* p) const { std::free(p); }

AlignedBytes AlignedBytes::make(size_t bytes) {
  AlignedBytes b;
  const size_t rounded = (bytes + 63) / 64 * 64;
  void* p = rounded ? std::aligned_alloc(64, rounded) : nullptr;
  if (rounded && !p) throw Error("kernels: out of memory packing " + std::to_string(bytes) + " bytes");
  if (p) std::memset(p, 0, rounded);
  b.ptr.reset(static_cast<uint8_t*>(p));
  b.size = bytes;
  return b;
}

int64_t PackedWeight::bytes() const {
  return int64_t(codes.size) + int64_t(scales.size() * sizeof(float)) + int64_t(zeros.size());
}

namespace {

void check_shape(int bits, int64_t out, int64_t in, int64_t group_size) {
  const std::string what = "kernels: weight [" + std::to_string(out) + ", " + std::to_string(in) + "] ";
  if (bits != 4 && bits != 8) throw Error(what + "has " + std::to_string(bits) + " bits; kernels take 4 or 8");
  if (out < 1 || in < 1) throw Error(what + "is empty");
  if (bits == 4 && in % 2 != 0) throw Error(what + "int4 needs an even input size (two codes per byte)");
  if (group_size < 0) throw Error(what + "negative group size");
  if (group_size > 0) {
    if (in % group_size != 0)
      throw Error(what + "group size " + std::to_string(group_size) + " does not divide " + std::to_string(in));
    const int64_t chunk = bits == 4 ? 8 : 4;
    if (group_size % chunk != 0)
      throw Error(what + "group size " + std::to_string(group_size) + " must be a multiple of " +
                  std::to_string(chunk) + " for int" + std::to_string(bits));
  }
}

int32_t code_min(int bits, bool sym) { return sym ? -(1 << (bits - 1)) : 0; }
int32_t code_max(int bits, bool sym) { return sym ? (1 << (bits - 1)) - 1 : (1 << bits) - 1; }

}  // namespace

PackedWeight pack(const LogicalWeight& w) {
  check_shape(w.bits, w.out, w.in, w.group_size);
  const int64_t groups = w.groups();
  if (int64_t(w.code.size()) != w.out * w.in || int64_t(w.scale.size()) != w.out * groups ||
      (!w.symmetric && int64_t(w.zero.size()) != w.out * groups))
    throw Error("kernels: logical weight buffers do not match its shape");
  PackedWeight p;
  p.bits = w.bits;
  p.symmetric = w.symmetric;
  p.out = w.out;
  p.in = w.in;
  const int64_t chunk = p.chunk_cols();
  p.in_pad = (w.in + chunk - 1) / chunk * chunk;
  p.group = w.group_size > 0 ? w.group_size : p.in_pad;
  p.groups = p.in_pad / p.group;
  p.tiles = (w.out + kTileRows - 1) / kTileRows;
  p.codes = AlignedBytes::make(size_t(p.tiles * p.tile_bytes()));
  p.scales.assign(size_t(p.tiles * p.groups * kTileRows), 0.0f);
  if (!w.symmetric) p.zeros.assign(size_t(p.tiles * p.groups * kTileRows), 0);
  const int32_t lo = code_min(w.bits, w.symmetric), hi = code_max(w.bits, w.symmetric);
  const int32_t offset = w.symmetric ? p.sym_zero() : 0;
  for (int64_t o = 0; o < w.out; ++o) {
    const int64_t t = o / kTileRows, r = o % kTileRows;
    uint8_t* base = p.codes.data() + t * p.tile_bytes();
    for (int64_t k = 0; k < w.in; ++k) {
      const int32_t c = w.code[o * w.in + k];
      if (c < lo || c > hi)
        throw Error("kernels: code " + std::to_string(c) + " outside the int" + std::to_string(w.bits) +
                    (w.symmetric ? " symmetric" : " asymmetric") + " grid at [" + std::to_string(o) +
                    ", " + std::to_string(k) + "]");
      const uint32_t u = uint32_t(c + offset);
      const int64_t ch = k / chunk, j = k % chunk;
      if (w.bits == 8) {
        base[ch * 64 + 4 * r + j] = uint8_t(u);
      } else {
        uint8_t& b = base[ch * 64 + 4 * r + (j & 3)];
        b = uint8_t(j < 4 ? (b & 0xF0) | u : (b & 0x0F) | (u << 4));
      }
    }
    // Padded columns [in, in_pad) keep code u = 0; their activations are zero.
    for (int64_t g = 0; g < w.groups(); ++g) {
      const size_t dst = size_t((t * p.groups + g) * kTileRows + r);
      p.scales[dst] = w.scale[o * groups + g];
      if (!w.symmetric) {
        const int32_t z = w.zero[o * groups + g];
        if (z < 0 || z > hi) throw Error("kernels: zero point " + std::to_string(z) + " outside the grid");
        p.zeros[dst] = uint8_t(z);
      }
    }
  }
  return p;
}

LogicalWeight unpack_file(const FileWeight& f) {
  check_shape(f.bits, f.out, f.in, f.group_size);
  if (!f.codes || !f.scales || (!f.symmetric && !f.zeros))
    throw Error("kernels: file weight has null codes, scales or (asymmetric) zeros");
  LogicalWeight w;
  w.bits = f.bits;
  w.symmetric = f.symmetric;
  w.out = f.out;
  w.in = f.in;
  w.group_size = f.group_size;
  w.code.resize(size_t(f.out * f.in));
  for (int64_t o = 0; o < f.out; ++o)
    for (int64_t k = 0; k < f.in; ++k) {
      // Stored codes are two's complement for both grids; asymmetric codes are stored shifted
      // by -2^(b-1) into the signed range (quant/quantized_io.cpp code_offset).
      int32_t c;
      if (f.bits == 8) {
        c = int32_t(int8_t(f.codes[o * f.in + k]));
      } else {
        const uint8_t b = f.codes[o * (f.in / 2) + k / 2];
        const int32_t nib = (k % 2 == 0) ? (b & 0xF) : (b >> 4);
        c = nib >= 8 ? nib - 16 : nib;
      }
      w.code[size_t(o * f.in + k)] = f.symmetric ? c : c + (1 << (f.bits - 1));
    }
  const int64_t n = f.out * w.groups();
  w.scale.assign(f.scales, f.scales + n);
  w.zero.assign(size_t(n), 0);
  if (!f.symmetric)
    for (int64_t i = 0; i < n; ++i) {
      const float z = f.zeros[i];
      if (z != std::nearbyint(z)) throw Error("kernels: zero point " + std::to_string(z) + " is not an integer");
      w.zero[size_t(i)] = int32_t(z);
    }
  return w;
}

PackedWeight repack(const FileWeight& f) { return pack(unpack_file(f)); }

LogicalWeight unpack(const PackedWeight& p) {
  LogicalWeight w;
  w.bits = p.bits;
  w.symmetric = p.symmetric;
  w.out = p.out;
  w.in = p.in;
  w.group_size = p.group == p.in_pad ? 0 : p.group;
  const int64_t groups = w.groups(), chunk = p.chunk_cols();
  const int32_t offset = p.symmetric ? p.sym_zero() : 0;
  w.code.resize(size_t(p.out * p.in));
  w.scale.resize(size_t(p.out * groups));
  w.zero.assign(size_t(p.out * groups), 0);
  for (int64_t o = 0; o < p.out; ++o) {
    const int64_t t = o / kTileRows, r = o % kTileRows;
    const uint8_t* base = p.tile(t);
    for (int64_t k = 0; k < p.in; ++k) {
      const int64_t ch = k / chunk, j = k % chunk;
      const uint8_t b = p.bits == 8 ? base[ch * 64 + 4 * r + j] : base[ch * 64 + 4 * r + (j & 3)];
      const int32_t u = p.bits == 8 ? b : (j < 4 ? b & 0xF : b >> 4);
      w.code[size_t(o * p.in + k)] = u - offset;
    }
    for (int64_t g = 0; g < groups; ++g) {
      const size_t src = size_t((t * p.groups + g) * kTileRows + r);
      w.scale[size_t(o * groups + g)] = p.scales[src];
      if (!p.symmetric) w.zero[size_t(o * groups + g)] = p.zeros[src];
    }
  }
  return w;
}

std::vector<uint8_t> file_codes(const LogicalWeight& w) {
  check_shape(w.bits, w.out, w.in, w.group_size);
  std::vector<uint8_t> bytes(size_t(w.bits == 4 ? w.out * w.in / 2 : w.out * w.in), 0);
  for (int64_t o = 0; o < w.out; ++o)
    for (int64_t k = 0; k < w.in; ++k) {
      const uint8_t v = uint8_t(w.code[size_t(o * w.in + k)] - (w.symmetric ? 0 : 1 << (w.bits - 1)));
      if (w.bits == 8) bytes[size_t(o * w.in + k)] = v;
      else bytes[size_t(o * w.in / 2 + k / 2)] |= uint8_t((v & 0xF) << (k % 2 ? 4 : 0));
    }
  return bytes;
}

}  // namespace loopq::kernels
