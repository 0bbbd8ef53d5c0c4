// loopq diagnose: per-loop error of quantized models against their FP reference (relative state
// error, readout KL, perplexity, top-1 agreement) and per-site activation SQNR; JSON and a PNG
// plot of error against loop index with several models overlaid.
#include <ATen/ATen.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "cli/args.h"
#include "cli/commands.h"
#include "cli/common.h"
#include "io/atomic_file.h"
#include "model/model_io.h"
#include "quant/diagnostics.h"
#include "quant/quantized_io.h"
#include "util/error.h"
#include "io/line_plot.h"

namespace fs = std::filesystem;

namespace loopq::cli {
namespace {

const char* kDiagnoseHelp =
    "usage: loopq diagnose --model Q --reference FP --file TEXT [--windows 8] [--seqlen 512]\n"
    "         [--compare Q2,Q3,...] [--json F] [--plot F.png] [--threads N]\n"
    "Runs each quantized model and the FP reference on the first --windows windows of --seqlen\n"
    "tokens of TEXT and reports, for every loop t:\n"
    "  relative_state_error  ||s~_t - s_t|| / ||s_t|| over the normed loop states\n"
    "  kl                    mean KL(p_fp || p_q) of loop t's readouts (nats per token)\n"
    "  ppl                   perplexity of loop t's readout (next token), and the reference's\n"
    "  top1_agreement        fraction of positions where both readouts agree on the argmax\n"
    "and, for every quantized linear and loop, the SQNR (dB) of its activation quantization.\n"
    "--json writes {reference, file, windows, seqlen, tokens, per_loop: [...] (the first model),\n"
    "models: [{model, per_loop, sites: [{layer, site, sqnr_db: [per loop]}]}]}; --plot draws\n"
    "relative state error and KL against the loop index for every model.\n";

nlohmann::json per_loop_json(const quant::Diagnostics& d) {
  nlohmann::json a = nlohmann::json::array();
  for (size_t t = 0; t < d.per_loop.size(); ++t) {
    const auto& l = d.per_loop[t];
    a.push_back({{"loop", t + 1}, {"relative_state_error", l.relative_state_error}, {"kl", l.kl},
                 {"ppl", l.ppl}, {"ppl_reference", l.ppl_reference}, {"top1_agreement", l.top1_agreement}});
  }
  return a;
}

nlohmann::json number_or_null(double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr); }

}  // namespace

int cmd_diagnose(int argc, char** argv) {
  Args args(argc, argv, {"model", "reference", "file", "windows", "seqlen", "compare", "json", "plot", "threads", "device"}, {});
  if (args.help()) {
    std::fputs(kDiagnoseHelp, stdout);
    return 0;
  }
  const std::string model_path = args.require("model");
  const std::string ref_path = args.require("reference");
  const std::string file = args.require("file");
  const int64_t nwin = args.get_int("windows", 8, 1, 1 << 20);
  int64_t seqlen = args.get_int("seqlen", 512, 2, 1 << 20);
  if (args.has("json")) check_output_path(args.get("json"), "json");
  if (args.has("plot")) check_output_path(args.get("plot"), "plot");
  std::vector<std::string> paths{model_path};
  if (args.has("compare")) {
    std::string list = args.get("compare");
    size_t start = 0;
    while (start <= list.size()) {
      const size_t comma = list.find(',', start);
      const std::string p = list.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
      if (p.empty()) throw Error("--compare: empty model path in '" + list + "'");
      paths.push_back(p);
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
  }
  for (const auto& p : paths)
    if (!fs::exists(fs::path(model_dir_of(p)) / "config.json")) throw Error(p + ": no config.json in model directory");
  const std::string text = read_text_file(file);
  if (text.empty()) throw Error(file + ": file is empty");

  OuroModel first = load_model_from_args(args);
  LoadOptions lo;
  lo.device = first.device();
  OuroModel reference = quant::load_any_model(ref_path, lo);
  {
    quant::QuantConfig qc;
    if (quant::read_quant_config(ref_path, qc)) throw Error("--reference " + ref_path + " is quantized; give the FP model");
  }
  if (reference.config().total_ut_steps != first.config().total_ut_steps)
    throw Error("--reference has a different loop count than --model");
  seqlen = std::min(seqlen, reference.config().max_position_embeddings);
  auto tokenizer = load_model_tokenizer(model_dir_of(ref_path));
  check_tokenizer_fits(*tokenizer, reference.config());
  std::vector<int32_t> enc = tokenizer->encode(text);
  const int64_t avail = int64_t(enc.size()) / seqlen;
  if (avail < 1) throw Error(file + ": fewer tokens than one window of --seqlen " + std::to_string(seqlen));
  const int64_t n = std::min(nwin, avail);
  at::Tensor windows = at::empty({n, seqlen}, at::kLong);
  auto acc = windows.accessor<int64_t, 2>();
  for (int64_t w = 0; w < n; ++w)
    for (int64_t j = 0; j < seqlen; ++j) acc[w][j] = enc[size_t(w * seqlen + j)];
  windows = windows.to(first.device());

  nlohmann::json out;
  out["reference"] = ref_path, out["file"] = file, out["windows"] = n, out["seqlen"] = seqlen;
  out["models"] = nlohmann::json::array();
  std::vector<io::PlotSeries> err_series, kl_series;
  for (size_t m = 0; m < paths.size(); ++m) {
    OuroModel loaded = m == 0 ? OuroModel(first) : quant::load_any_model(paths[m], lo);
    if (loaded.config().total_ut_steps != reference.config().total_ut_steps)
      throw Error(paths[m] + ": a different loop count than the reference");
    const quant::Diagnostics d = quant::diagnose(loaded, reference, windows);
    out["tokens"] = d.tokens;
    std::printf("%s (against %s, %lld windows x %lld tokens)\n", paths[m].c_str(), ref_path.c_str(), (long long)n,
                (long long)seqlen);
    std::printf("  %-5s %12s %12s %10s %10s %8s\n", "loop", "rel state", "KL", "ppl", "ppl FP", "top-1 =");
    io::PlotSeries es{fs::path(paths[m]).filename().string(), {}, {}}, ks = es;
    for (size_t t = 0; t < d.per_loop.size(); ++t) {
      const auto& l = d.per_loop[t];
      std::printf("  %-5zu %12.5f %12.6f %10.3f %10.3f %7.2f%%\n", t + 1, l.relative_state_error, l.kl, l.ppl,
                  l.ppl_reference, 100 * l.top1_agreement);
      es.x.push_back(double(t + 1)), es.y.push_back(l.relative_state_error);
      ks.x.push_back(double(t + 1)), ks.y.push_back(l.kl);
    }
    err_series.push_back(es), kl_series.push_back(ks);
    nlohmann::json sites = nlohmann::json::array();
    for (const auto& s : d.sites) {
      nlohmann::json v = nlohmann::json::array();
      for (double x : s.sqnr_db) v.push_back(number_or_null(x));
      sites.push_back({{"layer", s.layer}, {"site", linear_site_name(s.site)}, {"sqnr_db", v}});
    }
    if (m == 0) out["per_loop"] = per_loop_json(d);
    out["models"].push_back({{"model", paths[m]}, {"per_loop", per_loop_json(d)}, {"sites", sites}});
  }
  if (args.has("json")) io::write_file_atomic(args.get("json"), out.dump(2) + "\n");
  if (args.has("plot")) {
    io::PlotPanel a{"relative state error by loop", "loop", "||s~ - s|| / ||s||", false, err_series};
    io::PlotPanel b{"readout KL to FP by loop", "loop", "KL (nats/token)", true, kl_series};
    io::write_line_plot_png(args.get("plot"), {a, b});
  }
  return 0;
}

}  // namespace loopq::cli
