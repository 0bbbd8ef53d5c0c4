// loopq calib-stats: per-loop activation statistics of every linear input (what motivates
// loop-aware quantization): channel absmax and kurtosis per loop, and how much they move between
// loops, from one calibration pass with the streaming collector.
#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "cli/args.h"
#include "cli/commands.h"
#include "cli/common.h"
#include "io/atomic_file.h"
#include "model/model_io.h"
#include "quant/calibration.h"
#include "util/error.h"
#include "util/memory.h"

namespace fs = std::filesystem;

namespace loopq::cli {
namespace {

const char* kStatsHelp =
    "usage: loopq calib-stats --model DIR --calib FILE [--nsamples 32] [--seqlen 512] [--seed 0]\n"
    "                         [--batch 8] [--json FILE] [--threads N] [--device D]\n"
    "Runs --nsamples seeded windows of --calib through every loop and reports, per layer and\n"
    "linear input (attn_in = q/k/v, o_in, mlp_in = gate/up, down_in) and per loop:\n"
    "  absmax   the largest channel absmax, and the mean channel absmax\n"
    "  kurt     mean over channels of E[x^4]/E[x^2]^2 (3 for a Gaussian; large = outlier-heavy)\n"
    "and across loops: spread = mean over channels of max_t absmax / min_t absmax, and the lowest\n"
    "cosine similarity between two loops' absmax vectors. --json adds the per-channel vectors.\n";

}  // namespace

int cmd_calib_stats(int argc, char** argv) {
  Args args(argc, argv, {"model", "calib", "nsamples", "seqlen", "seed", "batch", "json", "threads", "device"}, {});
  if (args.help()) {
    std::fputs(kStatsHelp, stdout);
    return 0;
  }
  const std::string model_dir = args.require("model");
  const std::string calib = args.require("calib");
  if (!fs::is_regular_file(calib)) throw Error("--calib " + calib + ": not a readable file");
  const std::string json_path = args.get("json");
  if (args.has("json")) check_output_path(json_path, "json");
  const int64_t nsamples = args.get_int("nsamples", 32, 1, 1 << 20);
  const int64_t batch = args.get_int("batch", 8, 1, 4096);
  const uint64_t seed = uint64_t(args.get_int("seed", 0, 0, INT64_MAX));
  OuroModel model = load_model_from_args(args);
  const LoopLMConfig& c = model.config();
  const int64_t seqlen = args.get_int("seqlen", std::min<int64_t>(512, c.max_position_embeddings), 2,
                                      c.max_position_embeddings);
  // The windows are one int64 tensor of nsamples x seqlen, built before anything runs.
  check_fits_in_memory(saturating_product({uint64_t(nsamples), uint64_t(seqlen), 8}),
                       "--nsamples " + std::to_string(nsamples) + " x --seqlen " +
                           std::to_string(seqlen) + ": the calibration windows");
  if (model.device() == at::Device(at::kCPU)) {
    // One batch's fp32 attention scores and softmax (B x heads x seqlen^2 each), at least.
    const int64_t b = std::min(batch, nsamples);
    check_fits_in_memory(saturating_product({uint64_t(b), uint64_t(c.num_heads), uint64_t(seqlen),
                                             uint64_t(seqlen), 8}),
                         "--batch " + std::to_string(b) + " x --seqlen " + std::to_string(seqlen) +
                             ": the attention scores");
  }
  auto tokenizer = load_model_tokenizer(model_dir_of(model_dir));
  check_tokenizer_fits(*tokenizer, c);
  const at::Tensor windows =
      quant::calibration_windows(tokenizer->encode(read_text_file(calib)), nsamples, seqlen, seed).to(model.device());
  const int64_t T = c.total_ut_steps;
  quant::CalibrationOptions opts;
  opts.hessian = false;
  quant::CalibrationCollector col(c.num_layers, T, opts);
  quant::run_calibration(model, windows, T, col, batch);

  nlohmann::json out;
  out["model"] = model_dir;
  out["calibration"] = {{"file", fs::path(calib).filename().string()}, {"nsamples", nsamples}, {"seqlen", seqlen}, {"seed", seed}};
  out["loops"] = T;
  std::printf("%-6s %-8s %-5s %10s %10s %8s   %s\n", "layer", "input", "loop", "absmax", "mean|max|", "kurt", "");
  for (int64_t l = 0; l < c.num_layers; ++l)
    for (int g = 0; g < quant::kNumInputGroups; ++g) {
      const auto group = quant::InputGroup(g);
      nlohmann::json entry = {{"layer", l}, {"input", quant::input_group_name(group)}};
      std::vector<at::Tensor> amax;
      for (int64_t t = 0; t < T; ++t) {
        const auto& s = col.per_loop(t, l, group);
        at::Tensor a = s.absmax.to(at::kCPU).to(at::kDouble), k = s.kurtosis().to(at::kCPU);
        amax.push_back(a);
        nlohmann::json lj = {{"loop", t + 1},
                             {"absmax_max", a.max().item<double>()},
                             {"absmax_mean", a.mean().item<double>()},
                             {"kurtosis_mean", k.mean().item<double>()},
                             {"kurtosis_max", k.max().item<double>()},
                             {"absmax", std::vector<double>(a.data_ptr<double>(), a.data_ptr<double>() + a.numel())}};
        entry["per_loop"].push_back(lj);
        std::printf("%-6lld %-8s %-5lld %10.3f %10.3f %8.2f\n", (long long)l, quant::input_group_name(group),
                    (long long)(t + 1), lj["absmax_max"].get<double>(), lj["absmax_mean"].get<double>(),
                    lj["kurtosis_mean"].get<double>());
      }
      at::Tensor stack = at::stack(amax, 0);  // [T, in]
      const double spread = (std::get<0>(stack.max(0)) / std::get<0>(stack.min(0)).clamp_min(1e-12)).mean().item<double>();
      double min_cos = 1.0;
      for (int64_t a = 0; a < T; ++a)
        for (int64_t b = a + 1; b < T; ++b)
          min_cos = std::min(min_cos, (at::dot(amax[a], amax[b]) / (amax[a].norm() * amax[b].norm())).item<double>());
      entry["absmax_spread"] = spread;
      entry["absmax_min_cosine"] = min_cos;
      std::printf("%-6lld %-8s %-5s spread %.3f, min cosine %.4f\n", (long long)l, quant::input_group_name(group),
                  "all", spread, min_cos);
      out["inputs"].push_back(entry);
    }
  if (args.has("json")) io::write_file_atomic(json_path, out.dump() + "\n");
  return 0;
}

}  // namespace loopq::cli
