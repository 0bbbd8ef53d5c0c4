#pragma once
// Observation/modification points that calibration and loop-aware quantization attach to.
// Every linear input and every loop-boundary state passes through here, tagged with its loop.
#include <ATen/ATen.h>

namespace loopq {

// The seven physical linears of an Ouro layer, plus the LM head.
enum class LinearSite { Q, K, V, O, Gate, Up, Down, LMHead };
constexpr int kNumLayerSites = 7;
const char* linear_site_name(LinearSite site);  // "q_proj", ..., "lm_head"

struct LoopHooks {
  virtual ~LoopHooks() = default;
  // Input of linear `site` in physical layer `layer` during loop `loop` (0-based). The hook may
  // replace `x`; only this linear sees the replacement.
  virtual void on_linear_input(int loop, int layer, LinearSite site, at::Tensor& x) {
    (void)loop, (void)layer, (void)site, (void)x;
  }
  // Output of the same linear; may be replaced (e.g. per-loop output correction).
  virtual void on_linear_output(int loop, int layer, LinearSite site, at::Tensor& y) {
    (void)loop, (void)layer, (void)site, (void)y;
  }
  // Residual stream entering / leaving physical layer `layer` in loop `loop`; either may be
  // replaced (e.g. teacher forcing a layer with another model's input for a layer-local loss).
  virtual void on_layer_input(int loop, int layer, at::Tensor& x) { (void)loop, (void)layer, (void)x; }
  virtual void on_layer_output(int loop, int layer, at::Tensor& x) { (void)loop, (void)layer, (void)x; }
  // Normed state after loop `loop` (model.norm output): the next loop's input and the readout
  // input. The hook may replace it.
  virtual void on_loop_state(int loop, at::Tensor& state) { (void)loop, (void)state; }
};

}  // namespace loopq
