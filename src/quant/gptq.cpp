// GPTQ (quantization-reference.md §3.3), step numbers below follow that section.
#include "quant/gptq.h"

#include <algorithm>
#include <string>
#include <vector>

#include "util/error.h"

namespace loopq::quant {
namespace {

[[noreturn]] void fail(const std::string& msg) { throw Error("GPTQ: " + msg); }

void validate(const at::Tensor& w, const at::Tensor& h, const GptqOptions& o) {
  if (w.dim() != 2) fail("weight must be 2-D [out, in], got " + std::to_string(w.dim()) + "-D");
  if (!w.is_floating_point() || !h.is_floating_point()) fail("weight and Hessian must be floating point");
  const int64_t in = w.size(1);
  if (h.dim() != 2 || h.size(0) != h.size(1)) fail("Hessian must be a square [in, in] matrix");
  if (h.size(0) != in)
    fail("Hessian is " + std::to_string(h.size(0)) + "x" + std::to_string(h.size(1)) + " but the weight has " +
         std::to_string(in) + " input columns");
  if (o.group_size < 0 || (o.group_size > 0 && in % o.group_size != 0))
    fail("group size " + std::to_string(o.group_size) + " does not divide " + std::to_string(in) + " input columns");
  if (o.block_size <= 0) fail("block size must be positive, got " + std::to_string(o.block_size));
  if (!(o.percdamp >= 0)) fail("percdamp must be >= 0, got " + std::to_string(o.percdamp));
  // Runtime groups would follow permuted columns, which no per-(row, group) layout can store.
  if (o.act_order && o.group_size > 0 && !o.static_groups)
    fail("act_order with group_size > 0 requires static_groups");
  if (!at::isfinite(h).all().item<bool>()) fail("Hessian has non-finite entries");
}

at::Tensor checked_cholesky(const at::Tensor& a, bool upper) {
  auto [factor, info] = at::linalg_cholesky_ex(a, upper);
  if (info.item<int64_t>() != 0) fail("Hessian not positive definite after damping; raise --percdamp");
  return factor;
}

}  // namespace

GptqResult gptq_quantize(const at::Tensor& weight, const at::Tensor& hessian, const GptqOptions& o) {
  validate(weight, hessian, o);
  const int64_t rows = weight.size(0), cols = weight.size(1);
  const int64_t gs = o.group_size, groups = gs > 0 ? cols / gs : 1;
  at::Tensor W = weight.to(at::kFloat).clone();  // clone: to() returns the input itself for fp32
  at::Tensor H = hessian.to(weight.device(), at::kDouble).clone();

  // 2. Inputs never seen in calibration: the column cannot matter, so zero it and keep H invertible.
  const at::Tensor dead = H.diagonal() == 0;
  H.diagonal().masked_fill_(dead, 1.0);
  W.masked_fill_(dead.unsqueeze(0), 0.0);

  // Per-row params once from the full weight before the loop (as QuaRot's find_params, but after
  // zeroing dead columns so their values cannot widen the grid), or static per-group params in
  // original column order; runtime groups are filled in as they start (7).
  QParams P;
  if (gs == 0 || o.static_groups) {
    P = weight_params(W, o.grid, gs, o.mse_search);
  } else {
    P.scale = at::zeros({rows, groups, 1}, W.options());
    P.zero = at::zeros_like(P.scale);
  }

  // 3. Act-order: most-activated inputs first, while most columns are still free to absorb error.
  // A stable sort keeps ties (e.g. a uniform diagonal) in original order.
  const at::Tensor perm = o.act_order ? at::argsort(H.diagonal(), /*stable=*/true, 0, /*descending=*/true)
                                      : at::arange(cols, H.options().dtype(at::kLong));
  W = W.index_select(1, perm);
  H = H.index_select(0, perm).index_select(1, perm);

  // 4./5. Damp, then U = upper Cholesky factor of H^-1: row i of U gives the optimal update of the
  // later columns when column i is fixed, and U_ii^2 is the matching diagonal of the inverse.
  H.diagonal().add_(o.percdamp * H.diagonal().mean().item<double>());
  const at::Tensor U = checked_cholesky(at::cholesky_inverse(checked_cholesky(H, false)), true).to(at::kFloat);

  const at::Tensor perm_cpu = perm.cpu(), diag_cpu = U.diagonal().to(at::kDouble).cpu().contiguous();
  const int64_t* order = perm_cpu.data_ptr<int64_t>();
  const double* u_diag = diag_cpu.data_ptr<double>();
  at::Tensor codes = at::empty_like(W);  // permuted order until the end
  double loss = 0;

  // 6. Blocked lazy updates: errors are applied inside the block column by column and to the
  // columns after the block once per block (one matmul instead of `block_size` rank-1 updates).
  for (int64_t i1 = 0; i1 < cols; i1 += o.block_size) {
    const int64_t i2 = std::min(i1 + o.block_size, cols);
    at::Tensor W1 = W.slice(1, i1, i2).clone();
    at::Tensor Err1 = at::zeros_like(W1);
    for (int64_t c = i1; c < i2; ++c) {
      const int64_t i = c - i1;
      int64_t g = 0;
      if (gs > 0 && o.static_groups) {
        g = order[c] / gs;
      } else if (gs > 0) {
        g = c / gs;  // no act_order here, so permuted == original columns
        if (c % gs == 0) {
          // As the reference: find_params on W, whose columns in this block are as of the block start.
          QParams p = weight_params(W.slice(1, c, c + gs), o.grid, 0, o.mse_search);
          P.scale.select(1, g).copy_(p.scale.view({rows, 1}));
          P.zero.select(1, g).copy_(p.zero.view({rows, 1}));
        }
      }
      const QParams p{P.scale.select(1, g), P.zero.select(1, g)};  // [rows, 1]
      const at::Tensor w = W1.slice(1, i, i + 1);                   // [rows, 1], view into W1
      const at::Tensor code = quantize_codes(w, p, o.grid);
      const at::Tensor err = (w - dequantize(code, p)) / u_diag[c];
      loss += err.square().sum().item<double>() / 2;  // (w - q)^2 / d^2 / 2
      codes.select(1, c).copy_(code.squeeze(1));
      W1.slice(1, i).sub_(err.matmul(U.slice(0, c, c + 1).slice(1, c, i2)));
      Err1.select(1, i).copy_(err.squeeze(1));
    }
    if (i2 < cols) W.slice(1, i2).sub_(Err1.matmul(U.slice(0, i1, i2).slice(1, i2)));
  }

  GptqResult r;
  r.codes = codes.index_select(1, at::argsort(perm));
  r.params = P;
  r.dequantized = dequantize(r.codes.view({rows, groups, cols / groups}), P).view({rows, cols});
  r.hessian_error = loss;
  return r;
}

}  // namespace loopq::quant
