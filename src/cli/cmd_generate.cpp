// loopq generate: streams a continuation of a prompt and reports tokens/s.
#include <cstdio>

#include "cli/commands.h"
#include "cli/common.h"
#include "util/memory.h"
#include "model/generate.h"
#include "util/error.h"

namespace loopq::cli {

static const char* kGenerateHelp =
    "usage: loopq generate --model DIR (--prompt \"...\" | --ids 1,2,3) [--max-new-tokens N]\n"
    "                      [--temperature X] [--top-p P] [--top-k K] [--seed S] [--stop-ids 0,2]\n"
    "                      [--loops T] [--exit last|step:k|cdf:q|expected] [--threads N] [--device D]\n"
    "                      [--kernels packed|reference] [--kv-cache packed|fp32]\n"
    "  --kernels packed|reference  how a quantized model runs: packed integer kernels (default)\n"
    "                              or the fake-quant reference path (which implies --kv-cache fp32)\n"
    "Greedy by default (--temperature 0). Text streams to stdout; timing goes to stderr.\n"
    "Stops at the config's eos ids plus the tokenizer's <|endoftext|> and <|im_end|> unless\n"
    "--stop-ids is given (--stop-ids none disables stopping).\n"
    "--kv-cache: a model with 4- or 8-bit KV quantization stores its cache as packed integer codes\n"
    "(packed, the default); fp32 keeps the fake-quantized fp32 cache, the reference.\n";

int cmd_generate(int argc, char** argv) {
  auto flags = kRunFlags;
  flags.insert({"prompt", "ids", "max-new-tokens", "temperature", "top-p", "top-k", "seed", "stop-ids", "kv-cache"});
  Args args(argc, argv, flags, {});
  if (args.help()) {
    std::fputs(kGenerateHelp, stdout);
    return 0;
  }
  if (!args.positional().empty()) throw Error("unexpected argument '" + args.positional()[0] + "'");
  if (args.has("prompt") == args.has("ids")) throw Error("give exactly one of --prompt or --ids");
  GenerateOptions go;
  go.max_new_tokens = args.get_int("max-new-tokens", 64, 1, 1 << 20);
  go.sampling.temperature = args.get_double("temperature", 0.0, 0.0, 100.0);
  go.sampling.top_p = args.get_double("top-p", 1.0, 1e-6, 1.0);
  go.sampling.top_k = args.get_int("top-k", 0, 0, 1 << 30);
  go.sampling.seed = uint64_t(args.get_int("seed", 0, 0, INT64_MAX));

  const std::string kv_cache = args.get("kv-cache", args.get("kernels", "packed") == "reference" ? "fp32" : "packed");
  if (kv_cache != "packed" && kv_cache != "fp32") throw Error("--kv-cache must be packed or fp32, got '" + kv_cache + "'");
  OuroModel model = load_model_from_args(args, true);
  model.set_packed_kv(kv_cache == "packed");
  go.forward = forward_options_from_args(args, model);
  std::unique_ptr<tok::Tokenizer> tokenizer;
  if (args.has("prompt")) {
    tokenizer = load_model_tokenizer(args.require("model"));
    check_tokenizer_fits(*tokenizer, model.config());
  }
  std::vector<int64_t> prompt;
  if (args.has("prompt")) {
    for (int32_t v : tokenizer->encode(args.get("prompt"))) prompt.push_back(v);
    if (prompt.empty()) throw Error("--prompt encodes to no tokens");
  } else {
    for (long long v : parse_int_list(args.get("ids"), "--ids")) prompt.push_back(v);
  }
  check_ids_in_vocab(prompt, model.config());
  // generate() allocates the whole KV cache (every loop and layer, fp32) up front.
  const int64_t T = model.resolve_loops(go.forward.loops);
  if (model.device() == at::Device(at::kCPU))
    check_fits_in_memory(saturating_product({uint64_t(prompt.size() + go.max_new_tokens),
                                           uint64_t(model.config().kv_bytes_per_token(T))}),
                       "--max-new-tokens " + std::to_string(go.max_new_tokens) + " at " +
                           std::to_string(T) + " loops: the KV cache");

  if (args.has("stop-ids")) {
    if (args.get("stop-ids") != "none")
      for (long long v : parse_int_list(args.get("stop-ids"), "--stop-ids")) go.stop_ids.push_back(v);
  } else {
    go.stop_ids = model.config().eos_token_ids;
    if (tokenizer)
      for (const char* t : {"<|endoftext|>", "<|im_end|>"})
        if (auto id = tokenizer->token_to_id(t)) go.stop_ids.push_back(*id);
  }

  std::unique_ptr<tok::StreamDecoder> stream;
  if (tokenizer) {
    stream = std::make_unique<tok::StreamDecoder>(*tokenizer);
    std::fputs(args.get("prompt").c_str(), stdout);
  }
  GenerateStats st;
  generate(model, prompt, go, [&](int64_t id) {
    if (stream) std::fputs(stream->push(int32_t(id)).c_str(), stdout);
    else std::printf("%lld ", (long long)id);
    std::fflush(stdout);
    return true;
  }, &st);
  if (stream) std::fputs(stream->flush().c_str(), stdout);
  std::printf("\n");
  std::fflush(stdout);  // the text ends before the timing line on a shared terminal
  std::fprintf(stderr,
               "prompt %lld tokens, prefill %.3f s (%.1f tok/s); generated %lld tokens, decode %.1f tok/s; loops %lld; "
               "KV cache %s, %lld bytes/token\n",
               (long long)st.prompt_tokens, st.prefill_seconds,
               st.prompt_tokens / std::max(st.prefill_seconds, 1e-9), (long long)st.new_tokens,
               st.decode_steps / std::max(st.decode_seconds, 1e-9),
               (long long)model.resolve_loops(go.forward.loops), st.kv_format.c_str(),
               (long long)st.kv_bytes_per_token);
  return 0;
}

}  // namespace loopq::cli
