// loopq: one binary, one subcommand per job.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>

#include "cli/commands.h"
#include "util/error.h"

namespace {

struct Command {
  const char* name;
  int (*run)(int, char**);
  const char* summary;
};

const Command kCommands[] = {
    {"generate", loopq::cli::cmd_generate, "generate text with a looped LM (greedy/top-p)"},
    {"forward", loopq::cli::cmd_forward, "run one forward pass and dump per-loop tensors"},
    {"inspect", loopq::cli::cmd_inspect, "show parameter counts, shapes, dtypes, KV bytes"},
    {"tokenize", loopq::cli::cmd_tokenize, "encode text to ids or decode ids to text"},
    {"train-tokenizer", loopq::cli::cmd_train_tokenizer, "train a byte-level BPE tokenizer.json on a text file"},
    {"train", loopq::cli::cmd_train, "pretrain a looped LM from scratch (CPU or CUDA)"},
    {"init", loopq::cli::cmd_init, "write a randomly initialised checkpoint for a config"},
    {"eval", loopq::cli::cmd_eval, "perplexity and zero-shot task evaluation"},
    {"quantize", loopq::cli::cmd_quantize, "post-training quantization (RTN, SmoothQuant, GPTQ, QuaRot, LoopQ, learned-static)"},
    {"calib-stats", loopq::cli::cmd_calib_stats, "per-loop activation statistics of every linear input"},
    {"diagnose", loopq::cli::cmd_diagnose, "per-loop error of quantized models against the FP reference"},
    {"bench", loopq::cli::cmd_bench, "benchmark the packed kernels (bench kernels) or a whole model (bench model)"},
};

void usage(FILE* out) {
  std::fprintf(out, "usage: loopq <command> [flags]   (loopq <command> --help for details)\n\n");
  for (const auto& c : kCommands) std::fprintf(out, "  %-10s %s\n", c.name, c.summary);
}

}  // namespace

int main(int argc, char** argv) {
  // libgomp reads OMP_WAIT_POLICY once, when it loads; its default spin-waiting workers fight
  // OpenBLAS's own threads for the cores (measured 2x slower prefill on 2 cores). Re-exec once
  // with PASSIVE unless the user chose a policy.
  if (!std::getenv("OMP_WAIT_POLICY")) {
    setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
    execv("/proc/self/exe", argv);  // returns only on failure; then carry on as we are
  }
  if (argc < 2) {
    usage(stderr);
    return 2;
  }
  std::string name = argv[1];
  if (name == "--help" || name == "-h" || name == "help") {
    usage(stdout);
    return 0;
  }
  for (const auto& c : kCommands) {
    if (name != c.name) continue;
    try {
      return c.run(argc - 2, argv + 2);
    } catch (const loopq::Error& e) {
      std::fprintf(stderr, "loopq %s: error: %s\n", c.name, e.what());
      return 1;
    } catch (const std::exception& e) {
      // Library exceptions (torch, json) carry multi-line messages; keep the first line.
      std::string msg = e.what();
      auto nl = msg.find('\n');
      if (nl != std::string::npos) msg = msg.substr(0, nl);
      std::fprintf(stderr, "loopq %s: error: %s\n", c.name, msg.c_str());
      return 1;
    }
  }
  std::fprintf(stderr, "loopq: error: unknown command '%s' (see loopq --help)\n", name.c_str());
  return 2;
}
