// loopq bench model: a whole model's prefill and decode speed and its peak RSS, on the packed
// kernels or the reference path, with decode set against the memory-bandwidth limit measured in
// the same process. One model per process, so the peak RSS is that model's own.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/core/grad_mode.h>
#include <sys/resource.h>

#include <algorithm>
#include <cstdlib>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli/args.h"
#include "cli/bench/bandwidth.h"
#include "cli/bench/openblas.h"
#include "cli/bench/timing.h"
#include "cli/commands.h"
#include "cli/common.h"
#include "io/atomic_file.h"
#include "kernels/cpu/kernels.h"
#include "model/runtime.h"
#include "util/error.h"

namespace loopq::cli {
namespace {

const char* kBenchModelHelp =
    "usage: loopq bench model --model DIR [--kernels packed|reference] [--prefill 512] [--decode 16]\n"
    "                         [--loops 1,4] [--repeats 3] [--threads N] [--bw-mib 1024] [--json FILE]\n"
    "Loads one model (dense, or quantized on the packed kernels by default) and times, at each loop\n"
    "count, a prefill of --prefill random tokens and --decode single-token steps on a KV cache;\n"
    "medians of --repeats runs. Reports tokens/s, KV bytes per token, peak RSS (before the\n"
    "bandwidth probe), and decode against the bandwidth limit: read bandwidth (a read-only sum\n"
    "over --bw-mib MiB, timed after the runs) divided by the bytes one token streams (every\n"
    "linear's resident bytes once per loop, plus the LM head). \"% interleaved\" repeats the decode\n"
    "runs with a probe pass just before and after each, and is the median of the per-run fractions\n"
    "(robust to a host whose bandwidth drifts).\n";

using bench::Clock;
using bench::median;
using bench::seconds_since;

// Resident bytes now (VmRSS), 0 if /proc is unreadable.
int64_t rss_now_bytes() {
  std::ifstream f("/proc/self/status");
  std::string key;
  while (f >> key) {
    if (key == "VmRSS:") {
      int64_t kib = 0;
      f >> kib;
      return kib * 1024;
    }
    f.ignore(1 << 20, '\n');
  }
  return 0;
}

int64_t peak_rss_bytes() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return int64_t(ru.ru_maxrss) * 1024;  // KiB on Linux
}

}  // namespace

int bench_model(int argc, char** argv) {
  auto flags = kRunFlags;
  flags.insert({"prefill", "decode", "repeats", "bw-mib", "json"});
  flags.erase("exit");
  Args args(argc, argv, flags, {});
  if (args.help()) {
    std::fputs(kBenchModelHelp, stdout);
    return 0;
  }
  if (!args.positional().empty()) throw Error("unexpected argument '" + args.positional()[0] + "'");
  const int64_t prefill = args.get_int("prefill", 512, 1, 1 << 20);
  const int64_t decode = args.get_int("decode", 16, 1, 1 << 20);
  const int repeats = int(args.get_int("repeats", 3, 1, 1000));
  const int64_t bw_bytes = args.get_int("bw-mib", 1024, 64, 1 << 16) << 20;
  const std::vector<long long> loop_list = parse_int_list(args.get("loops", "1,4"), "--loops");
  if (args.has("json")) check_output_path(args.get("json"), "json");
  at::NoGradGuard no_grad;

  const auto t0 = Clock::now();
  OuroModel model = load_model_from_args(args, true);
  const double load_s = seconds_since(t0);
  const int threads = at::get_num_threads();
  set_openblas_threads(threads);
  const int64_t rss_load = peak_rss_bytes(), resident_load = rss_now_bytes();
  const LoopLMConfig& c = model.config();
  for (long long t : loop_list)
    if (t < 1 || t > 64) throw Error("--loops: each loop count must be in 1..64");
  if (prefill + decode > c.max_position_embeddings)
    throw Error("--prefill + --decode is more than the model's " + std::to_string(c.max_position_embeddings) + " positions");

  // What one token streams: every linear's resident bytes once per loop, plus the LM head.
  int64_t backbone = 0;
  std::string kind;
  for (const auto& L : model.weights().layers)
    for (int s = 0; s < kNumLayerSites; ++s) {
      backbone += L.linear(LinearSite(s))->parameter_bytes();
      if (kind.empty()) kind = L.linear(LinearSite(s))->kind();
    }
  const int64_t head = model.weights().lm_head ? model.weights().lm_head->parameter_bytes()
                                               : model.weights().embed.numel() * int64_t(model.weights().embed.element_size());
  std::printf("model %s: %s linears, %.1f MB backbone, %.1f MB head; load %.2f s; threads %d; kernel path %s\n",
              args.require("model").c_str(), kind.c_str(), backbone / 1e6, head / 1e6, load_s, threads,
              kernels::path_name(kernels::active_path()));
  const std::string blas = openblas_core();
  std::printf("CPU: %s; fp32 BLAS: OpenBLAS %s kernels%s\n", kernels::cpu_description().c_str(),
              blas.empty() ? "(not OpenBLAS)" : blas.c_str(), std::getenv("OPENBLAS_CORETYPE") ? " (OPENBLAS_CORETYPE)" : "");

  at::Generator gen = at::detail::createCPUGenerator(0);
  const at::Tensor ids = at::randint(0, c.vocab_size, {1, prefill + decode}, gen, at::kLong);
  nlohmann::json runs = nlohmann::json::array();
  struct Row {
    long long loops;
    double prefill_tps, decode_tps;
    int64_t kv_per_token;
  };
  std::vector<Row> rows;
  for (long long loops : loop_list) {
    ForwardOptions fo;
    fo.loops = loops;
    fo.exit = ExitMode{};
    fo.last_position_only = true;
    std::vector<double> pre_s, dec_s;
    int64_t kv = 0;
    for (int r = 0; r < repeats; ++r) {
      KVCache cache = model.make_cache(1, loops, prefill + decode);
      auto t = Clock::now();
      model.forward(ids.narrow(1, 0, prefill), fo, &cache);
      pre_s.push_back(seconds_since(t));
      t = Clock::now();
      for (int64_t i = 0; i < decode; ++i) model.forward(ids.narrow(1, prefill + i, 1), fo, &cache);
      dec_s.push_back(seconds_since(t));
      kv = cache.bytes_per_token();  // fp32 K/V, or the packed codes and scales of a KV4/KV8 model
    }
    rows.push_back({loops, double(prefill) / median(pre_s), double(decode) / median(dec_s), kv});
    runs.push_back({{"loops", loops}, {"prefill_seconds", pre_s}, {"decode_seconds", dec_s}});
  }
  const int64_t rss = peak_rss_bytes(), resident = rss_now_bytes();

  BandwidthProbe probe(threads, bw_bytes);
  probe.pass();  // page faults
  std::vector<double> bw;
  for (int r = 0; r < 3; ++r) {
    const auto t = Clock::now();
    probe.pass();
    bw.push_back(double(probe.read_bytes()) / seconds_since(t));
  }
  const double read_bw = median(bw);

  // The fraction of the bandwidth limit, measured side by side: on a shared host the read
  // bandwidth drifts by 2x within minutes, so each decode run is bracketed by probe passes and
  // the fraction is the median over runs of decode tok/s / (probe bandwidth / bytes per token).
  // (These runs come after the peak RSS was taken, since the probe buffer is resident.)
  std::vector<double> fraction_of_limit;
  for (const Row& row : rows) {
    ForwardOptions fo;
    fo.loops = row.loops;
    fo.exit = ExitMode{};
    fo.last_position_only = true;
    const double streamed = double(row.loops) * double(backbone) + double(head);
    std::vector<double> fr;
    for (int r = 0; r < repeats; ++r) {
      KVCache cache = model.make_cache(1, row.loops, prefill + decode);
      model.forward(ids.narrow(1, 0, prefill), fo, &cache);
      auto t = Clock::now();
      probe.pass();
      const double bw_before = double(probe.read_bytes()) / seconds_since(t);
      t = Clock::now();
      for (int64_t i = 0; i < decode; ++i) model.forward(ids.narrow(1, prefill + i, 1), fo, &cache);
      const double tps = double(decode) / seconds_since(t);
      t = Clock::now();
      probe.pass();
      const double bw_after = double(probe.read_bytes()) / seconds_since(t);
      fr.push_back(tps / (0.5 * (bw_before + bw_after) / streamed));
    }
    fraction_of_limit.push_back(median(fr));
  }

  std::printf("read bandwidth %.2f GB/s (median of 3 passes over %lld MiB); peak RSS %.3f GB (%.3f GB when loaded); "
              "resident after load %.3f GB, after the runs %.3f GB\n",
              read_bw / 1e9, (long long)(bw_bytes >> 20), rss / 1e9, rss_load / 1e9, resident_load / 1e9, resident / 1e9);
  std::printf("%6s %14s %14s %16s %14s %10s %14s\n", "loops", "prefill tok/s", "decode tok/s", "MB/token (dec)", "limit tok/s",
              "% limit", "% interleaved");
  nlohmann::json out = {{"model", args.require("model")}, {"linear_kind", kind}, {"backbone_bytes", backbone},
                        {"head_bytes", head}, {"load_seconds", load_s}, {"threads", threads},
                        {"kernel_path", kernels::path_name(kernels::active_path())},
                        {"cpu", kernels::cpu_description()}, {"prefill_tokens", prefill}, {"decode_tokens", decode},
                        {"repeats", repeats}, {"read_bandwidth_bytes_per_s", read_bw}, {"peak_rss_bytes", rss},
                        {"peak_rss_after_load_bytes", rss_load}, {"resident_after_load_bytes", resident_load},
                        {"resident_after_runs_bytes", resident}, {"loops", nlohmann::json::array()}};
  for (size_t i = 0; i < rows.size(); ++i) {
    const Row& r = rows[i];
    const double streamed = double(r.loops) * double(backbone) + double(head);
    const double limit = read_bw / streamed;
    std::printf("%6lld %14.2f %14.3f %16.1f %14.3f %9.1f%% %13.1f%%\n", r.loops, r.prefill_tps, r.decode_tps, streamed / 1e6,
                limit, 100 * r.decode_tps / limit, 100 * fraction_of_limit[i]);
    out["loops"].push_back({{"loops", r.loops}, {"prefill_tok_s", r.prefill_tps}, {"decode_tok_s", r.decode_tps},
                            {"bytes_streamed_per_token", streamed}, {"bandwidth_limit_tok_s", limit},
                            {"fraction_of_limit", r.decode_tps / limit},
                            {"fraction_of_limit_interleaved", fraction_of_limit[i]}, {"kv_bytes_per_token", r.kv_per_token},
                            {"prefill_seconds", runs[i]["prefill_seconds"]}, {"decode_seconds", runs[i]["decode_seconds"]}});
  }
  if (args.has("json")) io::write_file_atomic(args.get("json"), out.dump(2) + "\n");
  return 0;
}

}  // namespace loopq::cli
