#pragma once
// AdamW (Loshchilov & Hutter) written out with ATen ops, so its state is plain named tensors that
// checkpoint and resume exactly, on CPU or CUDA alike.
#include <ATen/ATen.h>

#include <string>
#include <utility>
#include <vector>

namespace loopq::train {

struct AdamWOptions {
  double beta1 = 0.9, beta2 = 0.95, eps = 1e-8, weight_decay = 0.1;
};

class AdamW {
 public:
  // params: (name, tensor) pairs; decay applies to tensors with dim >= 2 (matrices, embeddings).
  AdamW(std::vector<std::pair<std::string, at::Tensor>> params, AdamWOptions options);
  void step(double lr);
  void zero_grad();
  int64_t steps() const { return step_; }
  // Global L2 norm of all gradients; scales them down to `max_norm` when larger. Returns the
  // norm before clipping.
  double clip_grad_norm(double max_norm);
  // Moment tensors as "exp_avg.<name>" / "exp_avg_sq.<name>".
  std::vector<std::pair<std::string, at::Tensor>> state() const;
  void load_state(const std::vector<std::pair<std::string, at::Tensor>>& state, int64_t step);

 private:
  std::vector<std::pair<std::string, at::Tensor>> params_;
  std::vector<at::Tensor> exp_avg_, exp_avg_sq_;
  AdamWOptions opt_;
  int64_t step_ = 0;
};

// Linear warmup to `peak`, then cosine decay to peak * min_ratio at `total` steps.
double warmup_cosine_lr(int64_t step, int64_t warmup, int64_t total, double peak, double min_ratio);

}  // namespace loopq::train
