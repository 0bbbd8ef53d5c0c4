// HF config.json <-> LoopLMConfig. Field semantics follow configuration_ouro.py
// (docs/ouro-architecture.md §3.2): no silent fallback to class defaults for shape fields.
#include <algorithm>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "io/hf_config.h"
#include "util/error.h"

namespace loopq {
namespace {

using nlohmann::json;

// A JSON value for an error message: one line, bounded (values come from untrusted files).
std::string brief(const json& v) {
  std::string s = v.is_structured() ? std::string(v.is_array() ? "an array" : "an object") : v.dump();
  if (s.size() > 60) s = s.substr(0, 60) + "...";
  return s;
}

// Far above any real looped LM (Ouro 2.6B: 48 layers, 4 loops, vocab 49152), low enough that
// the products below cannot overflow int64 and that a config cannot ask for absurd work.
constexpr int64_t kMaxVocab = int64_t(1) << 24;  // the tokenizer's id limit
constexpr int64_t kMaxWidth = int64_t(1) << 20;  // hidden_size, intermediate_size
constexpr int64_t kMaxLayers = 1024;
constexpr int64_t kMaxHeads = 1024;
constexpr int64_t kMaxHeadDim = 4096;
constexpr int64_t kMaxLoops = 1024;  // same bound as --loops
constexpr int64_t kMaxPositions = int64_t(1) << 24;
constexpr uint64_t kMaxConfigBytes = 16u << 20;

int64_t require_int(const json& j, const char* key, const std::string& origin) {
  if (!j.contains(key)) throw Error(origin + ": missing required field '" + key + "'");
  const json& v = j[key];
  if (!v.is_number_integer())
    throw Error(origin + ": field '" + key + "' must be an integer, got " + brief(v));
  return v.get<int64_t>();
}

double get_number(const json& j, const char* key, double fallback, const std::string& origin) {
  if (!j.contains(key) || j[key].is_null()) return fallback;
  if (!j[key].is_number()) throw Error(origin + ": field '" + key + "' must be a number");
  return j[key].get<double>();
}

bool get_bool(const json& j, const char* key, bool fallback, const std::string& origin) {
  if (!j.contains(key) || j[key].is_null()) return fallback;
  if (!j[key].is_boolean()) throw Error(origin + ": field '" + key + "' must be true or false");
  return j[key].get<bool>();
}

std::optional<int64_t> get_opt_int(const json& j, const char* key, const std::string& origin) {
  if (!j.contains(key) || j[key].is_null()) return std::nullopt;
  if (!j[key].is_number_integer()) throw Error(origin + ": field '" + key + "' must be an integer");
  return j[key].get<int64_t>();
}

}  // namespace

void validate_config(const LoopLMConfig& c) {
  auto positive = [](int64_t v, const char* name) {
    if (v <= 0) throw Error(std::string("config: ") + name + " must be positive, got " + std::to_string(v));
  };
  positive(c.vocab_size, "vocab_size");
  positive(c.hidden_size, "hidden_size");
  positive(c.num_layers, "num_hidden_layers");
  positive(c.num_heads, "num_attention_heads");
  positive(c.num_kv_heads, "num_key_value_heads");
  positive(c.head_dim, "head_dim");
  positive(c.intermediate_size, "intermediate_size");
  positive(c.total_ut_steps, "total_ut_steps");
  positive(c.max_position_embeddings, "max_position_embeddings");
  auto at_most = [](int64_t v, int64_t limit, const char* name) {
    if (v > limit)
      throw Error(std::string("config: ") + name + " " + std::to_string(v) + " exceeds the limit of " +
                  std::to_string(limit));
  };
  at_most(c.vocab_size, kMaxVocab, "vocab_size");
  at_most(c.hidden_size, kMaxWidth, "hidden_size");
  at_most(c.intermediate_size, kMaxWidth, "intermediate_size");
  at_most(c.num_layers, kMaxLayers, "num_hidden_layers");
  at_most(c.num_heads, kMaxHeads, "num_attention_heads");
  at_most(c.num_kv_heads, kMaxHeads, "num_key_value_heads");
  at_most(c.head_dim, kMaxHeadDim, "head_dim");
  at_most(c.total_ut_steps, kMaxLoops, "total_ut_steps");
  at_most(c.max_position_embeddings, kMaxPositions, "max_position_embeddings");
  if (c.num_heads % c.num_kv_heads != 0)
    throw Error("config: num_attention_heads (" + std::to_string(c.num_heads) +
                ") is not divisible by num_key_value_heads (" + std::to_string(c.num_kv_heads) + ")");
  if (c.head_dim % 2 != 0)
    throw Error("config: head_dim must be even for rotary embeddings, got " + std::to_string(c.head_dim));
  if (!(c.rope_theta > 0)) throw Error("config: rope_theta must be positive");
  if (!(c.rms_norm_eps > 0)) throw Error("config: rms_norm_eps must be positive");
  if (c.early_exit_step && (*c.early_exit_step < 0))
    throw Error("config: early_exit_step must be >= 0");
  if (!std::isfinite(c.rope_theta) || !std::isfinite(c.rms_norm_eps))
    throw Error("config: rope_theta and rms_norm_eps must be finite");
  for (int64_t id : c.eos_token_ids)
    if (id < 0 || id >= c.vocab_size)
      throw Error("config: eos_token_id " + std::to_string(id) + " outside vocab of " +
                  std::to_string(c.vocab_size));
}

LoopLMConfig parse_hf_config_text(const std::string& text, const std::string& origin) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {  // parse_error, and out_of_range for number overflow
    throw Error(origin + ": invalid JSON (" + std::string(e.what()).substr(0, 120) + ")");
  }
  if (!j.is_object()) throw Error(origin + ": top level must be a JSON object");
  LoopLMConfig c;
  if (!j.contains("model_type") || !j["model_type"].is_string())
    throw Error(origin + ": missing string field 'model_type'");
  c.model_type = j["model_type"].get<std::string>();
  if (c.model_type != "ouro")
    throw Error(origin + ": unsupported model_type '" + c.model_type + "' (supported: ouro)");

  c.vocab_size = require_int(j, "vocab_size", origin);
  c.hidden_size = require_int(j, "hidden_size", origin);
  c.num_layers = require_int(j, "num_hidden_layers", origin);
  c.num_heads = require_int(j, "num_attention_heads", origin);
  c.num_kv_heads = j.contains("num_key_value_heads") && !j["num_key_value_heads"].is_null()
                       ? require_int(j, "num_key_value_heads", origin)
                       : c.num_heads;
  c.intermediate_size = require_int(j, "intermediate_size", origin);
  if (c.num_heads <= 0) throw Error(origin + ": num_attention_heads must be positive");
  if (j.contains("head_dim") && !j["head_dim"].is_null()) {
    c.head_dim = require_int(j, "head_dim", origin);
  } else {
    if (c.hidden_size % c.num_heads != 0)
      throw Error(origin + ": hidden_size (" + std::to_string(c.hidden_size) +
                  ") is not divisible by num_attention_heads (" + std::to_string(c.num_heads) +
                  ") and no head_dim is given");
    c.head_dim = c.hidden_size / c.num_heads;
  }
  c.max_position_embeddings = get_opt_int(j, "max_position_embeddings", origin).value_or(32768);
  c.rope_theta = get_number(j, "rope_theta", 10000.0, origin);
  c.rms_norm_eps = get_number(j, "rms_norm_eps", 1e-6, origin);
  c.tie_word_embeddings = get_bool(j, "tie_word_embeddings", false, origin);
  c.total_ut_steps = get_opt_int(j, "total_ut_steps", origin).value_or(4);
  if (j.contains("early_exit_threshold")) {
    if (j["early_exit_threshold"].is_null()) c.early_exit_threshold.reset();
    else c.early_exit_threshold = get_number(j, "early_exit_threshold", 1.0, origin);
  }
  c.early_exit_step = get_opt_int(j, "early_exit_step", origin);

  if (j.contains("hidden_act") && !j["hidden_act"].is_null()) {
    if (!j["hidden_act"].is_string() || j["hidden_act"].get<std::string>() != "silu")
      throw Error(origin + ": unsupported hidden_act " + brief(j["hidden_act"]) + " (only silu)");
  }
  if (get_bool(j, "use_sliding_window", false, origin))
    throw Error(origin + ": use_sliding_window=true is not supported");
  if (j.contains("rope_scaling") && !j["rope_scaling"].is_null())
    throw Error(origin + ": rope_scaling " + brief(j["rope_scaling"]) + " is not supported");
  if (j.contains("attention_bias") && get_bool(j, "attention_bias", false, origin))
    throw Error(origin + ": attention_bias=true is not supported");

  if (j.contains("eos_token_id") && !j["eos_token_id"].is_null()) {
    const json& e = j["eos_token_id"];
    if (e.is_number_integer()) c.eos_token_ids.push_back(e.get<int64_t>());
    else if (e.is_array()) {
      for (const auto& x : e) {
        if (!x.is_number_integer()) throw Error(origin + ": eos_token_id entries must be integers");
        c.eos_token_ids.push_back(x.get<int64_t>());
      }
    } else throw Error(origin + ": eos_token_id must be an integer or a list");
  }
  c.bos_token_id = get_opt_int(j, "bos_token_id", origin);
  c.pad_token_id = get_opt_int(j, "pad_token_id", origin);
  if (j.contains("torch_dtype") && j["torch_dtype"].is_string())
    c.torch_dtype = j["torch_dtype"].get<std::string>();
  try {
    validate_config(c);
  } catch (const Error& e) {
    throw Error(origin + ": " + e.what());
  }
  return c;
}

LoopLMConfig parse_hf_config(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) throw Error(path + ": cannot open config file");
  // Real configs are a few KB; refuse to read (and JSON-parse) a huge file.
  const auto size = static_cast<uint64_t>(std::max<std::streamoff>(in.tellg(), 0));
  if (size > kMaxConfigBytes)
    throw Error(path + ": config file is " + std::to_string(size) + " bytes, over the 16 MiB limit");
  in.seekg(0);
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_hf_config_text(ss.str(), path);
}

std::string config_to_hf_json(const LoopLMConfig& c) {
  json j;
  j["architectures"] = {"OuroForCausalLM"};
  j["model_type"] = c.model_type;
  j["vocab_size"] = c.vocab_size;
  j["hidden_size"] = c.hidden_size;
  j["num_hidden_layers"] = c.num_layers;
  j["num_attention_heads"] = c.num_heads;
  j["num_key_value_heads"] = c.num_kv_heads;
  j["head_dim"] = c.head_dim;
  j["intermediate_size"] = c.intermediate_size;
  j["max_position_embeddings"] = c.max_position_embeddings;
  j["rope_theta"] = c.rope_theta;
  j["rope_scaling"] = nullptr;
  j["rms_norm_eps"] = c.rms_norm_eps;
  j["hidden_act"] = "silu";
  j["tie_word_embeddings"] = c.tie_word_embeddings;
  j["total_ut_steps"] = c.total_ut_steps;
  j["early_exit_threshold"] = c.early_exit_threshold ? json(*c.early_exit_threshold) : json(nullptr);
  if (c.early_exit_step) j["early_exit_step"] = *c.early_exit_step;
  j["use_sliding_window"] = false;
  if (c.eos_token_ids.size() == 1) j["eos_token_id"] = c.eos_token_ids[0];
  else if (!c.eos_token_ids.empty()) j["eos_token_id"] = c.eos_token_ids;
  if (c.bos_token_id) j["bos_token_id"] = *c.bos_token_id;
  if (c.pad_token_id) j["pad_token_id"] = *c.pad_token_id;
  j["torch_dtype"] = c.torch_dtype;
  return j.dump(2) + "\n";
}

}  // namespace loopq
