// loopq train: pretrain a looped LM from scratch into an HF-style model directory.
#include <cstdio>

#include "cli/args.h"
#include "cli/commands.h"
#include "model/presets.h"
#include "model/runtime.h"
#include "train/trainer.h"
#include "util/error.h"
#include "util/memory.h"

namespace loopq::cli {

static const char* kTrainHelp =
    "usage: loopq train --train FILE --valid FILE --tokenizer PATH -o DIR\n"
    "                   [--preset ouro-tiny | --config config.json] [--hidden D] [--layers N]\n"
    "                   [--heads H] [--kv-heads K] [--head-dim HD] [--intermediate F] [--loops T]\n"
    "                   [--seqlen 256] [--batch 16] [--steps 2000] [--warmup 100] [--lr 3e-3]\n"
    "                   [--min-lr-ratio 0.1] [--weight-decay 0.1] [--clip 1.0] [--init-std 0.02]\n"
    "                   [--loop-weights 1,2,3,4] [--gate-loss-weight 0.1] [--eval-every 200]\n"
    "                   [--eval-windows 16] [--ckpt-every 200] [--seed 0] [--resume] [--stop-after N]\n"
    "                   [--init-from DIR]\n"
    "                   [--device cpu|cuda] [--threads N] [--save-dtype F32|BF16]\n"
    "Loss: sum_t w_t * CE(loop t readout), weights normalised (default t/T ramp), plus a gate loss\n"
    "(BCE: exit after loop t when loop t+1 does not lower the token's CE). AdamW, warmup + cosine,\n"
    "global-norm clipping. Batches depend only on (seed, step), so --resume continues exactly.\n"
    "--init-from DIR starts from that model's weights (same shape) for a further training stage.\n"
    "--stop-after N checkpoints and exits after N steps of this invocation (train in slices).\n"
    "The model files in -o always hold the best model on the valid split so far.\n"
    "Vocabulary size comes from the tokenizer.\n";

int cmd_train(int argc, char** argv) {
  Args args(argc, argv,
            {"train", "valid", "tokenizer", "o", "out", "preset", "config", "hidden", "layers", "heads",
             "kv-heads", "head-dim", "intermediate", "loops", "seqlen", "batch", "steps", "warmup", "lr",
             "min-lr-ratio", "weight-decay", "clip", "init-std", "loop-weights", "gate-loss-weight",
             "eval-every", "eval-windows", "ckpt-every", "seed", "device", "threads", "save-dtype", "stop-after", "init-from"},
            {"resume"});
  if (args.help()) {
    std::fputs(kTrainHelp, stdout);
    return 0;
  }
  if (!args.positional().empty()) throw Error("unexpected argument '" + args.positional()[0] + "'");
  train::TrainOptions o;
  o.train_file = args.require("train");
  o.valid_file = args.require("valid");
  o.tokenizer_path = args.require("tokenizer");
  o.out_dir = args.has("o") ? args.get("o") : args.require("out");
  if (args.has("preset") && args.has("config")) throw Error("give at most one of --preset and --config");
  o.model = args.has("config") ? parse_hf_config(args.get("config")) : preset_config(args.get("preset", "ouro-tiny"));
  o.model.hidden_size = args.get_int("hidden", o.model.hidden_size, 1, 1 << 16);
  o.model.num_layers = args.get_int("layers", o.model.num_layers, 1, 1024);
  o.model.num_heads = args.get_int("heads", o.model.num_heads, 1, 1024);
  o.model.num_kv_heads = args.get_int("kv-heads", args.has("heads") ? o.model.num_heads : o.model.num_kv_heads, 1, 1024);
  o.model.head_dim = args.get_int("head-dim", o.model.hidden_size / o.model.num_heads, 2, 4096);
  o.model.intermediate_size = args.get_int("intermediate", o.model.intermediate_size, 1, 1 << 20);
  o.model.total_ut_steps = args.get_int("loops", o.model.total_ut_steps, 1, 64);
  o.seqlen = args.get_int("seqlen", o.seqlen, 2, 1 << 16);
  o.batch = args.get_int("batch", o.batch, 1, 1 << 16);
  o.steps = args.get_int("steps", o.steps, 1, 1LL << 40);
  o.warmup = args.get_int("warmup", o.warmup, 0, 1LL << 40);
  o.lr = args.get_double("lr", o.lr, 0, 10);
  o.min_lr_ratio = args.get_double("min-lr-ratio", o.min_lr_ratio, 0, 1);
  o.weight_decay = args.get_double("weight-decay", o.weight_decay, 0, 10);
  o.clip = args.get_double("clip", o.clip, 0, 1e6);
  o.init_std = args.get_double("init-std", o.init_std, 0, 10);
  if (args.has("loop-weights"))
    for (const auto& w : parse_int_list(args.get("loop-weights"), "--loop-weights")) o.loop_weights.push_back(double(w));
  o.gate_loss_weight = args.get_double("gate-loss-weight", o.gate_loss_weight, 0, 100);
  o.eval_every = args.get_int("eval-every", o.eval_every, 1, 1LL << 40);
  o.eval_windows = args.get_int("eval-windows", o.eval_windows, 1, 1 << 20);
  o.ckpt_every = args.get_int("ckpt-every", o.ckpt_every, 1, 1LL << 40);
  o.seed = uint64_t(args.get_int("seed", 0, 0, INT64_MAX));
  o.resume = args.has("resume");
  o.stop_after = args.get_int("stop-after", 0, 0, 1LL << 40);
  o.init_from = args.get("init-from");
  o.device = args.get("device", "cpu");
  o.save_dtype = args.get("save-dtype", "F32");
  if (o.save_dtype != "F32" && o.save_dtype != "BF16") throw Error("--save-dtype must be F32 or BF16");
  if (o.device == "cpu") {
    // A lower bound: autograd keeps every loop's and layer's fp32 attention scores for backward.
    const LoopLMConfig& m = o.model;
    check_fits_in_memory(
        saturating_product({uint64_t(o.batch), uint64_t(m.num_heads), uint64_t(o.seqlen),
                            uint64_t(o.seqlen), 4, uint64_t(m.total_ut_steps), uint64_t(m.num_layers)}),
        "--batch " + std::to_string(o.batch) + " x --seqlen " + std::to_string(o.seqlen) +
            ": training's attention scores");
  }
  init_threads(int(args.get_int("threads", 0, 0, 1024)));
  train::run_training(o);
  return 0;
}

}  // namespace loopq::cli
