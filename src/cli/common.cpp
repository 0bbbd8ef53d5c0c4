#include "cli/common.h"

#include "quant/quantized_io.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "model/model_io.h"
#include "model/runtime.h"
#include "util/error.h"

namespace fs = std::filesystem;

namespace loopq::cli {

std::string read_text_file(const std::string& path) {
  if (fs::is_directory(path)) throw Error(path + ": is a directory, expected a file");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path + ": cannot open file");
  std::stringstream ss;
  ss << in.rdbuf();
  if (in.bad()) throw Error(path + ": read error");
  return ss.str();
}

OuroModel load_model_from_args(const Args& args, bool run) {
  init_threads(int(args.get_int("threads", 0, 0, 1024)));
  LoadOptions lo;
  lo.device = parse_device(args.get("device", "cpu"));
  const std::string path = args.require("model");
  quant::Kernels kernels = quant::Kernels::Reference;
  std::string fallback;  // why a quantized model runs on the reference path after all
  quant::QuantConfig qc;
  if (run) {
    kernels = quant::parse_kernels(args.get("kernels", "packed"));
    if (kernels == quant::Kernels::Packed && quant::read_quant_config(path, qc)) {
      fallback = quant::why_not_packed(qc);
      if (fallback.empty() && lo.device != at::Device(at::kCPU)) fallback = "models on " + lo.device.str();
      if (!fallback.empty()) kernels = quant::Kernels::Reference;
    }
  }
  OuroModel model = quant::load_any_model(path, lo, kernels);
  if (run && kernels == quant::Kernels::Reference) model.set_packed_kv(false);  // the whole fake-quant path
  // NaN/Inf weights are refused by the loader, naming the tensor (model_io's fp32 reader and
  // quant/quantized_layout.h for scales and adaptations). The notice comes after the load, so
  // that a bad directory still gets exactly one line: its error.
  if (!fallback.empty())
    std::fprintf(stderr, "loopq: note: the packed kernels do not run %s; using the reference (fake-quant) path\n",
                 fallback.c_str());
  return model;
}

ForwardOptions forward_options_from_args(const Args& args, const OuroModel& model) {
  ForwardOptions f;
  f.loops = args.get_int("loops", 0, 1, 1024);
  if (args.has("exit")) f.exit = parse_exit_mode(args.get("exit"));
  const int64_t T = model.resolve_loops(f.loops);
  if (T > model.config().total_ut_steps)
    std::fprintf(stderr, "loopq: warning: %lld loops is more than the %lld the model was trained with\n",
                 (long long)T, (long long)model.config().total_ut_steps);
  return f;
}

std::unique_ptr<tok::Tokenizer> load_model_tokenizer(const std::string& model_dir) {
  fs::path dir = fs::is_directory(model_dir) ? fs::path(model_dir) : fs::path(model_dir).parent_path();
  if (!fs::exists(dir / "tokenizer.json") && !fs::exists(dir / "encoder.json"))
    throw Error(dir.string() + ": no tokenizer.json or encoder.json beside the model (use --ids)");
  return tok::Tokenizer::load(dir.string());
}

void check_tokenizer_fits(const tok::Tokenizer& tokenizer, const LoopLMConfig& config) {
  if (int64_t(tokenizer.vocab_size()) > config.vocab_size)
    throw Error("tokenizer has " + std::to_string(tokenizer.vocab_size()) +
                " tokens but the model's vocab_size is " + std::to_string(config.vocab_size));
}

std::vector<int64_t> ids_from_args(const Args& args, const OuroModel& model) {
  const bool has_ids = args.has("ids"), has_text = args.has("text");
  if (has_ids == has_text) throw Error("give exactly one of --ids or --text");
  std::vector<int64_t> ids;
  if (has_ids) {
    for (long long v : parse_int_list(args.get("ids"), "--ids")) ids.push_back(v);
  } else {
    auto tokenizer = load_model_tokenizer(args.require("model"));
    check_tokenizer_fits(*tokenizer, model.config());
    for (int32_t v : tokenizer->encode(args.get("text"))) ids.push_back(v);
  }
  if (ids.empty()) throw Error("no tokens to run (empty input)");
  check_ids_in_vocab(ids, model.config());
  return ids;
}

void check_ids_in_vocab(const std::vector<int64_t>& ids, const LoopLMConfig& config) {
  for (int64_t v : ids)
    if (v < 0 || v >= config.vocab_size)
      throw Error("token id " + std::to_string(v) + " outside the model's vocab of " +
                  std::to_string(config.vocab_size));
}

void check_output_path(const std::string& path, const char* flag) {
  if (path.empty()) throw Error(std::string("--") + flag + " needs a file name");
  fs::path p(path);
  fs::path parent = p.has_parent_path() ? p.parent_path() : fs::path(".");
  if (!fs::is_directory(parent))
    throw Error(std::string("--") + flag + " " + path + ": directory " + parent.string() +
                " does not exist");
  if (fs::is_directory(p)) throw Error(std::string("--") + flag + " " + path + ": is a directory");
}

}  // namespace loopq::cli
