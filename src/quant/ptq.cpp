#include "quant/ptq.h"

#include <chrono>
#include <cstdio>
#include <memory>
#include <optional>

#include "util/progress.h"
#include "quant/act_calibration.h"
#include "quant/calibration.h"
#include "quant/gptq.h"
#include "quant/input_transform.h"
#include "quant/kv_transform.h"
#include "quant/loop_smoothing.h"
#include "quant/output_affine.h"
#include "quant/quarot.h"
#include "quant/selective_rotation.h"
#include "quant/smoothquant.h"
#include "quant/state_alignment.h"
#include "quant/gptq_fp_target.h"
#include "quant/trajectory_opt.h"
#include "util/error.h"

namespace loopq::quant {
namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

Grid weight_grid(const QuantConfig& c) { return Grid{c.w_bits, c.w_symmetric}; }

// Runs one calibration pass, pass(progress), with the progress display and the report's timing.
template <class Pass>
void calibration_pass(const at::Tensor& windows, int64_t loops, const PtqRunOptions& run, const std::string& label,
                      PtqReport& report, Pass&& pass) {
  const auto t0 = Clock::now();
  Progress bar(label, windows.size(0), "windows", "tok");
  pass([&](int64_t done, int64_t) {
    if (run.progress) bar.update(done, double(done * windows.size(1) * loops));
  });
  if (run.progress) bar.finish();
  report.calibration_seconds += since(t0);
  report.calibration_passes += 1;
}

// One calibration pass over `windows` collecting what `options` asks for.
CalibrationCollector calibrate(const OuroModel& model, const at::Tensor& windows, CalibrationOptions options,
                               const PtqRunOptions& run, const std::string& label, PtqReport& report) {
  const int64_t T = model.config().total_ut_steps;
  CalibrationCollector collector(model.config().num_layers, T, std::move(options));
  calibration_pass(windows, T, run, label, report, [&](const auto& progress) {
    run_calibration(model, windows, T, collector, run.batch_size, progress);
  });
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

// A deep copy of a dense model: the FP reference that LoopQ's trajectory passes compare against.
OuroModel dense_copy(const OuroModel& m) {
  OuroWeights w = m.weights();
  auto cl = [](at::Tensor& t) {
    if (t.defined()) t = t.clone();
  };
  cl(w.embed), cl(w.final_norm), cl(w.exit_gate_weight), cl(w.exit_gate_bias);
  for (auto& L : w.layers) {
    cl(L.input_norm), cl(L.attn_out_norm), cl(L.ffn_in_norm), cl(L.ffn_out_norm);
    for (int s = 0; s < kNumLayerSites; ++s) {
      LinearPtr& op = L.linear(LinearSite(s));
      if (!dynamic_cast<const DenseLinear*>(op.get())) throw Error("quantize: the model must be dense (FP)");
      op = std::make_shared<DenseLinear>(op->dense_weight().clone());
    }
  }
  return OuroModel(m.config(), std::move(w));
}

void timed(const PtqRunOptions& run, PtqReport& report, const std::string& what, const std::function<void()>& f) {
  const auto t0 = Clock::now();
  f();
  const double s = since(t0);
  report.pass_seconds.push_back({what, s});
  if (run.progress) std::fprintf(stderr, "quantize: %s (%.1f s)\n", what.c_str(), s);
}

}  // namespace

LinearParts linear_parts(const LinearPtr& op) {
  if (auto* q = dynamic_cast<const ActQuantDenseLinear*>(op.get())) return {q->dense_weight(), q->rotation()};
  if (auto* q = dynamic_cast<const QuantLinear*>(op.get())) return {q->dense_weight(), q->rotation()};
  if (dynamic_cast<const DenseLinear*>(op.get())) return {op->dense_weight(), InputRotation{}};
  throw Error("quantize: unsupported linear kind '" + op->kind() + "'");
}

bool needs_calibration(const QuantConfig& cfg) {
  const Recipe r = recipe_of(cfg);
  return r.loop_smooth || r.shape_inputs || r.shape_kv || r.smooth || r.gptq || r.select_rotations || r.calibrate_acts || r.fit_affine || r.align_states || r.optimize;
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

namespace {

// The method's passes; the opt-in input transforms are added by recipe_of.
Recipe method_recipe(const QuantConfig& cfg) {
  Recipe r;
  const bool acts = cfg.act.enabled();
  switch (cfg.method) {
    case Method::RTN: break;
    case Method::SmoothQuant: r.smooth = true; break;
    case Method::GPTQ: r.gptq = true; break;
    case Method::QuaRotRTN: r.rotate = true; break;
    case Method::QuaRotGPTQ: r.rotate = r.gptq = true; break;
    case Method::LoopQ: {
      const LoopQSpec& q = cfg.loopq;
      r.rotate = true;
      r.loop_smooth = q.A && cfg.loopq_smooth;
      r.select_rotations = q.B;
      r.gptq = q.gptq_weights;
      r.per_loop = true;
      r.calibrate_acts = acts && (cfg.act.static_scale || q.A);
      r.fit_affine = q.A;
      r.align_states = q.C;
      r.optimize = q.D;
      r.trajectory_loss = true;
      r.trajectory_gptq = q.D && q.gptq_weights && cfg.trajectory_gptq;
      r.gptq_fp_target = r.trajectory_gptq && cfg.gptq_fp_target;
      return r;
    }
    case Method::LearnedStatic:
      // LoopQ's backbone and parameter types, one set per site for all loops, layer-local loss.
      r.rotate = true;
      r.gptq = cfg.loopq.gptq_weights;
      r.calibrate_acts = acts;
      r.fit_affine = r.align_states = r.optimize = true;
      r.trajectory_loss = false;
      return r;
  }
  r.calibrate_acts = acts && cfg.act.static_scale;  // static scales, pooled over loops
  return r;
}

}  // namespace

Recipe recipe_of(const QuantConfig& cfg) {
  Recipe r = method_recipe(cfg);
  r.shape_inputs = r.rotate && cfg.transform_request != std::array<bool, 4>{};
  r.shape_kv = r.rotate && cfg.kv_transform_request != std::array<bool, 2>{} && cfg.kv.bits < 16;
  return r;
}

PtqReport quantize_model(OuroModel& model, QuantConfig& cfg, const at::Tensor& windows, const PtqRunOptions& run) {
  const auto t0 = Clock::now();
  const LoopLMConfig& c = model.config();
  cfg.validate(c.hidden_size, c.intermediate_size, c.q_dim(), c.kv_dim());
  PtqReport report;
  auto log = [&](const std::string& s) {
    if (run.progress) std::fprintf(stderr, "quantize: %s\n", s.c_str());
  };
  if (needs_calibration(cfg) && (!windows.defined() || windows.size(0) == 0))
    throw Error(std::string(method_name(cfg.method)) + " needs calibration data (--calib)");
  const Recipe recipe = recipe_of(cfg);
  const int64_t T = c.total_ut_steps, P = recipe.per_loop ? T : 1;
  if (!cfg.gptq_loop_weights.empty() && int64_t(cfg.gptq_loop_weights.size()) != T)
    throw Error("--gptq-loop-weights needs one weight per loop (" + std::to_string(T) + "), got " +
                std::to_string(cfg.gptq_loop_weights.size()));
  // The FP model the trajectory passes compare against.
  std::unique_ptr<OuroModel> reference;
  if (recipe.align_states || recipe.optimize) reference = std::make_unique<OuroModel>(dense_copy(model));

  if (recipe.loop_smooth)
    timed(run, report, "A: loop-balanced smoothing", [&] {
      ActivationSampler samples = sample_activations(model, windows, cfg.act_samples, run.batch_size);
      cfg.smoothing_report = loop_balanced_smoothing(model, samples, weight_grid(cfg), cfg.act, recipe.rotate,
                                                     cfg.rotation_seed);
    });
  if (recipe.rotate) {
    quarot_rotate_model(model, cfg.rotation_seed);
    cfg.kv.rotate_qk = cfg.kv.bits < 16;  // R3 only matters when K is quantized
    log("rotated (QuaRot, seed " + std::to_string(cfg.rotation_seed) + ")");
  }
  // B's samples, kept for the input transforms: where B keeps every rotation and nothing runs in
  // between, the model is the one they were drawn from, so a second sampling forward would give
  // the same rows bit for bit.
  std::optional<ActivationSampler> rotated_samples;
  if (recipe.select_rotations) {
    timed(run, report, "B: selective rotation", [&] {
      rotated_samples.emplace(sample_activations(model, windows, cfg.act_samples, run.batch_size));
      RotationChoice choice = select_rotations(model, *rotated_samples, weight_grid(cfg), cfg.act, recipe.per_loop);
      cfg.rotate_groups = choice.rotate;
      cfg.rotation_report = choice.report;
    });
    int kept = 0;
    for (const auto& g : cfg.rotate_groups) kept += g[0] + g[1] + g[2] + g[3];
    if (kept != int(cfg.rotate_groups.size()) * 4 || recipe.shape_kv || !recipe.shape_inputs) rotated_samples.reset();
    log("B kept " + std::to_string(kept) + " of " + std::to_string(cfg.rotate_groups.size() * 4) + " online rotations");
  }
  if (recipe.shape_kv) {
    timed(run, report, std::string("KV transforms (closed form, ") + (recipe.per_loop ? "loop-balanced)" : "pooled)"), [&] {
      KVTransformChoice choice = shape_kv_transforms(model, windows, cfg.act_samples, run.batch_size, cfg.kv,
                                                     cfg.kv_transform_request, recipe.per_loop);
      cfg.kv_transform_layers = choice.layers;
      cfg.kv_transform_report = choice.report;
      cfg.kv.shaping = std::make_shared<const KVShaping>(choice.shaping);
      // The kept v maps are half of an exact pair (o_proj already holds T_v⁻¹): run the maps from
      // here on, with the cache still in FP until the runtime quantizers are installed.
      KVQuantSpec maps_only = cfg.kv;
      maps_only.bits = 16;
      model.set_attention_transform(std::make_shared<KVFakeQuant>(maps_only, c.num_kv_heads, c.head_dim));
    });
    int kept = 0;
    for (const auto& b : cfg.kv_transform_layers) kept += b[0] + b[1];
    log("kept " + std::to_string(kept) + " KV transforms");
  }
  if (recipe.shape_inputs) {
    timed(run, report, std::string("input transforms (closed form, ") + (recipe.per_loop ? "loop-balanced)" : "pooled)"), [&] {
      if (!rotated_samples) rotated_samples.emplace(sample_activations(model, windows, cfg.act_samples, run.batch_size));
      TransformChoice choice = shape_input_transforms(model, *rotated_samples, weight_grid(cfg), cfg.act,
                                                      cfg.transform_request, recipe.per_loop);
      cfg.transform_groups = choice.groups;
      cfg.transform_report = choice.report;
    });
    rotated_samples.reset();
    int kept = 0;
    for (const auto& g : cfg.transform_groups) kept += g[0] + g[1] + g[2] + g[3];
    log("kept " + std::to_string(kept) + " input transforms");
  }
  if (recipe.smooth) {
    CalibrationOptions o;
    o.hessian = false;
    auto stats = calibrate(model, windows, o, run, "calibrate (absmax)", report);
    apply_smoothquant(model, stats, cfg.smooth_alpha);
    log("smoothed, alpha " + std::to_string(cfg.smooth_alpha));
  }
  // FP weights in each linear's final basis: the output affine's least-squares target and the
  // weights an RTN backbone re-rounds from under learned clipping.
  std::vector<std::vector<at::Tensor>> fp_weights;
  if (recipe.fit_affine || recipe.optimize)
    for (const auto& L : model.weights().layers) {
      fp_weights.emplace_back();
      for (int s = 0; s < kNumLayerSites; ++s) fp_weights.back().push_back(linear_parts(L.linear(LinearSite(s))).weight.clone());
    }

  const Grid grid = weight_grid(cfg);
  auto& layers = model.weights().layers;
  // `paired`: FP-target GPTQ, which brings its own Hessian, already in the linear's basis.
  auto quantize_site = [&](LayerWeights& L, LinearSite site, const at::Tensor& hessian,
                           const PairedInputStats* paired = nullptr) {
    LinearParts parts = linear_parts(L.linear(site));
    QuantizedWeight qw;
    if (paired) parts.weight = fp_target_weight(parts.weight, *paired, cfg.percdamp);
    if (paired || hessian.defined()) {
      at::Tensor H = paired ? paired->hessian : hessian;
      if (!paired && parts.rotation.active()) {  // the linear sees x M, whose Hessian is Mᵀ H M
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

  if (recipe.gptq) {
    const auto stages = gptq_stages(c.num_layers, cfg.sequential);
    // Trajectory GPTQ: the already-quantized linears also quantize their inputs (dynamic per
    // token; static scales are not calibrated yet), so later layers' and loops' Hessians see the
    // errors the quantized model really feeds them.
    ActQuant trajectory_act = cfg.act;
    trajectory_act.static_scale = false;
    if (!trajectory_act.enabled() || !recipe.trajectory_gptq) trajectory_act = ActQuant{};
    // FP-target GPTQ pairs each stage's inputs with the rotated FP model's: a shallow copy, since
    // quantizing a site replaces its linear and never changes the old one.
    std::unique_ptr<OuroModel> fp_rotated;
    if (recipe.gptq_fp_target) fp_rotated = std::make_unique<OuroModel>(model.config(), model.weights());
    for (size_t si = 0; si < stages.size(); ++si) {
      CalibrationOptions o;
      o.only.insert(stages[si].begin(), stages[si].end());
      if (recipe.trajectory_gptq) o.loop_weights = cfg.gptq_loop_weights;
      for (auto& L : layers)
        for (int s = 0; s < kNumLayerSites; ++s)
          if (auto* q = dynamic_cast<QuantLinear*>(L.linear(LinearSite(s)).get())) q->set_act(trajectory_act);
      const auto& first = stages[si].front();
      const std::string label = "calibrate stage " + std::to_string(si + 1) + "/" + std::to_string(stages.size()) +
                                " (layer " + std::to_string(first.first) + ")";
      if (fp_rotated) {
        const std::set<LayerGroup> wanted(stages[si].begin(), stages[si].end());
        std::map<LayerGroup, PairedInputStats> paired;
        calibration_pass(windows, T, run, label + " (FP target)", report, [&](const auto& progress) {
          paired = paired_calibration(model, *fp_rotated, windows, wanted, trajectory_act, o.loop_weights,
                                      run.batch_size, progress);
        });
        for (const auto& [l, g] : stages[si])
          for (LinearSite site : sites_of(g)) quantize_site(layers[size_t(l)], site, at::Tensor(), &paired.at({l, g}));
        continue;
      }
      auto stats = calibrate(model, windows, o, run, label, report);
      for (const auto& [l, g] : stages[si]) {
        const at::Tensor H = stats.pooled(l, g).hessian();
        for (LinearSite site : sites_of(g)) quantize_site(layers[size_t(l)], site, H);
      }
    }
    for (auto& L : layers)
      for (int s = 0; s < kNumLayerSites; ++s)
        if (auto* q = dynamic_cast<QuantLinear*>(L.linear(LinearSite(s)).get())) q->set_act(ActQuant{});
    log(std::string(recipe.trajectory_gptq ? "trajectory " : "") + (recipe.gptq_fp_target ? "FP-target " : "") + "GPTQ done: " + std::to_string(stages.size()) +
        " calibration passes, Hessian error " + std::to_string(report.gptq_hessian_error));
  } else {
    for (auto& L : layers)
      for (int s = 0; s < kNumLayerSites; ++s) quantize_site(L, LinearSite(s), at::Tensor());
  }
  // calibrate_acts: static scales or clip ratios, pooled or per loop, on the weight-quantized
  // model with activations still in FP.
  if (recipe.calibrate_acts) {
    timed(run, report, std::string("calibrate activations (") + (cfg.act.static_scale ? "static scales" : "clip ratios") +
                           (recipe.per_loop ? ", per loop)" : ", pooled)"), [&] {
      ActivationSampler samples = sample_activations(model, windows, cfg.act_samples, run.batch_size);
      cfg.act_param_sets = calibrate_activations(model, samples, cfg.act, recipe.per_loop);
    });
  }
  install_runtime_quantizers(model, cfg);
  const at::Tensor fit = windows.defined() ? windows.narrow(0, 0, std::min<int64_t>(cfg.fit_windows, windows.size(0))) : windows;
  if (recipe.fit_affine)
    timed(run, report, std::string("output affine (least squares, ") + (recipe.per_loop ? "per loop)" : "pooled)"), [&] {
      cfg.out_affine_sets = fit_output_affine(model, fp_weights, fit, run.batch_size, recipe.per_loop);
    });
  if (recipe.align_states)
    timed(run, report, std::string("state alignment (closed form, ") + (recipe.per_loop ? "per loop)" : "pooled)"), [&] {
      align_states(model, *reference, fit, run.batch_size, recipe.per_loop);
      cfg.state_sets = P;
    });
  if (recipe.optimize)
    timed(run, report, std::string("optimize (") + (recipe.trajectory_loss ? "trajectory" : "layer-local") + " loss, " +
                           std::to_string(cfg.optimize.steps) + " steps)", [&] {
      TrajectoryOptions o = cfg.optimize;
      o.trajectory = recipe.trajectory_loss;
      o.rtn_backbone = !recipe.gptq;
      o.progress = run.progress;
      TrajectoryReport tr = optimize_adaptations(model, *reference, windows, fp_weights, o);
      if (!tr.loss.empty()) {
        cfg.optimize_report = {{"loss_first", tr.loss.front()}, {"loss_last", tr.loss.back()},
                               {"parameters", tr.parameters}, {"loss", tr.loss}};
        log("optimize: loss " + std::to_string(tr.loss.front()) + " -> " + std::to_string(tr.loss.back()));
      }
      if (!o.valid_ids.empty()) {
        // The guard's record: valid NLL per checkpoint (after that many updates) and the one kept.
        cfg.optimize_report["steps_run"] = tr.steps_run;
        cfg.optimize_report["valid"] = {{"criterion", "exit_readout_nll"}, {"steps", tr.valid_steps},
                                        {"nll", tr.valid_loss}, {"chosen_step", tr.chosen_step},
                                        {"chosen_nll", tr.chosen_valid_loss},
                                        {"backbone_nll", tr.backbone_valid_loss},
                                        {"chosen", tr.chosen_backbone ? "backbone" : "step"}};
        if (!tr.stopped.empty()) cfg.optimize_report["stopped"] = tr.stopped;
        if (tr.chosen_backbone) drop_noop_adaptations(model, cfg);
      }
    });
  round_output_affines(model);
  report.quantize_seconds = since(t0);
  cfg.quantize_seconds = report.quantize_seconds;
  return report;
}

void drop_noop_adaptations(OuroModel& model, QuantConfig& cfg) {
  // The guard kept the bare backbone: every adaptation is at its no-op value, so none is stored
  // (calibrated static scales are part of the backbone and stay).
  for (auto& L : model.weights().layers)
    for (int s = 0; s < kNumLayerSites; ++s)
      if (auto* q = dynamic_cast<QuantLinear*>(L.linear(LinearSite(s)).get())) {
        SiteAdaptation& a = q->adaptation();
        a.out_scale = a.out_bias = a.act_clip = at::Tensor();
      }
  model.weights().state_weight = model.weights().state_bias = at::Tensor();
  cfg.out_affine_sets = cfg.state_sets = 0;
  if (!cfg.act.static_scale) cfg.act_param_sets = 0;
}

void round_output_affines(OuroModel& model) {
  for (auto& L : model.weights().layers)
    for (int s = 0; s < kNumLayerSites; ++s)
      if (auto* q = dynamic_cast<QuantLinear*>(L.linear(LinearSite(s)).get()))
        for (at::Tensor* t : {&q->adaptation().out_scale, &q->adaptation().out_bias})
          if (t->defined()) *t = t->detach().to(at::kHalf).to(at::kFloat);
}

}  // namespace loopq::quant
