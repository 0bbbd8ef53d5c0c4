#pragma once
// Everything needed to reproduce a quantized model, stored as the `quantization_config` block of
// its config.json (and read back by the loader).
#include <nlohmann/json.hpp>

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "quant/kv_quant.h"
#include "quant/quant_linear.h"
#include "quant/trajectory_opt.h"

namespace loopq::quant {

enum class Method { RTN, SmoothQuant, GPTQ, QuaRotRTN, QuaRotGPTQ, LoopQ, LearnedStatic };
// "rtn", "smoothquant", "gptq", "quarot-rtn", "quarot-gptq", "loopq", "learned-static"
Method parse_method(const std::string& name);
const char* method_name(Method m);
inline bool uses_rotation(Method m) {
  return m == Method::QuaRotRTN || m == Method::QuaRotGPTQ || m == Method::LoopQ || m == Method::LearnedStatic;
}

// LoopQ's components (loopq-method.md §5) and its backbone. The backbone is QuaRot's rotations
// with GPTQ (or RTN) weights; A-D add loop-aware passes on top of it.
struct LoopQSpec {
  bool A = true;  // per-loop activation parameters (static scales / clip ratios) + per-loop output affine
  bool B = true;  // selective rotation: keep an online rotation only where it measurably helps
  bool C = true;  // per-loop state alignment (model.norm weight + bias per loop)
  bool D = true;  // trajectory-aware optimization
  bool gptq_weights = true;  // false: RTN
  std::string components() const;  // e.g. "ABCD"
  static LoopQSpec parse(const std::string& letters, bool gptq);
};

struct QuantConfig {
  Method method = Method::RTN;
  // Weights (all seven linears of every layer; embeddings, norms, lm_head and exit gate stay FP).
  int w_bits = 4;
  bool w_symmetric = true;
  int64_t w_group_size = 0;
  bool w_clip_search = true;
  ActQuant act;     // bits 16 = weight-only
  KVQuantSpec kv;   // bits 16 = FP cache
  // SmoothQuant
  double smooth_alpha = 0.5;
  // GPTQ (quantization-reference.md §3.3)
  double percdamp = 0.01;
  int64_t block_size = 128;
  bool act_order = true;
  std::string sequential = "layer";  // none | layer | sublayer
  // QuaRot
  uint64_t rotation_seed = 0;
  // LoopQ
  LoopQSpec loopq;
  bool loopq_smooth = false;         // A's loop-balanced smoothing vector (opt-in: --loopq-smooth)
  nlohmann::json smoothing_report;   // its per-site choices and errors
  // Activation-parameter search: calibration rows kept per (layer, input, loop).
  int64_t act_samples = 1024;
  // Calibration windows the closed-form fits (output affine, state alignment) stream (the first N).
  int64_t fit_windows = 8;
  // Per-(layer, input group) online-rotation decisions ([layer][attn_in, o_in, mlp_in, down_in]);
  // empty = every rotation of the method is on. B's measurements stay in `rotation_report`.
  std::vector<std::array<bool, 4>> rotate_groups;
  nlohmann::json rotation_report;
  // Input-shaping transforms (input_transform.h, --input-transform): the groups asked for, and per
  // (layer, group) where one was kept (empty: none). Each kept one is a stored tensor
  // model.layers.L.<group>.input_transform [in, in] replacing that group's online rotation.
  std::array<bool, 4> transform_request{};
  std::vector<std::array<bool, 4>> transform_groups;
  nlohmann::json transform_report;
  // KV-cache shaping transforms (kv_transform.h, --kv-transform k,v): asked for ([k, v]), and per
  // layer where one was kept; the maps themselves travel in kv.shaping (stored tensors
  // model.layers.L.self_attn.<k|v>_transform).
  std::array<bool, 2> kv_transform_request{};
  std::vector<std::array<bool, 2>> kv_transform_layers;
  nlohmann::json kv_transform_report;
  bool kv_transformed(int64_t layer, int tensor) const {
    return !kv_transform_layers.empty() && kv_transform_layers.at(size_t(layer))[size_t(tensor)];
  }
  // Leading size P of the stored adaptation tensors (0: none; 1: one set for all loops; T: per loop).
  int64_t act_param_sets = 0;   // static scales or clip ratios per site
  int64_t out_affine_sets = 0;  // output scale / bias per site
  int64_t state_sets = 0;       // state alignment
  // Trajectory-aware GPTQ (LoopQ D): on unless disabled; loop weights w_t (empty: all 1).
  bool trajectory_gptq = true;
  std::vector<double> gptq_loop_weights;
  // ... toward the FP model's outputs instead of the quantized inputs' (gptq_fp_target.h).
  bool gptq_fp_target = false;
  // The optimize pass (LoopQ D, learned-static) and what it reported.
  TrajectoryOptions optimize;
  nlohmann::json optimize_report;
  bool group_rotated(int64_t layer, int group) const {
    return rotate_groups.empty() || rotate_groups.at(size_t(layer))[size_t(group)];
  }
  bool group_transformed(int64_t layer, int group) const {
    return !transform_groups.empty() && transform_groups.at(size_t(layer))[size_t(group)];
  }
  // Calibration record
  std::string calib_file;
  int64_t nsamples = 0, seqlen = 0;
  uint64_t calib_seed = 0;
  double quantize_seconds = 0;

  // Rejects inconsistent settings with one clear message (bits, clip ratios, group sizes).
  void validate(int64_t hidden, int64_t intermediate, int64_t q_dim, int64_t kv_dim) const;
  nlohmann::json to_json() const;
  static QuantConfig from_json(const nlohmann::json& j);
};

}  // namespace loopq::quant
