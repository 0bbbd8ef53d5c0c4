#include "quant/quant_config.h"

#include <algorithm>

#include <cctype>
#include <cmath>
#include <limits>
#include <type_traits>

#include "util/error.h"

namespace loopq::quant {
namespace {

// nlohmann's get<integer>() converts a JSON float (which a too-long integer literal becomes) with
// a plain cast: UB past the type's range, silent truncation within it. Integer fields go through
// here instead and must be JSON integers that fit T.
template <typename T>
T to_int(const nlohmann::json& v, const char* field) {
  bool ok = false;
  if (v.is_number_unsigned()) {
    ok = v.get<uint64_t>() <= uint64_t(std::numeric_limits<T>::max());
  } else if (v.is_number_integer()) {
    const int64_t i = v.get<int64_t>();
    ok = i < 0 ? std::is_signed_v<T> && i >= int64_t(std::numeric_limits<T>::min())
               : uint64_t(i) <= uint64_t(std::numeric_limits<T>::max());
  }
  if (!ok) throw Error(std::string("quantization_config.") + field + " must be an integer in range, got " + v.dump().substr(0, 40));
  return v.get<T>();
}

template <typename T>
T int_at(const nlohmann::json& obj, const char* key, const char* field) {
  return to_int<T>(obj.at(key), field);
}

// Like obj.value(key, fallback), which also throws for a non-object.
template <typename T>
T int_or(const nlohmann::json& obj, const char* key, T fallback, const char* field) {
  if (!obj.is_object() || !obj.contains(key)) return obj.value(key, fallback);
  return to_int<T>(obj[key], field);
}

}  // namespace

Method parse_method(const std::string& name) {
  if (name == "rtn") return Method::RTN;
  if (name == "smoothquant") return Method::SmoothQuant;
  if (name == "gptq") return Method::GPTQ;
  if (name == "quarot-rtn") return Method::QuaRotRTN;
  if (name == "quarot-gptq") return Method::QuaRotGPTQ;
  if (name == "loopq") return Method::LoopQ;
  if (name == "learned-static") return Method::LearnedStatic;
  throw Error("unknown quantization method '" + name +
              "' (rtn, smoothquant, gptq, quarot-rtn, quarot-gptq, loopq, learned-static)");
}

const char* method_name(Method m) {
  switch (m) {
    case Method::RTN: return "rtn";
    case Method::SmoothQuant: return "smoothquant";
    case Method::GPTQ: return "gptq";
    case Method::QuaRotRTN: return "quarot-rtn";
    case Method::QuaRotGPTQ: return "quarot-gptq";
    case Method::LoopQ: return "loopq";
    case Method::LearnedStatic: return "learned-static";
  }
  return "?";
}

std::string LoopQSpec::components() const {
  std::string s;
  if (A) s += 'A';
  if (B) s += 'B';
  if (C) s += 'C';
  if (D) s += 'D';
  return s;
}

LoopQSpec LoopQSpec::parse(const std::string& letters, bool gptq) {
  LoopQSpec spec;
  spec.A = spec.B = spec.C = spec.D = false;
  spec.gptq_weights = gptq;
  std::string seen;
  for (char ch : letters) {
    if (ch == ',' || ch == '+') continue;
    const char c = char(std::toupper(static_cast<unsigned char>(ch)));
    if (seen.find(c) != std::string::npos) throw Error(std::string("--loopq-components: '") + c + "' given twice");
    seen += c;
    switch (c) {
      case 'A': spec.A = true; break;
      case 'B': spec.B = true; break;
      case 'C': spec.C = true; break;
      case 'D': spec.D = true; break;
      default: throw Error(std::string("--loopq-components: unknown component '") + ch + "' (letters A, B, C, D)");
    }
  }
  return spec;
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
  if (act.static_scale) {
    if (!act.enabled()) throw Error("--act-mode static needs activation quantization (--a-bits below 16)");
    if (!act.symmetric) throw Error("--act-mode static uses a symmetric grid; drop --a-asym");
    if (act.group_size > 0) throw Error("--act-mode static is per tensor; drop --a-group-size");
  }
  if (act_samples < 16) throw Error("--act-samples must be >= 16");
  if (fit_windows < 1) throw Error("--fit-windows must be >= 1");
  for (double w : gptq_loop_weights)
    if (!(w >= 0) || !std::isfinite(w)) throw Error("--gptq-loop-weights must be finite and >= 0");
  if (transform_request != std::array<bool, 4>{} && !uses_rotation(method))
    throw Error("--input-transform needs a rotated method (quarot-rtn, quarot-gptq, loopq, learned-static)");
  const bool kv_transform = kv_transform_request != std::array<bool, 2>{};
  if (kv_transform && !uses_rotation(method))
    throw Error("--kv-transform needs a rotated method (quarot-rtn, quarot-gptq, loopq, learned-static)");
  if (kv_transform && kv.bits >= 16) throw Error("--kv-transform needs a quantized KV cache (--kv-bits below 16)");
  for (int64_t p : {act_param_sets, out_affine_sets, state_sets})
    if (p < 0 || p > 1024) throw Error("quantization_config: adaptation set count out of range");
}

nlohmann::json QuantConfig::to_json() const {
  nlohmann::json j;
  j["quant_method"] = "loopq";
  j["format_version"] = 1;
  j["method"] = method_name(method);
  j["weights"] = {{"bits", w_bits}, {"symmetric", w_symmetric}, {"group_size", w_group_size},
                  {"mse_clip_search", w_clip_search}, {"packing", w_bits <= 4 ? "int4_low_nibble_even" : "int8"}};
  j["activations"] = {{"bits", act.bits}, {"symmetric", act.symmetric}, {"clip", act.clip},
                      {"group_size", act.group_size},
                      {"mode", act.static_scale ? "static" : "dynamic"},
                      {"granularity", act.static_scale ? "per_tensor_static" : "per_token_dynamic"},
                      {"search_rows", act_samples}};
  j["adaptations"] = {{"act_param_sets", act_param_sets}, {"out_affine_sets", out_affine_sets},
                      {"state_sets", state_sets}, {"fit_windows", fit_windows}};
  j["kv_cache"] = {{"bits", kv.bits}, {"symmetric", kv.symmetric}, {"group_size", kv.group_size},
                   {"clip", kv.clip}, {"qk_head_hadamard", kv.rotate_qk}, {"per_loop", true}};
  if (method == Method::SmoothQuant) j["smoothquant"] = {{"alpha", smooth_alpha}};
  if (method == Method::LoopQ)
    j["loopq"] = {{"components", loopq.components()}, {"weights", loopq.gptq_weights ? "gptq" : "rtn"},
                  {"smoothing", loopq_smooth}, {"smoothing_report", smoothing_report}};
  if (method == Method::LearnedStatic) j["learned_static"] = {{"weights", loopq.gptq_weights ? "gptq" : "rtn"}};
  if ((method == Method::LoopQ && loopq.D) || method == Method::LearnedStatic)
    j["optimize"] = {{"loss", method == Method::LoopQ ? "trajectory" : "layer_local"},
                     {"steps", optimize.steps}, {"batch", optimize.batch}, {"seqlen", optimize.seqlen},
                     {"lr", optimize.lr}, {"kl_weight", optimize.kl_weight}, {"seed", optimize.seed},
                     {"weight_clipping", optimize.learn_weight_clipping}, {"learn_weights", optimize.learn_weights},
                     {"weight_lr", optimize.weight_lr}, {"report", optimize_report}};
  if (j.contains("optimize") && !optimize.valid_file.empty())
    j["optimize"]["valid"] = {{"file", optimize.valid_file}, {"windows", optimize.valid_seqlen > 0 ? int64_t(optimize.valid_ids.size()) / optimize.valid_seqlen : 0},
                              {"seqlen", optimize.valid_seqlen},
                              {"every", optimize.valid_every}, {"patience", optimize.patience}};
  if (!rotate_groups.empty()) {
    nlohmann::json mask = nlohmann::json::array();
    for (const auto& g : rotate_groups) mask.push_back({g[0], g[1], g[2], g[3]});
    j["selective_rotation"] = {{"groups", {"attn_in", "o_in", "mlp_in", "down_in"}}, {"rotate", mask},
                               {"measurements", rotation_report}};
  }
  if (transform_request != std::array<bool, 4>{}) {
    nlohmann::json req = nlohmann::json::array(), mask = nlohmann::json::array();
    const char* names[] = {"attn_in", "o_in", "mlp_in", "down_in"};
    for (int g = 0; g < 4; ++g)
      if (transform_request[size_t(g)]) req.push_back(names[g]);
    for (const auto& g : transform_groups) mask.push_back({g[0], g[1], g[2], g[3]});
    j["input_transform"] = {{"requested", req}, {"form", "closed_form_shaping_then_rotation"},
                            {"statistics", method == Method::LoopQ ? "loop_balanced" : "pooled"},
                            {"groups", {"attn_in", "o_in", "mlp_in", "down_in"}}, {"transform", mask},
                            {"measurements", transform_report}};
  }
  if (kv_transform_request != std::array<bool, 2>{}) {
    nlohmann::json req = nlohmann::json::array(), mask = nlohmann::json::array();
    if (kv_transform_request[0]) req.push_back("k");
    if (kv_transform_request[1]) req.push_back("v");
    for (const auto& b : kv_transform_layers) mask.push_back({b[0], b[1]});
    j["kv_transform"] = {{"requested", req}, {"form", "closed_form_shaping_per_kv_head"},
                         {"statistics", method == Method::LoopQ ? "loop_balanced" : "pooled"},
                         {"tensors", {"k", "v"}}, {"transform", mask}, {"measurements", kv_transform_report}};
  }
  if (method == Method::GPTQ || method == Method::QuaRotGPTQ ||
      ((method == Method::LoopQ || method == Method::LearnedStatic) && loopq.gptq_weights))
    j["gptq"] = {{"percdamp", percdamp}, {"block_size", block_size}, {"act_order", act_order},
                 {"static_groups", w_group_size > 0}, {"sequential", sequential},
                 {"trajectory", method == Method::LoopQ && loopq.D && trajectory_gptq},
                 {"loop_weights", gptq_loop_weights},
                 {"target", method == Method::LoopQ && loopq.D && trajectory_gptq && gptq_fp_target ? "fp_outputs" : "inputs"}};
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
    if (int_or(j, "format_version", 0, "format_version") != 1) throw Error("unsupported quantization_config.format_version");
    QuantConfig c;
    c.method = parse_method(j.at("method").get<std::string>());
    const auto& w = j.at("weights");
    c.w_bits = int_at<int>(w, "bits", "weights.bits");
    c.w_symmetric = w.at("symmetric").get<bool>();
    c.w_group_size = int_at<int64_t>(w, "group_size", "weights.group_size");
    c.w_clip_search = w.value("mse_clip_search", true);
    const auto& a = j.at("activations");
    c.act.bits = int_at<int>(a, "bits", "activations.bits");
    c.act.symmetric = a.at("symmetric").get<bool>();
    c.act.clip = a.at("clip").get<double>();
    c.act.group_size = int_or(a, "group_size", int64_t(0), "activations.group_size");
    const std::string mode = a.value("mode", std::string("dynamic"));
    if (mode != "dynamic" && mode != "static") throw Error("activations.mode must be dynamic or static");
    c.act.static_scale = mode == "static";
    c.act_samples = int_or(a, "search_rows", int64_t(1024), "activations.search_rows");
    if (j.contains("adaptations")) {
      const auto& ad = j["adaptations"];
      c.act_param_sets = int_or(ad, "act_param_sets", int64_t(0), "adaptations.act_param_sets");
      c.out_affine_sets = int_or(ad, "out_affine_sets", int64_t(0), "adaptations.out_affine_sets");
      c.state_sets = int_or(ad, "state_sets", int64_t(0), "adaptations.state_sets");
      c.fit_windows = int_or(ad, "fit_windows", int64_t(8), "adaptations.fit_windows");
    }
    if (j.contains("loopq")) {
      const auto& lq = j["loopq"];
      const std::string wq = lq.value("weights", std::string("gptq"));
      if (wq != "gptq" && wq != "rtn") throw Error("loopq.weights must be gptq or rtn");
      c.loopq = LoopQSpec::parse(lq.at("components").get<std::string>(), wq == "gptq");
      c.loopq_smooth = lq.value("smoothing", false);
      c.smoothing_report = lq.value("smoothing_report", nlohmann::json());
    }
    if (j.contains("learned_static"))
      c.loopq.gptq_weights = j["learned_static"].value("weights", std::string("gptq")) == "gptq";
    if (j.contains("optimize")) {
      const auto& o = j["optimize"];
      c.optimize.steps = int_or(o, "steps", c.optimize.steps, "optimize.steps");
      c.optimize.batch = int_or(o, "batch", c.optimize.batch, "optimize.batch");
      c.optimize.seqlen = int_or(o, "seqlen", c.optimize.seqlen, "optimize.seqlen");
      c.optimize.lr = o.value("lr", c.optimize.lr);
      c.optimize.kl_weight = o.value("kl_weight", c.optimize.kl_weight);
      c.optimize.seed = int_or(o, "seed", c.optimize.seed, "optimize.seed");
      c.optimize.learn_weight_clipping = o.value("weight_clipping", true);
      c.optimize.learn_weights = o.value("learn_weights", false);
      c.optimize.weight_lr = o.value("weight_lr", c.optimize.weight_lr);
      c.optimize_report = o.value("report", nlohmann::json());
      if (o.contains("valid")) {  // the guard's settings; the windows themselves are not stored
        const auto& v = o["valid"];
        c.optimize.valid_file = v.value("file", std::string());
        c.optimize.valid_every = int_or(v, "every", c.optimize.valid_every, "optimize.valid.every");
        c.optimize.patience = int_or(v, "patience", int64_t(0), "optimize.valid.patience");  // before it: none
      }
    }
    if (j.contains("selective_rotation")) {
      const auto& sr = j["selective_rotation"];
      for (const auto& row : sr.at("rotate")) {
        if (!row.is_array() || row.size() != 4) throw Error("selective_rotation.rotate rows must hold 4 booleans");
        c.rotate_groups.push_back({row[0].get<bool>(), row[1].get<bool>(), row[2].get<bool>(), row[3].get<bool>()});
      }
      c.rotation_report = sr.value("measurements", nlohmann::json());
    }
    if (j.contains("input_transform")) {
      const auto& it = j["input_transform"];
      const std::string names[] = {"attn_in", "o_in", "mlp_in", "down_in"};
      for (const auto& n : it.at("requested")) {
        const auto pos = std::find(std::begin(names), std::end(names), n.get<std::string>());
        if (pos == std::end(names)) throw Error("input_transform.requested names an unknown input group");
        c.transform_request[size_t(pos - std::begin(names))] = true;
      }
      for (const auto& row : it.at("transform")) {
        if (!row.is_array() || row.size() != 4) throw Error("input_transform.transform rows must hold 4 booleans");
        c.transform_groups.push_back({row[0].get<bool>(), row[1].get<bool>(), row[2].get<bool>(), row[3].get<bool>()});
      }
      c.transform_report = it.value("measurements", nlohmann::json());
    }
    if (j.contains("kv_transform")) {
      const auto& it = j["kv_transform"];
      for (const auto& n : it.at("requested")) {
        if (n == "k") c.kv_transform_request[0] = true;
        else if (n == "v") c.kv_transform_request[1] = true;
        else throw Error("kv_transform.requested names an unknown cache tensor");
      }
      for (const auto& row : it.at("transform")) {
        if (!row.is_array() || row.size() != 2 || !row[0].is_boolean() || !row[1].is_boolean())
          throw Error("kv_transform.transform rows must hold 2 booleans");
        c.kv_transform_layers.push_back({row[0].get<bool>(), row[1].get<bool>()});
      }
      c.kv_transform_report = it.value("measurements", nlohmann::json());
    }
    const auto& kv = j.at("kv_cache");
    c.kv.bits = int_at<int>(kv, "bits", "kv_cache.bits");
    c.kv.symmetric = kv.at("symmetric").get<bool>();
    c.kv.group_size = int_at<int64_t>(kv, "group_size", "kv_cache.group_size");
    c.kv.clip = kv.at("clip").get<double>();
    c.kv.rotate_qk = kv.value("qk_head_hadamard", false);
    if (j.contains("smoothquant")) c.smooth_alpha = j["smoothquant"].value("alpha", 0.5);
    if (j.contains("rotation")) c.rotation_seed = int_at<uint64_t>(j["rotation"], "seed", "rotation.seed");
    if (j.contains("gptq")) {
      c.percdamp = j["gptq"].value("percdamp", 0.01);
      c.block_size = int_or(j["gptq"], "block_size", int64_t(128), "gptq.block_size");
      c.act_order = j["gptq"].value("act_order", true);
      c.sequential = j["gptq"].value("sequential", std::string("layer"));
      c.trajectory_gptq = j["gptq"].value("trajectory", false);
      c.gptq_loop_weights = j["gptq"].value("loop_weights", std::vector<double>{});
      const std::string target = j["gptq"].value("target", std::string("inputs"));
      if (target != "inputs" && target != "fp_outputs") throw Error("config.json: gptq.target must be inputs or fp_outputs");
      c.gptq_fp_target = target == "fp_outputs";
    }
    if (j.contains("calibration")) {
      const auto& cal = j["calibration"];
      c.calib_file = cal.value("file", "");
      c.nsamples = int_or(cal, "nsamples", int64_t(0), "calibration.nsamples");
      c.seqlen = int_or(cal, "seqlen", int64_t(0), "calibration.seqlen");
      c.calib_seed = int_or(cal, "seed", uint64_t(0), "calibration.seed");
    }
    c.quantize_seconds = j.value("quantize_seconds", 0.0);
    return c;
  } catch (const nlohmann::json::exception& e) {
    throw Error(std::string("malformed quantization_config: ") + e.what());
  }
}

}  // namespace loopq::quant
