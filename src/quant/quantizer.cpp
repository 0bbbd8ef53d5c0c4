#include "quant/quantizer.h"

#include "util/error.h"

namespace loopq::quant {
namespace {

void check_grid(const Grid& g) {
  if (g.bits < 2 || g.bits > 8) throw Error("quantizer: bits must be in [2, 8], got " + std::to_string(g.bits));
}

// View x as [rows, groups, g] (group_size > 0) or [rows, 1, cols].
at::Tensor grouped(const at::Tensor& x, int64_t group_size) {
  const int64_t cols = x.size(-1);
  if (group_size <= 0) return x.reshape({-1, 1, cols});
  if (cols % group_size != 0)
    throw Error("quantizer: group size " + std::to_string(group_size) + " does not divide " + std::to_string(cols));
  return x.reshape({-1, cols / group_size, group_size});
}

// Under autograd (learned scales, trajectory optimization) rounding passes gradients straight
// through; otherwise it is plain round-half-to-even, bit for bit.
bool learning(const at::Tensor& t) { return t.requires_grad(); }

}  // namespace

QParams row_params(const at::Tensor& x, const Grid& grid, double clip, bool weight, bool widen) {
  check_grid(grid);
  // Ranges widened to include 0 (§2.2), then scaled by the clip ratio.
  at::Tensor xmin = std::get<0>(x.min(-1, true)), xmax = std::get<0>(x.max(-1, true));
  if (widen) xmin = at::clamp_max(xmin, 0), xmax = at::clamp_min(xmax, 0);
  xmin = xmin * clip, xmax = xmax * clip;
  QParams p;
  if (grid.symmetric) {
    at::Tensor absmax = at::maximum(xmin.abs(), xmax);
    if (weight) absmax = absmax.clamp_min(1e-5);
    else absmax = at::where(absmax == 0, at::full_like(absmax, double(grid.qmax())), absmax);  // scale 1
    p.scale = absmax / double(grid.qmax());
    p.zero = at::zeros_like(p.scale);
  } else {
    at::Tensor range = xmax - xmin;
    if (weight) {
      range = range.clamp_min(1e-5);
    } else {  // all-zero rows: xmin = -1, xmax = +1 (§2.2)
      at::Tensor empty = range == 0;
      xmin = at::where(empty, at::full_like(xmin, -1.0), xmin);
      range = at::where(empty, at::full_like(range, 2.0), range);
    }
    p.scale = range / double(grid.qmax());
    p.zero = at::round(-xmin / p.scale);
  }
  return p;
}

at::Tensor quantize_codes(const at::Tensor& x, const QParams& p, const Grid& grid) {
  const at::Tensor r = x / p.scale;
  return at::clamp((learning(r) ? ste_round(r) : at::round(r)) + p.zero, double(grid.qmin()), double(grid.qmax()));
}

at::Tensor dequantize(const at::Tensor& codes, const QParams& p) { return p.scale * (codes - p.zero); }

at::Tensor fake_quant(const at::Tensor& x, const QParams& p, const Grid& grid) {
  return dequantize(quantize_codes(x, p, grid), p);
}

QParams weight_params(const at::Tensor& w, const Grid& grid, int64_t group_size, bool mse_search) {
  if (w.dim() != 2) throw Error("weight_params: weight must be 2-D");
  const at::Tensor g = grouped(w.to(at::kFloat), group_size);  // [rows, groups, gs]
  QParams best = row_params(g, grid, 1.0, true);
  if (!mse_search) return best;
  at::Tensor best_err = at::full(best.scale.sizes(), INFINITY, best.scale.options());
  for (int i = 0; i < 80; ++i) {
    const double shrink = 1.0 - i / 100.0;
    QParams p = row_params(g, grid, shrink, true);
    at::Tensor err = (fake_quant(g, p, grid) - g).abs().pow(2.4).sum(-1, true);
    at::Tensor better = err < best_err;
    best_err = at::where(better, err, best_err);
    best.scale = at::where(better, p.scale, best.scale);
    best.zero = at::where(better, p.zero, best.zero);
  }
  return best;
}

at::Tensor fake_quant_weight(const at::Tensor& w, const Grid& grid, int64_t group_size, bool mse_search) {
  QParams p = weight_params(w, grid, group_size, mse_search);
  return fake_quant(grouped(w.to(at::kFloat), group_size), p, grid).reshape(w.sizes());
}

ActCodes quantize_activation(const at::Tensor& x, const Grid& grid, double clip, int64_t group_size) {
  if (!(clip > 0 && clip <= 1)) throw Error("activation clip ratio must be in (0, 1]");
  const at::Tensor g = grouped(x, group_size);
  ActCodes a;
  a.params = row_params(g, grid, clip, false, group_size <= 0);
  a.codes = quantize_codes(g, a.params, grid);
  return a;
}

at::Tensor fake_quant_activation(const at::Tensor& x, const Grid& grid, double clip, int64_t group_size) {
  const ActCodes a = quantize_activation(x, grid, clip, group_size);
  return dequantize(a.codes, a.params).reshape(x.sizes());
}

at::Tensor fake_quant_static(const at::Tensor& x, const Grid& grid, const at::Tensor& scale) {
  check_grid(grid);
  if (!grid.symmetric) throw Error("static activation quantization uses a symmetric grid");
  const at::Tensor r = x / scale;
  return at::clamp(learning(r) ? ste_round(r) : at::round(r), double(grid.qmin()), double(grid.qmax())) * scale;
}

at::Tensor ste_round(const at::Tensor& x) { return x + (at::round(x) - x).detach(); }

at::Tensor pack_int4(const at::Tensor& codes) {
  if (codes.dim() != 2 || codes.size(1) % 2 != 0) throw Error("pack_int4: need [rows, even cols]");
  at::Tensor c = codes.to(at::kInt);
  if ((c < -8).any().item<bool>() || (c > 7).any().item<bool>()) throw Error("pack_int4: codes outside [-8, 7]");
  at::Tensor lo = c.slice(1, 0, c.size(1), 2).bitwise_and(0xF);
  at::Tensor hi = c.slice(1, 1, c.size(1), 2).bitwise_and(0xF);
  return (lo.bitwise_or(hi * 16)).to(at::kByte);
}

at::Tensor unpack_int4(const at::Tensor& packed) {
  at::Tensor b = packed.to(at::kInt);
  at::Tensor lo = b.bitwise_and(0xF), hi = at::div(b, 16, "floor").bitwise_and(0xF);
  lo = at::where(lo >= 8, lo - 16, lo);  // sign-extend the nibbles
  hi = at::where(hi >= 8, hi - 16, hi);
  return at::stack({lo, hi}, 2).reshape({packed.size(0), packed.size(1) * 2}).to(at::kChar);
}

}  // namespace loopq::quant
