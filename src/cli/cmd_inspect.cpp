// loopq inspect: what a checkpoint holds, read from headers only (no weights are loaded).
#include <cstdio>
#include <filesystem>
#include <map>

#include "cli/commands.h"
#include "cli/args.h"
#include "io/safetensors.h"
#include "model/config.h"
#include "model/model_io.h"
#include "quant/quantized_io.h"
#include "util/error.h"

namespace fs = std::filesystem;

namespace loopq::cli {

static const char* kInspectHelp =
    "usage: loopq inspect DIR [--loops T]\n"
    "Prints the config, parameter counts per group, tensor shapes and dtypes (layer 0 stands for\n"
    "all layers), and the KV-cache bytes per token at T loops (default: total_ut_steps).\n";

static std::string group_of(const std::string& name) {
  if (name.rfind("model.layers.", 0) == 0) return "layers";
  if (name == "model.embed_tokens.weight") return "embed_tokens";
  if (name == "lm_head.weight") return "lm_head";
  if (name.rfind("model.early_exit_gate", 0) == 0) return "early_exit_gate";
  if (name == "model.norm.weight") return "norm";
  return "other";
}

static std::string human_bytes(double b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB"};
  int u = 0;
  while (b >= 1024 && u < 3) b /= 1024, ++u;
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f %s", b, units[u]);
  return buf;
}

int cmd_inspect(int argc, char** argv) {
  Args args(argc, argv, {"loops", "model"}, {});
  if (args.help()) {
    std::fputs(kInspectHelp, stdout);
    return 0;
  }
  std::string path = args.has("model") ? args.get("model") : "";
  if (path.empty()) {
    if (args.positional().size() != 1) throw Error("give one model directory (see --help)");
    path = args.positional()[0];
  }
  const std::string dir = model_dir_of(path);
  LoopLMConfig cfg = parse_hf_config((fs::path(dir) / "config.json").string());
  io::Checkpoint ckpt = io::Checkpoint::open(dir);
  const int64_t T = args.get_int("loops", cfg.total_ut_steps, 1, 1024);

  std::printf("model: %s\n", dir.c_str());
  std::printf("config: %s, vocab %lld, hidden %lld, layers %lld x loops %lld, heads %lld (kv %lld) x %lld, "
              "intermediate %lld, rope_theta %g, tie_word_embeddings %s, exit_threshold %s\n",
              cfg.model_type.c_str(), (long long)cfg.vocab_size, (long long)cfg.hidden_size,
              (long long)cfg.num_layers, (long long)cfg.total_ut_steps, (long long)cfg.num_heads,
              (long long)cfg.num_kv_heads, (long long)cfg.head_dim, (long long)cfg.intermediate_size,
              cfg.rope_theta, cfg.tie_word_embeddings ? "true" : "false",
              cfg.early_exit_threshold ? std::to_string(*cfg.early_exit_threshold).c_str() : "null");

  std::map<std::string, int64_t> params, tensors;
  std::map<std::string, int64_t> dtype_count;
  int64_t total = 0, bytes = 0;
  for (const auto& name : ckpt.names()) {
    const io::TensorInfo& t = ckpt.get(name);
    params[group_of(name)] += t.numel();
    tensors[group_of(name)] += 1;
    dtype_count[io::dtype_name(t.dtype)] += 1;
    total += t.numel();
    bytes += int64_t(t.nbytes);
  }
  quant::QuantConfig qc;
  const bool quantized = quant::read_quant_config(dir, qc);
  std::printf("tensors: %zu, %s: %lld, data: %s\n", ckpt.names().size(),
              quantized ? "stored elements (packed)" : "parameters", (long long)total,
              human_bytes(double(bytes)).c_str());
  if (quantized)
    std::printf("quantized: %s W%dA%dKV%d%s, calibration %s x %lld windows of %lld, %.1f s\n",
                quant::method_name(qc.method), qc.w_bits, qc.act.bits, qc.kv.bits,
                qc.w_group_size ? (" g" + std::to_string(qc.w_group_size)).c_str() : "",
                qc.calib_file.empty() ? "none" : qc.calib_file.c_str(), (long long)qc.nsamples,
                (long long)qc.seqlen, qc.quantize_seconds);
  for (const auto& [g, n] : params)
    std::printf("  %-16s %6lld tensors %15lld params\n", g.c_str(), (long long)tensors[g], (long long)n);
  std::printf("dtypes:");
  for (const auto& [d, n] : dtype_count) std::printf(" %s x%lld", d.c_str(), (long long)n);
  std::printf("\nshapes (non-layer tensors and layer 0):\n");
  for (const auto& name : ckpt.names()) {
    if (name.rfind("model.layers.", 0) == 0 && name.rfind("model.layers.0.", 0) != 0) continue;
    const io::TensorInfo& t = ckpt.get(name);
    std::string shape = "[";
    for (size_t i = 0; i < t.shape.size(); ++i) shape += (i ? ", " : "") + std::to_string(t.shape[i]);
    std::printf("  %-52s %-5s %s]\n", name.c_str(), io::dtype_name(t.dtype), shape.c_str());
  }
  std::printf("kv cache: %lld slots (%lld loops x %lld layers); per token: %s fp32, %s bf16, %s int4 "
              "(+ scales)\n",
              (long long)(T * cfg.num_layers), (long long)T, (long long)cfg.num_layers,
              human_bytes(double(cfg.kv_bytes_per_token(T, 4))).c_str(),
              human_bytes(double(cfg.kv_bytes_per_token(T, 2))).c_str(),
              human_bytes(double(cfg.kv_bytes_per_token(T, 4)) / 8).c_str());
  return 0;
}

}  // namespace loopq::cli
