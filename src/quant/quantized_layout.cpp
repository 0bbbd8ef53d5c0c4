#include "quant/quantized_layout.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <vector>

#include "io/dtype.h"
#include "quant/quant_config.h"
#include "util/error.h"

namespace loopq::quant {
namespace {

std::string shape_str(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

// The checks (and messages) of model_io's read_raw: exact dtype and shape.
const io::TensorInfo& raw(const std::string& dir, const TensorLookup& find, const std::string& name,
                          io::DType dtype, const std::vector<int64_t>& shape) {
  const io::TensorInfo* t = find(name);
  if (!t) throw Error(dir + ": missing tensor '" + name + "'");
  if (t->dtype != dtype)
    throw Error(dir + ": tensor '" + name + "' has dtype " + io::dtype_name(t->dtype) + ", expected " +
                io::dtype_name(dtype));
  if (t->shape != shape)
    throw Error(dir + ": tensor '" + name + "' has shape " + shape_str(t->shape) + ", expected " + shape_str(shape));
  if (uint64_t(t->numel()) * io::dtype_size(dtype) != t->nbytes)
    throw Error(dir + ": tensor '" + name + "' byte size does not match its shape");
  return *t;
}

// The checks (and messages) of model_io's read_f32, then the values as fp32 (small tensors only).
std::vector<float> f32(const std::string& dir, const TensorLookup& find, const std::string& name,
                       const std::vector<int64_t>& shape) {
  const io::TensorInfo* t = find(name);
  if (!t) throw Error(dir + ": missing tensor '" + name + "'");
  if (t->shape != shape)
    throw Error(dir + ": tensor '" + name + "' has shape " + shape_str(t->shape) + ", config implies " +
                shape_str(shape));
  if (!io::dtype_is_float(t->dtype))
    throw Error(dir + ": tensor '" + name + "' has dtype " + io::dtype_name(t->dtype) + ", expected F32, F16 or BF16");
  std::vector<float> v(size_t(t->numel()));
  io::convert_to_f32(t->dtype, t->data, v.data(), v.size());
  return v;
}

float f32_at(const io::TensorInfo& t, size_t i) {  // data may be unaligned
  float x;
  std::memcpy(&x, t.data + 4 * i, 4);
  return x;
}

// Which stored bytes decode to codes inside the grid: stored = code + offset, as int8 (5-8 bits)
// or as two sign-extended nibbles (<= 4 bits).
std::array<bool, 256> valid_bytes(const QuantLayout& q) {
  const int64_t offset = q.w_symmetric ? 0 : -(int64_t(1) << (q.w_bits - 1));
  const int64_t qmin = q.w_symmetric ? -(int64_t(1) << (q.w_bits - 1)) : 0;
  const int64_t qmax = q.w_symmetric ? (int64_t(1) << (q.w_bits - 1)) - 1 : (int64_t(1) << q.w_bits) - 1;
  auto ok = [&](int64_t stored) { return stored - offset >= qmin && stored - offset <= qmax; };
  auto nibble = [](int v) { return v >= 8 ? v - 16 : v; };
  std::array<bool, 256> valid{};
  for (int b = 0; b < 256; ++b)
    valid[size_t(b)] = q.w_bits <= 4 ? ok(nibble(b & 0xF)) && ok(nibble(b >> 4)) : ok(int8_t(uint8_t(b)));
  return valid;
}

}  // namespace

QuantLayout quant_layout_of(const QuantConfig& qc) {
  QuantLayout q;
  q.w_bits = qc.w_bits;
  q.w_symmetric = qc.w_symmetric;
  q.w_group_size = qc.w_group_size;
  q.act_static_scale = qc.act.static_scale;
  q.act_param_sets = qc.act_param_sets;
  q.out_affine_sets = qc.out_affine_sets;
  q.state_sets = qc.state_sets;
  q.transform_groups = qc.transform_groups;
  q.kv_transform_layers = qc.kv_transform_layers;
  return q;
}

std::string kv_transform_name(int64_t layer, int tensor) {
  return "model.layers." + std::to_string(layer) + ".self_attn." + (tensor == 0 ? "k" : "v") + "_transform";
}

std::string input_transform_name(int64_t layer, int group) {
  static const char* names[] = {"attn_in", "o_in", "mlp_in", "down_in"};
  return "model.layers." + std::to_string(layer) + "." + names[group] + ".input_transform";
}

bool parse_quant_config_text(const std::string& text, const std::string& origin, QuantConfig& out) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw Error(origin + ": invalid JSON: " + e.what());
  }
  if (!j.is_object() || !j.contains("quantization_config")) return false;
  out = QuantConfig::from_json(j["quantization_config"]);
  return true;
}

void check_quant_config(const std::string& dir, const LoopLMConfig& c, const QuantConfig& qc) {
  try {
    qc.validate(c.hidden_size, c.intermediate_size, c.q_dim(), c.kv_dim());
  } catch (const Error& e) {
    throw Error(dir + ": quantization_config: " + e.what());
  }
  if (!qc.rotate_groups.empty() && int64_t(qc.rotate_groups.size()) != c.num_layers)
    throw Error(dir + ": quantization_config: selective_rotation has " + std::to_string(qc.rotate_groups.size()) +
                " layers, the model " + std::to_string(c.num_layers));
  if (!qc.transform_groups.empty() && int64_t(qc.transform_groups.size()) != c.num_layers)
    throw Error(dir + ": quantization_config: input_transform has " + std::to_string(qc.transform_groups.size()) +
                " layers, the model " + std::to_string(c.num_layers));
  if (!qc.kv_transform_layers.empty() && int64_t(qc.kv_transform_layers.size()) != c.num_layers)
    throw Error(dir + ": quantization_config: kv_transform has " + std::to_string(qc.kv_transform_layers.size()) +
                " layers, the model " + std::to_string(c.num_layers));
  if (qc.act.static_scale && qc.act.enabled() && qc.act_param_sets == 0)
    throw Error(dir + ": quantization_config: static activations but no stored scales (adaptations.act_param_sets is 0)");
}

void check_quantized_tensors(const std::string& dir, const LoopLMConfig& c, const QuantLayout& q,
                             const TensorLookup& find) {
  const int64_t d = c.hidden_size, F = c.intermediate_size;
  struct Site {
    const char* stem;
    int64_t out, in;
  };
  const Site sites[] = {{"self_attn.q_proj", c.q_dim(), d}, {"self_attn.k_proj", c.kv_dim(), d},
                        {"self_attn.v_proj", c.kv_dim(), d}, {"self_attn.o_proj", d, c.q_dim()},
                        {"mlp.gate_proj", F, d},             {"mlp.up_proj", F, d},
                        {"mlp.down_proj", d, F}};
  const std::array<bool, 256> valid = valid_bytes(q);
  bool all_valid = true;
  for (bool v : valid) all_valid = all_valid && v;
  auto finite = [&](const std::vector<float>& v, const std::string& name) {
    for (float x : v)
      if (!std::isfinite(x)) throw Error(dir + ": " + name + " holds NaN or Inf");
  };
  const int64_t group_in[] = {d, c.q_dim(), d, F};
  for (int64_t l = 0; l < std::min(c.num_layers, int64_t(q.transform_groups.size())); ++l)
    for (int g = 0; g < 4; ++g) {
      if (!q.transform_groups[size_t(l)][size_t(g)]) continue;
      const std::string name = input_transform_name(l, g);
      const io::TensorInfo& t = raw(dir, find, name, io::DType::F32, {group_in[g], group_in[g]});
      for (size_t i = 0; i < size_t(t.numel()); ++i)
        if (!std::isfinite(f32_at(t, i))) throw Error(dir + ": " + name + " holds NaN or Inf");
    }
  for (int64_t l = 0; l < std::min(c.num_layers, int64_t(q.kv_transform_layers.size())); ++l)
    for (int k = 0; k < 2; ++k) {
      if (!q.kv_transform_layers[size_t(l)][size_t(k)]) continue;
      const std::string name = kv_transform_name(l, k);
      const io::TensorInfo& t = raw(dir, find, name, io::DType::F32, {c.num_kv_heads, c.head_dim, c.head_dim});
      for (size_t i = 0; i < size_t(t.numel()); ++i)
        if (!std::isfinite(f32_at(t, i))) throw Error(dir + ": " + name + " holds NaN or Inf");
    }
  for (int64_t l = 0; l < c.num_layers; ++l) {
    for (const Site& s : sites) {
      const std::string stem = "model.layers." + std::to_string(l) + "." + s.stem;
      const int64_t groups = q.w_group_size > 0 ? s.in / q.w_group_size : 1;
      const io::TensorInfo* codes;
      if (q.w_bits <= 4) {
        if (s.in % 2 != 0) throw Error(dir + ": " + stem + ": odd input size cannot hold packed int4");
        codes = &raw(dir, find, stem + ".qweight", io::DType::U8, {s.out, s.in / 2});
      } else {
        codes = &raw(dir, find, stem + ".qweight", io::DType::I8, {s.out, s.in});
      }
      if (!all_valid)
        for (size_t i = 0; i < codes->nbytes; ++i)
          if (!valid[codes->data[i]])
            throw Error(dir + ": " + stem + ".qweight holds codes outside the " + std::to_string(q.w_bits) +
                        "-bit grid");
      const io::TensorInfo& scales = raw(dir, find, stem + ".scales", io::DType::F32, {s.out, groups});
      for (size_t i = 0; i < size_t(scales.numel()); ++i) {
        const float x = f32_at(scales, i);
        if (!std::isfinite(x) || x <= 0) throw Error(dir + ": " + stem + ".scales must be finite and positive");
      }
      if (!q.w_symmetric) {
        const io::TensorInfo& zeros = raw(dir, find, stem + ".zeros", io::DType::F32, {s.out, groups});
        for (size_t i = 0; i < size_t(zeros.numel()); ++i)
          if (!std::isfinite(f32_at(zeros, i))) throw Error(dir + ": " + stem + ".zeros must be finite");
      }
      // Adaptations: exactly the ones the config announces, with their announced shapes.
      if (q.act_param_sets > 0) {
        const std::string name = stem + (q.act_static_scale ? ".loop_act_scale" : ".loop_act_clip");
        const std::vector<float> v = f32(dir, find, name, {q.act_param_sets});
        finite(v, name);
        for (float x : v) {
          if (q.act_static_scale && x <= 0) throw Error(dir + ": " + name + " must be positive");
          if (!q.act_static_scale && (x <= 0 || x > 1)) throw Error(dir + ": " + name + " must be in (0, 1]");
        }
      }
      if (q.out_affine_sets > 0)
        for (const char* suffix : {".loop_out_scale", ".loop_out_bias"})
          finite(f32(dir, find, stem + suffix, {q.out_affine_sets, s.out}), stem + suffix);
    }
  }
  if (q.state_sets > 0)
    for (const char* name : {"model.loop_state.weight", "model.loop_state.bias"})
      finite(f32(dir, find, name, {q.state_sets, d}), name);
}

}  // namespace loopq::quant
