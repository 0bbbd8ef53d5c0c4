// loopq inspect: what a checkpoint holds, read from headers only (no weights are loaded).
#include <cstdio>
#include <filesystem>
#include <map>

#include "cli/commands.h"
#include "cli/args.h"
#include "cli/common.h"
#include "io/atomic_file.h"
#include "model/presets.h"
#include <nlohmann/json.hpp>
#include "io/safetensors.h"
#include "model/config.h"
#include "model/model_io.h"
#include "quant/quantized_io.h"
#include "util/error.h"

namespace fs = std::filesystem;

namespace loopq::cli {

static const char* kInspectHelp =
    "usage: loopq inspect DIR [--loops T] [--json FILE]\n"
    "Prints the config, parameter counts per group, tensor shapes and dtypes (layer 0 stands for\n"
    "all layers), and the KV-cache bytes per token at T loops (default: total_ut_steps). For a\n"
    "quantized model also the method, activation mode, bit widths and the adaptation bytes.\n"
    "--json FILE writes {method, components, weights, act_mode, w_bits, a_bits, kv_bits,\n"
    "backbone_integer_tensors: [per layer], adaptation_bytes, model_bytes, adaptation_fraction,\n"
    "transform_bytes (dense input and KV-cache transforms, shared by all loops),\n"
    "ouro_1_4b_projection: {adaptation_bytes, model_bytes, adaptation_fraction, transform_bytes}} (file bytes).\n";

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
  Args args(argc, argv, {"loops", "model", "json"}, {});
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
  if (args.has("json")) check_output_path(args.get("json"), "json");
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
  // Integer backbone tensors per layer (one per physical linear) and adaptation bytes, from the file.
  std::vector<int64_t> backbone(size_t(cfg.num_layers), 0);
  int64_t adaptation_bytes = 0, transform_bytes = 0;
  for (const auto& name : ckpt.names()) {
    const io::TensorInfo& t = ckpt.get(name);
    if (quant::is_adaptation_tensor(name)) adaptation_bytes += int64_t(t.nbytes);
    for (const std::string transform : {".input_transform", ".k_transform", ".v_transform"})
      if (name.size() > transform.size() && name.compare(name.size() - transform.size(), transform.size(), transform) == 0)
        transform_bytes += int64_t(t.nbytes);
    const std::string suffix = ".qweight";
    if (name.rfind("model.layers.", 0) == 0 && name.size() > suffix.size() &&
        name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0) {
      const int64_t layer = std::stoll(name.substr(13, name.find('.', 13) - 13));
      if (layer >= 0 && layer < cfg.num_layers) backbone[size_t(layer)] += 1;
    }
  }
  nlohmann::json j;
  if (quantized) {
    const std::string comps = qc.method == quant::Method::LoopQ ? qc.loopq.components() : "";
    std::printf("quantized: %s%s W%dA%dKV%d%s, %s activations, calibration %s x %lld windows of %lld, %.1f s\n",
                quant::method_name(qc.method), comps.empty() ? "" : (" " + comps).c_str(), qc.w_bits, qc.act.bits,
                qc.kv.bits, qc.w_group_size ? (" g" + std::to_string(qc.w_group_size)).c_str() : "",
                qc.act.enabled() ? (qc.act.static_scale ? "static per-tensor" : "dynamic per-token") : "FP",
                qc.calib_file.empty() ? "none" : qc.calib_file.c_str(), (long long)qc.nsamples,
                (long long)qc.seqlen, qc.quantize_seconds);
    const quant::FormatBytes here = quant::quantized_format_bytes(cfg, qc);
    const quant::FormatBytes big = quant::quantized_format_bytes(preset_config("ouro-1.4b"), qc);
    std::printf("adaptations: %s of %s (%.3f%%); at the Ouro-1.4B shape %s of %s (%.4f%%)\n",
                human_bytes(double(adaptation_bytes)).c_str(), human_bytes(double(bytes)).c_str(),
                100.0 * double(adaptation_bytes) / double(bytes), human_bytes(double(big.adaptation)).c_str(),
                human_bytes(double(big.model)).c_str(), 100.0 * double(big.adaptation) / double(big.model));
    if (here.transform > 0)
      std::printf("input and KV transforms (shared by all loops): %s (%.3f%%); at the Ouro-1.4B shape %s (%.2f%%)\n",
                  human_bytes(double(transform_bytes)).c_str(), 100.0 * double(transform_bytes) / double(bytes),
                  human_bytes(double(big.transform)).c_str(), 100.0 * double(big.transform) / double(big.model));
    if (here.adaptation != adaptation_bytes)
      std::printf("warning: stored adaptation bytes %lld differ from the format's %lld\n", (long long)adaptation_bytes,
                  (long long)here.adaptation);
    j["method"] = quant::method_name(qc.method);
    j["components"] = comps;
    j["weights"] = qc.method == quant::Method::LoopQ || qc.method == quant::Method::LearnedStatic
                       ? (qc.loopq.gptq_weights ? "gptq" : "rtn") : "";
    j["act_mode"] = qc.act.enabled() ? (qc.act.static_scale ? "static" : "dynamic") : "none";
    j["w_bits"] = qc.w_bits, j["a_bits"] = qc.act.bits, j["kv_bits"] = qc.kv.bits;
    j["w_group_size"] = qc.w_group_size;
    j["adaptation_sets"] = {{"act", qc.act_param_sets}, {"out_affine", qc.out_affine_sets}, {"state", qc.state_sets}};
    j["transform_bytes"] = transform_bytes;
    j["ouro_1_4b_projection"] = {{"adaptation_bytes", big.adaptation}, {"model_bytes", big.model},
                                 {"adaptation_fraction", double(big.adaptation) / double(big.model)},
                                 {"transform_bytes", big.transform}};
  } else {
    j["method"] = "fp";
  }
  j["backbone_integer_tensors"] = backbone;
  j["adaptation_bytes"] = adaptation_bytes;
  j["model_bytes"] = bytes;
  j["adaptation_fraction"] = bytes > 0 ? double(adaptation_bytes) / double(bytes) : 0.0;
  j["parameters"] = total;
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
  if (args.has("json")) io::write_file_atomic(args.get("json"), j.dump(2) + "\n");
  return 0;
}

}  // namespace loopq::cli
