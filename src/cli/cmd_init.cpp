// loopq init: writes a randomly initialised checkpoint (tests, benchmarks, full-size shape checks).
#include <cstdio>
#include <filesystem>

#include "cli/commands.h"
#include "cli/args.h"
#include "model/model_io.h"
#include "model/presets.h"
#include "model/runtime.h"
#include "util/error.h"

namespace loopq::cli {

static const char* kInitHelp =
    "usage: loopq init (--config config.json | --preset ouro-1.4b|ouro-2.6b|ouro-tiny) -o DIR\n"
    "                  [--seed S] [--dtype F32|BF16|F16] [--init-std X] [--tokenizer PATH]\n"
    "Writes config.json and model.safetensors with normal(0, init-std) weights (seeded).\n";

int cmd_init(int argc, char** argv) {
  Args args(argc, argv, {"config", "preset", "o", "out", "seed", "dtype", "init-std", "tokenizer", "threads"}, {});
  if (args.help()) {
    std::fputs(kInitHelp, stdout);
    return 0;
  }
  if (args.has("config") == args.has("preset")) throw Error("give exactly one of --config or --preset");
  std::string out = args.has("o") ? args.get("o") : args.get("out");
  if (out.empty()) throw Error("missing output directory -o DIR");
  init_threads(int(args.get_int("threads", 0, 0, 1024)));
  LoopLMConfig cfg = args.has("config") ? parse_hf_config(args.get("config")) : preset_config(args.get("preset"));
  const uint64_t seed = uint64_t(args.get_int("seed", 0, 0, INT64_MAX));
  const double init_std = args.get_double("init-std", 0.02, 0.0, 10.0);
  std::string dtype = args.get("dtype", "BF16");
  for (auto& ch : dtype) ch = char(std::toupper(ch));
  if (dtype != "F32" && dtype != "BF16" && dtype != "F16") throw Error("--dtype must be F32, BF16 or F16");
  if (args.has("tokenizer") && !std::filesystem::exists(args.get("tokenizer")))
    throw Error(args.get("tokenizer") + ": tokenizer path does not exist");
  OuroModel model = random_model(cfg, seed, init_std);
  save_model(model, out, dtype, args.get("tokenizer"));
  std::printf("wrote %s (%lld parameters, %s)\n", out.c_str(), (long long)model.parameter_count(),
              dtype.c_str());
  return 0;
}

}  // namespace loopq::cli
