// The optimize pass's validation guard (learned-static and LoopQ D alike), on tiny random looped
// models: the criterion is the exit readout's next-token NLL that `eval ppl` scores, the first
// candidate is exactly the unlearned backbone, the pass keeps the step-0 (closed-form) parameters
// or the backbone when learning only hurts, the kept checkpoint is the recorded minimum, and a
// guarded run is deterministic for a seed.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <unistd.h>

#include "eval/perplexity.h"
#include "quant/ptq.h"
#include "quant/quant_config.h"
#include "quant/quantized_io.h"
#include "quant/trajectory_opt.h"
#include "test_helpers.h"
#include "util/error.h"

namespace fs = std::filesystem;
using namespace loopq;
using namespace loopq::quant;
using loopq::testing::random_ids;
using loopq::testing::quiet;
using loopq::testing::tiny_model;

namespace {

// learned-static (layer-local loss) or LoopQ ABCD (trajectory loss), W4A4 dynamic, a short run.
// The guard's windows as QuantConfig carries them: plain ids, row after row.
void set_valid(QuantConfig& cfg, const at::Tensor& windows) {
  const at::Tensor w = windows.to(at::kLong).contiguous();
  cfg.optimize.valid_ids.assign(w.data_ptr<int64_t>(), w.data_ptr<int64_t>() + w.numel());
  cfg.optimize.valid_seqlen = w.size(1);
}

QuantConfig optimizing_config(bool loopq, int64_t steps) {
  QuantConfig cfg;
  cfg.method = loopq ? Method::LoopQ : Method::LearnedStatic;
  cfg.loopq = LoopQSpec::parse(loopq ? "ABCD" : "", true);
  cfg.w_bits = 4;
  cfg.act.bits = 4;
  cfg.act.clip = 0.9;
  cfg.act_samples = 64;
  cfg.optimize.steps = steps;
  cfg.optimize.batch = 2;
  cfg.optimize.seqlen = 16;
  cfg.optimize.progress = false;
  return cfg;
}

// learned-static's own backbone as a baseline (QuaRot-GPTQ, the same act quantizer) into
// `baseline`, and learned-static with `cfg` into `learned`, both on `calib`.
void quantize_against_baseline(OuroModel& baseline, OuroModel& learned, QuantConfig& cfg, const at::Tensor& calib,
                               bool static_acts) {
  QuantConfig base = optimizing_config(false, 0);
  base.method = Method::QuaRotGPTQ;
  base.act.static_scale = static_acts;
  quantize_model(baseline, base, calib, quiet());
  cfg.act.static_scale = static_acts;
  quantize_model(learned, cfg, calib, quiet());
}

at::Tensor loop_logits(const OuroModel& m, const at::Tensor& ids) { return loopq::testing::stacked_loop_logits(m, ids); }

std::vector<double> doubles(const nlohmann::json& j) { return j.get<std::vector<double>>(); }

std::string file_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

}  // namespace

TEST(OptimizeGuard, CriterionIsTheExitReadoutNllOfEvalPpl) {
  OuroModel m = tiny_model(40);
  const at::Tensor windows = random_ids(3, 12, 41);
  const at::Tensor flat = windows.reshape({-1}).contiguous();
  std::vector<int64_t> ids(flat.data_ptr<int64_t>(), flat.data_ptr<int64_t>() + flat.numel());
  eval::PerplexityOptions po;
  po.seqlen = 12;
  po.per_loop = false;
  const eval::PerplexityResult r = eval::evaluate_perplexity(m, ids, [](int64_t) { return int64_t(1); }, po);
  EXPECT_NEAR(readout_nll(m, windows), std::log(r.ppl(r.exit_readout())), 1e-7);
  EXPECT_THROW(readout_nll(m, windows.narrow(1, 0, 1)), Error);
}

TEST(OptimizeGuard, KeepsTheUnlearnedParametersWhenLearningOnlyHurts) {
  // An absurd learning rate (50x each tensor's magnitude per step) can only make the model worse
  // (or non-finite): the guard must end with the step-0 parameters (the same model as a run with
  // no optimization steps) or the bare backbone, whichever scored better, for both losses.
  const at::Tensor calib = random_ids(8, 16, 42), valid = random_ids(3, 16, 43), ids = random_ids(2, 10, 44);
  for (bool loopq : {false, true}) {
    OuroModel unlearned = tiny_model(45), guarded = tiny_model(45);
    QuantConfig base = optimizing_config(loopq, 0);
    quantize_model(unlearned, base, calib, quiet());
    QuantConfig cfg = optimizing_config(loopq, 6);
    cfg.optimize.lr = 50;
    set_valid(cfg, valid);
    cfg.optimize.valid_every = 2;
    quantize_model(guarded, cfg, calib, quiet());
    const auto& v = cfg.optimize_report.at("valid");
    const std::vector<double> nll = doubles(v.at("nll"));
    ASSERT_FALSE(nll.empty());
    for (size_t i = 1; i < nll.size(); ++i)
      EXPECT_FALSE(nll[i] < nll[0]) << "checkpoint " << i;  // later ones are worse (or NaN)
    const double backbone = v.at("backbone_nll").get<double>();
    if (v.at("chosen") == "step") {
      EXPECT_EQ(v.at("chosen_step").get<int64_t>(), 0) << (loopq ? "loopq" : "learned-static");
      EXPECT_LT(nll[0], backbone);
      EXPECT_TRUE(at::equal(loop_logits(guarded, ids), loop_logits(unlearned, ids))) << (loopq ? "loopq" : "learned-static");
    } else {
      EXPECT_EQ(v.at("chosen"), "backbone");
      EXPECT_LE(backbone, nll[0]);
    }
    EXPECT_NEAR(readout_nll(guarded, valid), std::min(nll[0], backbone), 1e-9);  // scored as stored (fp16 affines)
  }
}

TEST(OptimizeGuard, TheFirstCandidateIsExactlyTheBackbone) {
  // learned-static's backbone is QuaRot-GPTQ with the same act quantizer (pooled static scales in
  // static mode): its no-op candidate must score exactly what that baseline scores.
  const at::Tensor calib = random_ids(8, 16, 50), valid = random_ids(3, 16, 51);
  for (bool static_acts : {false, true}) {
    OuroModel baseline = tiny_model(52), learned = tiny_model(52);
    QuantConfig cfg = optimizing_config(false, 2);
    set_valid(cfg, valid);
    quantize_against_baseline(baseline, learned, cfg, calib, static_acts);
    const auto& v = cfg.optimize_report.at("valid");
    EXPECT_NEAR(v.at("backbone_nll").get<double>(), readout_nll(baseline, valid), 1e-12) << static_acts;
    // And the result is never worse on valid than that backbone.
    EXPECT_LE(readout_nll(learned, valid), readout_nll(baseline, valid) + 1e-12) << static_acts;
  }
}

TEST(OptimizeGuard, KeepsTheRecordedMinimumAndIsDeterministic) {
  const at::Tensor calib = random_ids(8, 16, 46), valid = random_ids(3, 16, 47);
  for (bool loopq : {false, true}) {
    std::string bytes[2];
    for (int run = 0; run < 2; ++run) {
      OuroModel m = tiny_model(48);
      QuantConfig cfg = optimizing_config(loopq, 7);
      cfg.optimize.lr = 2e-2;
      set_valid(cfg, valid);
      cfg.optimize.valid_every = 3;
      cfg.optimize.patience = 0;  // every step, whatever the checkpoints say (the default)
      quantize_model(m, cfg, calib, quiet());
      const auto& r = cfg.optimize_report;
      EXPECT_EQ(r.at("steps_run").get<int64_t>(), 7);
      const auto& v = r.at("valid");
      const std::vector<int64_t> steps{0, 3, 6, 7};
      EXPECT_EQ(v.at("steps").get<std::vector<int64_t>>(), steps);
      const std::vector<double> nll = doubles(v.at("nll"));
      ASSERT_EQ(nll.size(), 4u);
      const auto best = std::min_element(nll.begin(), nll.end());
      const double backbone = v.at("backbone_nll").get<double>();
      if (backbone <= *best) {
        EXPECT_EQ(v.at("chosen"), "backbone");
        EXPECT_EQ(v.at("chosen_nll").get<double>(), backbone);
      } else {
        EXPECT_EQ(v.at("chosen"), "step");
        EXPECT_EQ(v.at("chosen_step").get<int64_t>(), steps[size_t(best - nll.begin())]);
        EXPECT_EQ(v.at("chosen_nll").get<double>(), *best);
      }
      EXPECT_NEAR(readout_nll(m, valid), v.at("chosen_nll").get<double>(), 1e-9);
      // The record survives the quantized directory's config.json.
      const fs::path dir = fs::temp_directory_path() /
                           ("loopq_test_guard_" + std::to_string(loopq) + std::to_string(run) + "_" + std::to_string(::getpid()));
      fs::remove_all(dir);
      cfg.optimize.valid_file = "valid.txt";
      save_quantized_model(m, cfg, dir.string(), "");
      QuantConfig back;
      ASSERT_TRUE(read_quant_config(dir.string(), back));
      EXPECT_EQ(back.optimize_report.at("valid").at("chosen_step"), v.at("chosen_step"));
      EXPECT_EQ(back.optimize.valid_file, "valid.txt");
      EXPECT_EQ(back.optimize.valid_every, 3);
      EXPECT_EQ(back.optimize.patience, 0);
      bytes[run] = file_bytes(dir / "model.safetensors");
      fs::remove_all(dir);
    }
    EXPECT_EQ(bytes[0], bytes[1]) << (loopq ? "loopq" : "learned-static");
  }
}

TEST(OptimizeGuard, AnEarlyStopKeepsWhatTheFullRunKeeps) {
  // With an absurd learning rate every checkpoint after updates is worse than step 0 or the
  // backbone. Patience P stops the pass after P such checkpoints: its checkpoints are exactly
  // the full run's first ones (the same trajectory), and it keeps the full run's model.
  const at::Tensor calib = random_ids(8, 16, 42), valid = random_ids(3, 16, 43), ids = random_ids(2, 10, 44);
  for (bool loopq : {false, true}) {
    const char* what = loopq ? "loopq" : "learned-static";
    std::vector<double> full_nll;
    at::Tensor full_logits;
    for (int64_t patience : {0, 1, 2}) {
      OuroModel m = tiny_model(45);
      QuantConfig cfg = optimizing_config(loopq, 8);
      cfg.optimize.lr = 50;
      set_valid(cfg, valid);
      cfg.optimize.valid_every = 2;
      cfg.optimize.patience = patience;
      quantize_model(m, cfg, calib, quiet());
      const auto& r = cfg.optimize_report;
      const std::vector<double> nll = doubles(r.at("valid").at("nll"));
      const std::vector<int64_t> steps = r.at("valid").at("steps").get<std::vector<int64_t>>();
      if (patience == 0) {
        EXPECT_EQ(r.at("steps_run").get<int64_t>(), 8) << what;
        EXPECT_FALSE(r.contains("stopped")) << what;
        full_nll = nll;
        full_logits = loop_logits(m, ids);
        continue;
      }
      std::vector<int64_t> expected_steps;
      for (int64_t k = 0; k <= patience; ++k) expected_steps.push_back(2 * k);
      EXPECT_EQ(steps, expected_steps) << what << " patience " << patience;
      EXPECT_EQ(r.at("steps_run").get<int64_t>(), 2 * patience) << what;
      EXPECT_NE(r.at("stopped").get<std::string>().find("patience"), std::string::npos) << what;
      ASSERT_LE(nll.size(), full_nll.size());
      for (size_t i = 0; i < nll.size(); ++i) EXPECT_EQ(nll[i], full_nll[i]) << what << " checkpoint " << i;
      EXPECT_TRUE(at::equal(loop_logits(m, ids), full_logits)) << what << " patience " << patience;
    }
  }
}

TEST(OptimizeGuard, RejectsABadInterval) {
  const at::Tensor calib = random_ids(4, 16, 49);
  OuroModel m = tiny_model(50);
  QuantConfig cfg = optimizing_config(false, 2);
  set_valid(cfg, random_ids(2, 16, 51));
  cfg.optimize.valid_every = 0;
  EXPECT_THROW(quantize_model(m, cfg, calib, quiet()), Error);
  cfg.optimize.valid_every = 1;
  cfg.optimize.patience = -1;
  EXPECT_THROW(quantize_model(m, cfg, calib, quiet()), Error);
}


TEST(OptimizeGuard, AKeptBackboneStoresNoAdaptation) {
  // When the guard keeps the bare backbone, the file holds exactly that backbone: no adaptation
  // tensor (calibrated static scales, part of the backbone, stay), and it runs as the baseline.
  const at::Tensor calib = random_ids(8, 16, 50), ids = random_ids(2, 12, 53);
  for (bool static_acts : {false, true}) {
    OuroModel baseline = tiny_model(52), learned = tiny_model(52);
    QuantConfig cfg = optimizing_config(false, 0);
    quantize_against_baseline(baseline, learned, cfg, calib, static_acts);
    drop_noop_adaptations(learned, cfg);
    EXPECT_EQ(cfg.out_affine_sets, 0);
    EXPECT_EQ(cfg.state_sets, 0);
    EXPECT_EQ(cfg.act_param_sets > 0, static_acts);
    EXPECT_TRUE(at::equal(loop_logits(learned, ids), loop_logits(baseline, ids))) << static_acts;
    const fs::path dir = fs::temp_directory_path() / ("loopq_guard_drop_" + std::to_string(::getpid()));
    fs::remove_all(dir);
    save_quantized_model(learned, cfg, dir.string(), "");
    const OuroModel back = load_any_model(dir.string());
    EXPECT_TRUE(at::equal(loop_logits(back, ids), loop_logits(baseline, ids))) << static_acts;
    std::ifstream in(dir / "model.safetensors", std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    for (const char* name : {".loop_out_scale", ".loop_out_bias", ".loop_act_clip", "loop_state"})
      EXPECT_EQ(bytes.find(name), std::string::npos) << name;
    EXPECT_EQ(bytes.find(".loop_act_scale") != std::string::npos, static_acts);
    fs::remove_all(dir);
  }
}
