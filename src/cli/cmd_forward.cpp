// loopq forward: one forward pass; dumps per-loop logits, states and exit probabilities.
#include <cstdio>

#include "cli/commands.h"
#include "cli/common.h"
#include "io/safetensors.h"
#include "util/error.h"

namespace loopq::cli {

static const char* kForwardHelp =
    "usage: loopq forward --model DIR (--ids 1,2,3 | --text \"...\") [--dump out.safetensors]\n"
    "                     [--loops T] [--exit last|step:k|cdf:q|expected] [--threads N] [--device D]\n"
    "  --kernels packed|reference  how a quantized model runs: packed integer kernels (default)\n"
    "                              or the fake-quant reference path\n"
    "Runs the looped model once over the input. --dump writes F32 tensors:\n"
    "  logits [S,V] (last loop), logits.loop{t} [S,V], state.loop{t} [S,d] (t = 1..T),\n"
    "  exit_prob [T,S] (when the model has an exit gate), logits.exit [S,V] (the --exit selection).\n";

int cmd_forward(int argc, char** argv) {
  auto flags = kRunFlags;
  flags.insert({"ids", "text", "dump"});
  Args args(argc, argv, flags, {});
  if (args.help()) {
    std::fputs(kForwardHelp, stdout);
    return 0;
  }
  if (!args.positional().empty()) throw Error("unexpected argument '" + args.positional()[0] + "'");
  OuroModel model = load_model_from_args(args, true);
  std::vector<int64_t> ids = ids_from_args(args, model);
  ForwardOptions fo = forward_options_from_args(args, model);
  fo.loop_logits = true;
  ForwardResult r = model.forward(at::tensor(ids, at::kLong).view({1, -1}), fo);
  const int64_t T = int64_t(r.states.size()), S = int64_t(ids.size());

  // Summary: argmax of each loop at the last position.
  std::printf("tokens: %lld  loops: %lld\n", (long long)S, (long long)T);
  for (int64_t t = 0; t < T; ++t) {
    at::Tensor last = r.loop_logits[t][0][S - 1];
    std::printf("loop %lld: argmax %lld (logit %.4f)", (long long)t + 1,
                (long long)last.argmax().item<int64_t>(), last.max().item<float>());
    if (r.exit_probs.defined())
      std::printf("  exit_prob %.4f", r.exit_probs[t][0][S - 1].item<float>());
    std::printf("\n");
  }

  if (args.has("dump")) {
    std::vector<std::pair<std::string, at::Tensor>> named;
    named.emplace_back("logits", r.loop_logits[T - 1][0]);
    named.emplace_back("logits.exit", r.logits[0]);
    for (int64_t t = 0; t < T; ++t) {
      named.emplace_back("logits.loop" + std::to_string(t + 1), r.loop_logits[t][0]);
      named.emplace_back("state.loop" + std::to_string(t + 1), r.states[t][0]);
    }
    if (r.exit_probs.defined()) named.emplace_back("exit_prob", r.exit_probs.select(1, 0));
    std::vector<io::TensorToWrite> out;
    for (auto& [name, t] : named) {
      t = t.detach().to(at::kCPU, at::kFloat).contiguous();
      out.push_back({name, io::DType::F32, t.sizes().vec(), t.data_ptr(),
                     size_t(t.numel()) * sizeof(float)});
    }
    io::write_safetensors(args.get("dump"), out,
                          {{"loops", std::to_string(T)}, {"exit", fo.exit ? fo.exit->to_string() : "default"}});
    std::printf("wrote %s\n", args.get("dump").c_str());
  }
  return 0;
}

}  // namespace loopq::cli
