#include "quant/ptq.h"

#include <chrono>
#include <cstdio>

#include "eval/progress.h"
#include "quant/calibration.h"
#include "quant/gptq.h"
#include "quant/quarot.h"
#include "quant/smoothquant.h"
#include "util/error.h"

namespace loopq::quant {
namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

Grid weight_grid(const QuantConfig& c) { return Grid{c.w_bits, c.w_symmetric}; }

// One calibration pass over `windows` collecting what `options` asks for.
CalibrationCollector calibrate(const OuroModel& model, const at::Tensor& windows, CalibrationOptions options,
                               const PtqRunOptions& run, const std::string& label, PtqReport& report) {
  const auto t0 = Clock::now();
  const int64_t T = model.config().total_ut_steps;
  CalibrationCollector collector(model.config().num_layers, T, std::move(options));
  eval::Progress bar(label, windows.size(0), "windows", "tok");
  run_calibration(model, windows, T, collector, run.batch_size, [&](int64_t done, int64_t) {
    if (run.progress) bar.update(done, double(done * windows.size(1) * T));
  });
  if (run.progress) bar.finish();
  report.calibration_seconds += since(t0);
  report.calibration_passes += 1;
  return collector;
}

// GPTQ stages: sets of (layer, input group) whose Hessians come from one calibration pass of the
// model with every earlier stage already weight-quantized (QuaRot/GPTQ run this without
// activation quantization).
std::vector<std::vector<std::pair<int64_t, InputGroup>>> gptq_stages(int64_t layers, const std::string& mode) {
  std::vector<std::vector<std::pair<int64_t, InputGroup>>> stages;
  if (mode == "none") stages.emplace_back();
  for (int64_t l = 0; l < layers; ++l) {
    if (mode == "layer") stages.emplace_back();
    for (int g = 0; g < kNumInputGroups; ++g) {
      if (mode == "sublayer") stages.emplace_back();
      stages.back().push_back({l, InputGroup(g)});
    }
  }
  return stages;
}

}  // namespace

LinearParts linear_parts(const LinearPtr& op) {
  if (auto* q = dynamic_cast<const ActQuantDenseLinear*>(op.get())) return {q->dense_weight(), q->rotation()};
  if (auto* q = dynamic_cast<const QuantLinear*>(op.get())) return {q->dense_weight(), q->rotation()};
  if (dynamic_cast<const DenseLinear*>(op.get())) return {op->dense_weight(), InputRotation{}};
  throw Error("quantize: unsupported linear kind '" + op->kind() + "'");
}

void install_runtime_quantizers(OuroModel& model, const QuantConfig& cfg) {
  for (auto& L : model.weights().layers)
    for (int s = 0; s < kNumLayerSites; ++s)
      if (auto* q = dynamic_cast<QuantLinear*>(L.linear(LinearSite(s)).get())) q->set_act(cfg.act);
  const LoopLMConfig& c = model.config();
  if (cfg.kv.active())
    model.set_attention_transform(std::make_shared<KVFakeQuant>(cfg.kv, c.num_kv_heads, c.head_dim));
  else
    model.set_attention_transform(nullptr);
}

PtqReport quantize_model(OuroModel& model, QuantConfig& cfg, const at::Tensor& windows, const PtqRunOptions& run) {
  const auto t0 = Clock::now();
  const LoopLMConfig& c = model.config();
  cfg.validate(c.hidden_size, c.intermediate_size, c.q_dim(), c.kv_dim());
  PtqReport report;
  auto log = [&](const std::string& s) {
    if (run.progress) std::fprintf(stderr, "quantize: %s\n", s.c_str());
  };
  const bool needs_calibration = cfg.method == Method::SmoothQuant || uses_gptq(cfg.method);
  if (needs_calibration && (!windows.defined() || windows.size(0) == 0))
    throw Error(std::string(method_name(cfg.method)) + " needs calibration data (--calib)");

  if (uses_rotation(cfg.method)) {
    quarot_rotate_model(model, cfg.rotation_seed);
    cfg.kv.rotate_qk = cfg.kv.bits < 16;  // R3 only matters when K is quantized
    log("rotated (QuaRot, seed " + std::to_string(cfg.rotation_seed) + ")");
  }
  if (cfg.method == Method::SmoothQuant) {
    CalibrationOptions o;
    o.hessian = false;
    auto stats = calibrate(model, windows, o, run, "calibrate (absmax)", report);
    apply_smoothquant(model, stats, cfg.smooth_alpha);
    log("smoothed, alpha " + std::to_string(cfg.smooth_alpha));
  }

  const Grid grid = weight_grid(cfg);
  auto& layers = model.weights().layers;
  auto quantize_site = [&](LayerWeights& L, LinearSite site, const at::Tensor& hessian) {
    LinearParts parts = linear_parts(L.linear(site));
    QuantizedWeight qw;
    if (hessian.defined()) {
      at::Tensor H = hessian;
      if (parts.rotation.active()) {  // the linear sees x M, whose Hessian is Mᵀ H M
        at::Tensor M = parts.rotation.matrix(parts.weight.size(1)).to(H.device());
        H = at::matmul(at::matmul(M.t(), H.to(at::kDouble)), M);
      }
      GptqOptions go;
      go.grid = grid;
      go.group_size = cfg.w_group_size;
      go.block_size = cfg.block_size;
      go.percdamp = cfg.percdamp;
      go.act_order = cfg.act_order;
      go.static_groups = cfg.w_group_size > 0;
      go.mse_search = cfg.w_clip_search;
      GptqResult r = gptq_quantize(parts.weight, H, go);
      report.gptq_hessian_error += r.hessian_error;
      qw.grid = grid;
      qw.group_size = cfg.w_group_size;
      qw.codes = r.codes;
      qw.params = r.params;
    } else {
      qw = rtn_quantize(parts.weight, grid, cfg.w_group_size, cfg.w_clip_search);
    }
    L.linear(site) = std::make_shared<QuantLinear>(std::move(qw), ActQuant{}, parts.rotation);
  };

  if (uses_gptq(cfg.method)) {
    const auto stages = gptq_stages(c.num_layers, cfg.sequential);
    for (size_t si = 0; si < stages.size(); ++si) {
      CalibrationOptions o;
      o.only.insert(stages[si].begin(), stages[si].end());
      const auto& first = stages[si].front();
      const std::string label = "calibrate stage " + std::to_string(si + 1) + "/" + std::to_string(stages.size()) +
                                " (layer " + std::to_string(first.first) + ")";
      auto stats = calibrate(model, windows, o, run, label, report);
      for (const auto& [l, g] : stages[si]) {
        const at::Tensor H = stats.pooled(l, g).hessian();
        for (LinearSite site : sites_of(g)) quantize_site(layers[size_t(l)], site, H);
      }
    }
    log("GPTQ done: " + std::to_string(stages.size()) + " calibration passes, Hessian error " +
        std::to_string(report.gptq_hessian_error));
  } else {
    for (auto& L : layers)
      for (int s = 0; s < kNumLayerSites; ++s) quantize_site(L, LinearSite(s), at::Tensor());
  }
  install_runtime_quantizers(model, cfg);
  report.quantize_seconds = since(t0);
  cfg.quantize_seconds = report.quantize_seconds;
  return report;
}

}  // namespace loopq::quant
