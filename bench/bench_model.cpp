// Full-model benchmark: load time, peak RSS, prefill and decode throughput, KV bytes per token.
// Usage: bench_model MODEL_DIR [--prefill 512] [--decode 16] [--loops 1,4] [--repeats 3]
//                              [--threads N] [--json FILE]
// Prints one table; medians over --repeats runs. Run by bench/run_full_size.sh.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/core/grad_mode.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstdlib>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "cli/args.h"
#include "io/atomic_file.h"
#include "model/model_io.h"
#include "model/runtime.h"
#include "util/error.h"

using namespace loopq;
using Clock = std::chrono::steady_clock;

static double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

static double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
}

static double peak_rss_gib() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return double(ru.ru_maxrss) / (1024.0 * 1024.0);  // ru_maxrss is in KiB on Linux
}

int main(int argc, char** argv) {
  if (!std::getenv("OMP_WAIT_POLICY")) {  // see src/cli/main.cpp
    setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
    execv("/proc/self/exe", argv);
  }
  try {
    cli::Args args(argc - 1, argv + 1, {"prefill", "decode", "loops", "repeats", "threads", "json"}, {});
    if (args.help() || args.positional().size() != 1) {
      std::puts("usage: bench_model MODEL_DIR [--prefill 512] [--decode 16] [--loops 1,4] [--repeats 3] [--threads N] [--json FILE]");
      return args.help() ? 0 : 2;
    }
    const int threads = init_threads(int(args.get_int("threads", 0, 0, 1024)));
    const int64_t prefill = args.get_int("prefill", 512, 1, 1 << 20);
    const int64_t decode = args.get_int("decode", 16, 1, 1 << 20);
    const int64_t repeats = args.get_int("repeats", 3, 1, 1000);
    auto loop_list = cli::parse_int_list(args.get("loops", "1,4"), "--loops");
    at::NoGradGuard no_grad;

    auto t0 = Clock::now();
    OuroModel model = load_model(args.positional()[0]);
    const double load_s = seconds_since(t0);
    const double rss_after_load = peak_rss_gib();
    const LoopLMConfig& c = model.config();
    std::printf("model %s: %lld params, load %.2f s, peak RSS after load %.2f GiB, threads %d\n",
                args.positional()[0].c_str(), (long long)model.parameter_count(), load_s, rss_after_load, threads);

    nlohmann::json out = {{"model", args.positional()[0]}, {"params", model.parameter_count()},
                          {"load_seconds", load_s}, {"peak_rss_gib_after_load", rss_after_load},
                          {"threads", threads}, {"prefill_tokens", prefill}, {"decode_tokens", decode},
                          {"repeats", repeats}, {"runs", nlohmann::json::array()}};
    at::Generator gen = at::detail::createCPUGenerator(0);
    at::Tensor ids = at::randint(0, c.vocab_size, {1, prefill + decode}, gen, at::kLong);
    std::printf("%6s %14s %14s %18s\n", "loops", "prefill tok/s", "decode tok/s", "KV bytes/token");
    for (long long loops : loop_list) {
      ForwardOptions fo;
      fo.loops = loops;
      fo.exit = ExitMode{};
      fo.last_position_only = true;
      std::vector<double> pre_s, dec_s;
      for (int64_t r = 0; r < repeats; ++r) {
        KVCache cache = model.make_cache(1, loops, prefill + decode);
        auto t = Clock::now();
        model.forward(ids.narrow(1, 0, prefill), fo, &cache);
        pre_s.push_back(seconds_since(t));
        t = Clock::now();
        for (int64_t i = 0; i < decode; ++i) model.forward(ids.narrow(1, prefill + i, 1), fo, &cache);
        dec_s.push_back(seconds_since(t));
      }
      const double pre_tps = double(prefill) / median(pre_s), dec_tps = double(decode) / median(dec_s);
      // The cache's own storage per position: fp32 K and V for every (loop, layer) slot, or the
      // packed codes and scales of a 4/8-bit KV-quantized model (bf16 would halve fp32).
      const int64_t kv = model.make_cache(1, loops, 1).bytes_per_token();
      std::printf("%6lld %14.2f %14.3f %18lld\n", loops, pre_tps, dec_tps, (long long)kv);
      out["runs"].push_back({{"loops", loops}, {"prefill_tok_s", pre_tps}, {"decode_tok_s", dec_tps},
                             {"prefill_seconds", pre_s}, {"decode_seconds", dec_s},
                             {"kv_bytes_per_token", kv},
                             {"kv_bytes_per_token_f32", c.kv_bytes_per_token(loops, 4)},
                             {"kv_bytes_per_token_bf16", c.kv_bytes_per_token(loops, 2)}});
    }
    out["peak_rss_gib"] = peak_rss_gib();
    std::printf("peak RSS %.2f GiB\n", peak_rss_gib());
    if (args.has("json")) io::write_file_atomic(args.get("json"), out.dump(2) + "\n");
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_model: error: %s\n", e.what());
    return 1;
  }
}
