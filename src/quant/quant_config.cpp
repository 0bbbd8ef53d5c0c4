#include "quant/quant_config.h"

#include "util/error.h"

namespace loopq::quant {

Method parse_method(const std::string& name) {
  if (name == "rtn") return Method::RTN;
  if (name == "smoothquant") return Method::SmoothQuant;
  if (name == "gptq") return Method::GPTQ;
  if (name == "quarot-rtn") return Method::QuaRotRTN;
  if (name == "quarot-gptq") return Method::QuaRotGPTQ;
  throw Error("unknown quantization method '" + name + "' (rtn, smoothquant, gptq, quarot-rtn, quarot-gptq)");
}

const char* method_name(Method m) {
  switch (m) {
    case Method::RTN: return "rtn";
    case Method::SmoothQuant: return "smoothquant";
    case Method::GPTQ: return "gptq";
    case Method::QuaRotRTN: return "quarot-rtn";
    case Method::QuaRotGPTQ: return "quarot-gptq";
  }
  return "?";
}

void QuantConfig::validate(int64_t hidden, int64_t intermediate, int64_t q_dim, int64_t kv_dim) const {
  auto bits_ok = [](int b) { return (b >= 2 && b <= 8) || b == 16; };
  if (!bits_ok(w_bits) || w_bits == 16) throw Error("--w-bits must be in [2, 8], got " + std::to_string(w_bits));
  if (!bits_ok(act.bits)) throw Error("--a-bits must be in [2, 8] or 16, got " + std::to_string(act.bits));
  if (!bits_ok(kv.bits)) throw Error("--kv-bits must be in [2, 8] or 16, got " + std::to_string(kv.bits));
  if (!(act.clip > 0 && act.clip <= 1)) throw Error("--a-clip must be in (0, 1]");
  if (!(kv.clip > 0 && kv.clip <= 1)) throw Error("--kv-clip must be in (0, 1]");
  if (w_group_size < 0) throw Error("--group-size must be >= 0");
  for (int64_t in : {hidden, intermediate, q_dim})
    if (w_group_size > 0 && in % w_group_size != 0)
      throw Error("--group-size " + std::to_string(w_group_size) + " does not divide the input size " +
                  std::to_string(in));
  if (kv.bits < 16 && kv.group_size > 0 && kv_dim % kv.group_size != 0)
    throw Error("--kv-group-size " + std::to_string(kv.group_size) + " does not divide kv_heads*head_dim = " +
                std::to_string(kv_dim));
  if (!(smooth_alpha >= 0 && smooth_alpha <= 1)) throw Error("--alpha must be in [0, 1]");
  if (!(percdamp >= 0)) throw Error("--percdamp must be >= 0");
  if (block_size <= 0) throw Error("--block-size must be positive");
  if (sequential != "none" && sequential != "layer" && sequential != "sublayer")
    throw Error("--sequential must be none, layer or sublayer");
}

nlohmann::json QuantConfig::to_json() const {
  nlohmann::json j;
  j["quant_method"] = "loopq";
  j["format_version"] = 1;
  j["method"] = method_name(method);
  j["weights"] = {{"bits", w_bits}, {"symmetric", w_symmetric}, {"group_size", w_group_size},
                  {"mse_clip_search", w_clip_search}, {"packing", w_bits <= 4 ? "int4_low_nibble_even" : "int8"}};
  j["activations"] = {{"bits", act.bits}, {"symmetric", act.symmetric}, {"clip", act.clip},
                      {"group_size", act.group_size}, {"granularity", "per_token_dynamic"}};
  j["kv_cache"] = {{"bits", kv.bits}, {"symmetric", kv.symmetric}, {"group_size", kv.group_size},
                   {"clip", kv.clip}, {"qk_head_hadamard", kv.rotate_qk}, {"per_loop", true}};
  if (method == Method::SmoothQuant) j["smoothquant"] = {{"alpha", smooth_alpha}};
  if (uses_gptq(method))
    j["gptq"] = {{"percdamp", percdamp}, {"block_size", block_size}, {"act_order", act_order},
                 {"static_groups", w_group_size > 0}, {"sequential", sequential}};
  if (uses_rotation(method))
    j["rotation"] = {{"seed", rotation_seed}, {"residual", "random_hadamard_online_at_q_k_v_gate_up_inputs"},
                     {"o_proj", "per_head_v_offline_plus_online_across_heads"}, {"down_proj", "online_hadamard"}};
  j["calibration"] = {{"file", calib_file}, {"nsamples", nsamples}, {"seqlen", seqlen}, {"seed", calib_seed}};
  j["modules_not_quantized"] = {"embed_tokens", "norms", "lm_head", "early_exit_gate"};
  j["quantize_seconds"] = quantize_seconds;
  return j;
}

QuantConfig QuantConfig::from_json(const nlohmann::json& j) {
  try {
    if (j.value("quant_method", "") != "loopq")
      throw Error("quantization_config.quant_method is not 'loopq'");
    if (j.value("format_version", 0) != 1) throw Error("unsupported quantization_config.format_version");
    QuantConfig c;
    c.method = parse_method(j.at("method").get<std::string>());
    const auto& w = j.at("weights");
    c.w_bits = w.at("bits").get<int>();
    c.w_symmetric = w.at("symmetric").get<bool>();
    c.w_group_size = w.at("group_size").get<int64_t>();
    c.w_clip_search = w.value("mse_clip_search", true);
    const auto& a = j.at("activations");
    c.act.bits = a.at("bits").get<int>();
    c.act.symmetric = a.at("symmetric").get<bool>();
    c.act.clip = a.at("clip").get<double>();
    c.act.group_size = a.value("group_size", int64_t(0));
    const auto& kv = j.at("kv_cache");
    c.kv.bits = kv.at("bits").get<int>();
    c.kv.symmetric = kv.at("symmetric").get<bool>();
    c.kv.group_size = kv.at("group_size").get<int64_t>();
    c.kv.clip = kv.at("clip").get<double>();
    c.kv.rotate_qk = kv.value("qk_head_hadamard", false);
    if (j.contains("smoothquant")) c.smooth_alpha = j["smoothquant"].value("alpha", 0.5);
    if (j.contains("rotation")) c.rotation_seed = j["rotation"].at("seed").get<uint64_t>();
    if (j.contains("gptq")) {
      c.percdamp = j["gptq"].value("percdamp", 0.01);
      c.block_size = j["gptq"].value("block_size", int64_t(128));
      c.act_order = j["gptq"].value("act_order", true);
      c.sequential = j["gptq"].value("sequential", std::string("layer"));
    }
    if (j.contains("calibration")) {
      const auto& cal = j["calibration"];
      c.calib_file = cal.value("file", "");
      c.nsamples = cal.value("nsamples", int64_t(0));
      c.seqlen = cal.value("seqlen", int64_t(0));
      c.calib_seed = cal.value("seed", uint64_t(0));
    }
    c.quantize_seconds = j.value("quantize_seconds", 0.0);
    return c;
  } catch (const nlohmann::json::exception& e) {
    throw Error(std::string("malformed quantization_config: ") + e.what());
  }
}

}  // namespace loopq::quant
