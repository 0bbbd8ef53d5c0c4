#include "train/adamw.h"

#include <ATen/core/grad_mode.h>

#include <cmath>
#include <map>

#include "util/error.h"

namespace loopq::train {

AdamW::AdamW(std::vector<std::pair<std::string, at::Tensor>> params, AdamWOptions options)
    : params_(std::move(params)), opt_(options) {
  for (const auto& [name, p] : params_) {
    exp_avg_.push_back(at::zeros_like(p));
    exp_avg_sq_.push_back(at::zeros_like(p));
  }
}

void AdamW::zero_grad() {
  for (auto& [name, p] : params_)
    if (p.grad().defined()) p.mutable_grad().zero_();
}

double AdamW::clip_grad_norm(double max_norm) {
  at::NoGradGuard no_grad;
  at::Tensor total = at::zeros({}, params_.front().second.options());
  for (const auto& [name, p] : params_)
    if (p.grad().defined()) total = total + p.grad().pow(2).sum();
  const double norm = std::sqrt(total.item<double>());
  if (std::isfinite(norm) && norm > max_norm && max_norm > 0) {
    const double scale = max_norm / (norm + 1e-6);
    for (auto& [name, p] : params_)
      if (p.grad().defined()) p.mutable_grad().mul_(scale);
  }
  return norm;
}

void AdamW::step(double lr) {
  at::NoGradGuard no_grad;
  ++step_;
  const double bc1 = 1 - std::pow(opt_.beta1, double(step_));
  const double bc2 = 1 - std::pow(opt_.beta2, double(step_));
  for (size_t i = 0; i < params_.size(); ++i) {
    at::Tensor& p = params_[i].second;
    if (!p.grad().defined()) continue;
    const at::Tensor& g = p.grad();
    if (opt_.weight_decay > 0 && p.dim() >= 2) p.mul_(1 - lr * opt_.weight_decay);  // decoupled
    exp_avg_[i].mul_(opt_.beta1).add_(g, 1 - opt_.beta1);
    exp_avg_sq_[i].mul_(opt_.beta2).addcmul_(g, g, 1 - opt_.beta2);
    at::Tensor denom = (exp_avg_sq_[i] / bc2).sqrt_().add_(opt_.eps);
    p.addcdiv_(exp_avg_[i], denom, -lr / bc1);
  }
}

std::vector<std::pair<std::string, at::Tensor>> AdamW::state() const {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (size_t i = 0; i < params_.size(); ++i) {
    out.emplace_back("exp_avg." + params_[i].first, exp_avg_[i]);
    out.emplace_back("exp_avg_sq." + params_[i].first, exp_avg_sq_[i]);
  }
  return out;
}

void AdamW::load_state(const std::vector<std::pair<std::string, at::Tensor>>& state, int64_t step) {
  std::map<std::string, at::Tensor> by_name(state.begin(), state.end());
  at::NoGradGuard no_grad;
  for (size_t i = 0; i < params_.size(); ++i) {
    for (auto [prefix, dst] : {std::pair<const char*, at::Tensor*>{"exp_avg.", &exp_avg_[i]},
                               {"exp_avg_sq.", &exp_avg_sq_[i]}}) {
      auto it = by_name.find(prefix + params_[i].first);
      if (it == by_name.end()) throw Error("optimizer state lacks " + std::string(prefix) + params_[i].first);
      if (it->second.sizes() != dst->sizes())
        throw Error("optimizer state " + std::string(prefix) + params_[i].first + " has the wrong shape");
      dst->copy_(it->second);
    }
  }
  step_ = step;
}

double warmup_cosine_lr(int64_t step, int64_t warmup, int64_t total, double peak, double min_ratio) {
  if (step < warmup) return peak * double(step + 1) / double(warmup);
  if (total <= warmup) return peak;
  const double progress = std::min(1.0, double(step - warmup) / double(total - warmup));
  const double cosine = 0.5 * (1 + std::cos(M_PI * progress));
  return peak * (min_ratio + (1 - min_ratio) * cosine);
}

}  // namespace loopq::train
