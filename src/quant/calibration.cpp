#include "quant/calibration.h"

#include <cmath>

#include <ATen/core/grad_mode.h>

#include <random>

#include "util/error.h"

namespace loopq::quant {

InputGroup input_group_of(LinearSite site) {
  switch (site) {
    case LinearSite::Q: case LinearSite::K: case LinearSite::V: return InputGroup::AttnIn;
    case LinearSite::O: return InputGroup::OIn;
    case LinearSite::Gate: case LinearSite::Up: return InputGroup::MlpIn;
    case LinearSite::Down: return InputGroup::DownIn;
    default: throw Error("calibration: lm_head has no input group");
  }
}

const char* input_group_name(InputGroup g) {
  static const char* names[] = {"attn_in", "o_in", "mlp_in", "down_in"};
  return names[int(g)];
}

std::vector<LinearSite> sites_of(InputGroup g) {
  switch (g) {
    case InputGroup::AttnIn: return {LinearSite::Q, LinearSite::K, LinearSite::V};
    case InputGroup::OIn: return {LinearSite::O};
    case InputGroup::MlpIn: return {LinearSite::Gate, LinearSite::Up};
    case InputGroup::DownIn: return {LinearSite::Down};
  }
  return {};
}

void InputStats::add(const at::Tensor& x2d, bool hessian) {
  at::Tensor x = x2d.detach().to(at::kDouble);
  at::Tensor sq = x * x;
  at::Tensor amax = x2d.detach().abs().amax(0).to(at::kFloat);
  if (rows == 0) {
    absmax = amax;
    sum_sq = sq.sum(0);
    sum_4 = (sq * sq).sum(0);
    if (hessian) xtx = at::matmul(x.t(), x);
  } else {
    absmax = at::maximum(absmax, amax);
    sum_sq += sq.sum(0);
    sum_4 += (sq * sq).sum(0);
    if (hessian) xtx += at::matmul(x.t(), x);
  }
  rows += x.size(0);
}

void InputStats::merge(const InputStats& o) {
  if (o.rows == 0) return;
  if (rows == 0) {
    rows = o.rows;
    absmax = o.absmax.clone();
    sum_sq = o.sum_sq.clone();
    sum_4 = o.sum_4.clone();
    if (o.xtx.defined()) xtx = o.xtx.clone();
    return;
  }
  rows += o.rows;
  absmax = at::maximum(absmax, o.absmax);
  sum_sq = sum_sq + o.sum_sq;
  sum_4 = sum_4 + o.sum_4;
  if (o.xtx.defined()) xtx = xtx.defined() ? xtx + o.xtx : o.xtx.clone();
}

at::Tensor InputStats::hessian() const {
  if (!xtx.defined() || rows == 0) throw Error("calibration: no Hessian was collected for this input");
  return xtx * (2.0 / double(rows));
}

at::Tensor InputStats::kurtosis() const {
  at::Tensor m2 = sum_sq / double(rows), m4 = sum_4 / double(rows);
  return m4 / (m2 * m2).clamp_min(1e-30);
}

CalibrationCollector::CalibrationCollector(int64_t num_layers, int64_t loops, CalibrationOptions options)
    : num_layers_(num_layers), loops_(loops), options_(std::move(options)),
      per_loop_(size_t(loops * num_layers * kNumInputGroups)),
      pooled_xtx_(size_t(num_layers * kNumInputGroups)) {}

bool CalibrationCollector::wanted(int64_t layer, InputGroup g) const {
  return options_.only.empty() || options_.only.count({layer, g});
}

void CalibrationCollector::on_linear_input(int loop, int layer, LinearSite site, at::Tensor& x) {
  if (site == LinearSite::LMHead || layer < 0) return;
  const InputGroup g = input_group_of(site);
  // q/k/v and gate/up see the same tensor: record it once, at the group's first linear.
  if (sites_of(g).front() != site || !wanted(layer, g)) return;
  if (loop >= loops_) throw Error("calibration: loop index beyond the collector's loop count");
  const at::Tensor x2d = x.reshape({-1, x.size(-1)});
  per_loop_[size_t((loop * num_layers_ + layer) * kNumInputGroups + int(g))].add(x2d, options_.per_loop_hessian);
  // The pooled Hessian is accumulated directly, so memory stays one Hessian per input unless
  // per-loop Hessians are asked for (T times more: 34 GB for Ouro-1.4B in fp64).
  if (options_.hessian && !options_.per_loop_hessian) {
    at::Tensor xd = x2d.detach().to(at::kDouble);
    if (size_t(loop) < options_.loop_weights.size()) xd = xd * std::sqrt(options_.loop_weights[size_t(loop)]);
    at::Tensor& acc = pooled_xtx_[size_t(layer * kNumInputGroups + int(g))];
    acc = acc.defined() ? acc.addmm_(xd.t(), xd) : at::matmul(xd.t(), xd);
  }
  pooled_ready_ = false;
}

const InputStats& CalibrationCollector::per_loop(int64_t loop, int64_t layer, InputGroup g) const {
  return per_loop_.at(size_t((loop * num_layers_ + layer) * kNumInputGroups + int(g)));
}

const InputStats& CalibrationCollector::pooled(int64_t layer, InputGroup g) const {
  if (!pooled_ready_) {
    pooled_.assign(size_t(num_layers_ * kNumInputGroups), InputStats{});
    for (int64_t t = 0; t < loops_; ++t)
      for (int64_t l = 0; l < num_layers_; ++l)
        for (int gi = 0; gi < kNumInputGroups; ++gi)
          pooled_[size_t(l * kNumInputGroups + gi)].merge(per_loop(t, l, InputGroup(gi)));
    if (!options_.per_loop_hessian)
      for (size_t i = 0; i < pooled_.size(); ++i) pooled_[i].xtx = pooled_xtx_[i];
    pooled_ready_ = true;
  }
  return pooled_.at(size_t(layer * kNumInputGroups + int(g)));
}

at::Tensor calibration_windows(const std::vector<int32_t>& ids, int64_t n, int64_t seqlen, uint64_t seed) {
  if (n <= 0 || seqlen <= 1) throw Error("calibration: need nsamples >= 1 and seqlen >= 2");
  if (int64_t(ids.size()) < seqlen + 1)
    throw Error("calibration text has " + std::to_string(ids.size()) + " tokens, fewer than one window of " +
                std::to_string(seqlen));
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int64_t> pick(0, int64_t(ids.size()) - seqlen);
  at::Tensor out = at::empty({n, seqlen}, at::kLong);
  auto acc = out.accessor<int64_t, 2>();
  for (int64_t i = 0; i < n; ++i) {
    const int64_t s = pick(rng);
    for (int64_t j = 0; j < seqlen; ++j) acc[i][j] = ids[size_t(s + j)];
  }
  return out;
}

void run_calibration(const OuroModel& model, const at::Tensor& windows, int64_t loops,
                     CalibrationCollector& collector, int64_t batch_size,
                     const std::function<void(int64_t, int64_t)>& progress) {
  at::NoGradGuard no_grad;
  ForwardOptions fo;
  fo.loops = loops;
  fo.compute_logits = false;
  fo.hooks = &collector;
  const int64_t n = windows.size(0);
  for (int64_t i = 0; i < n; i += batch_size) {
    const int64_t b = std::min(batch_size, n - i);
    model.forward(windows.narrow(0, i, b), fo);
    if (progress) progress(i + b, n);
  }
}

}  // namespace loopq::quant
