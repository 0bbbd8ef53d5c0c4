// loopq init: writes a randomly initialised checkpoint (tests, benchmarks, full-size shape checks).
#include <cstdio>
#include <filesystem>

#include "cli/commands.h"
#include "cli/args.h"
#include "model/model_io.h"
#include "model/runtime.h"
#include "util/error.h"

namespace loopq::cli {

static const char* kInitHelp =
    "usage: loopq init (--config config.json | --preset ouro-1.4b|ouro-2.6b|ouro-tiny) -o DIR\n"
    "                  [--seed S] [--dtype F32|BF16|F16] [--init-std X] [--tokenizer PATH]\n"
    "Writes config.json and model.safetensors with normal(0, init-std) weights (seeded).\n";

static LoopLMConfig preset(const std::string& name) {
  LoopLMConfig c;
  c.rope_theta = 1e6;
  c.rms_norm_eps = 1e-6;
  c.total_ut_steps = 4;
  c.early_exit_threshold = 1.0;
  c.torch_dtype = "bfloat16";
  c.max_position_embeddings = 65536;
  if (name == "ouro-1.4b" || name == "ouro-2.6b") {
    c.vocab_size = 49152, c.hidden_size = 2048, c.num_heads = 16, c.num_kv_heads = 16;
    c.head_dim = 128, c.intermediate_size = 5632;
    c.num_layers = name == "ouro-1.4b" ? 24 : 48;
    c.eos_token_ids = {0};
    c.bos_token_id = 1;
    c.pad_token_id = 0;
  } else if (name == "ouro-tiny") {
    c.vocab_size = 4096, c.hidden_size = 256, c.num_heads = 4, c.num_kv_heads = 4;
    c.head_dim = 64, c.intermediate_size = 704, c.num_layers = 4;
    c.max_position_embeddings = 2048;
    c.eos_token_ids = {0};
  } else {
    throw Error("unknown --preset '" + name + "' (ouro-1.4b, ouro-2.6b, ouro-tiny)");
  }
  return c;
}

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
  LoopLMConfig cfg = args.has("config") ? parse_hf_config(args.get("config")) : preset(args.get("preset"));
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
