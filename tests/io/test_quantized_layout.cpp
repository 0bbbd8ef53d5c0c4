// The torch-free checks of a quantized model directory (quant/quantized_layout.h): a consistent
// 1-layer checkpoint passes, and each kind of bad tensor or block fails with its one-line error.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "quant/quant_config.h"
#include "quant/quantized_layout.h"
#include "util/error.h"

namespace {

using loopq::io::DType;
using loopq::io::TensorInfo;
using loopq::quant::QuantLayout;

loopq::LoopLMConfig mini() {  // every linear 8 x 8
  loopq::LoopLMConfig c;
  c.vocab_size = 16;
  c.hidden_size = 8;
  c.num_layers = 1;
  c.num_heads = 2;
  c.num_kv_heads = 2;
  c.head_dim = 4;
  c.intermediate_size = 8;
  return c;
}

const char* kSites[] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                        "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj"};

// Tensors of a checkpoint held in memory; TensorInfo points into `bytes`.
struct Ckpt {
  std::map<std::string, std::vector<uint8_t>> bytes;
  mutable std::map<std::string, TensorInfo> info;
  void put(const std::string& name, DType dt, std::vector<int64_t> shape, std::vector<uint8_t> b) {
    bytes[name] = std::move(b);
    info[name] = TensorInfo{name, dt, std::move(shape), bytes[name].data(), bytes[name].size()};
  }
  void put_f32(const std::string& name, std::vector<int64_t> shape, float v) {
    int64_t n = 1;
    for (int64_t s : shape) n *= s;
    std::vector<uint8_t> b(size_t(n) * 4);
    for (int64_t i = 0; i < n; ++i) std::memcpy(b.data() + 4 * i, &v, 4);
    put(name, DType::F32, std::move(shape), std::move(b));
  }
  void set_f32(const std::string& name, size_t i, float v) { std::memcpy(bytes[name].data() + 4 * i, &v, 4); }
  loopq::quant::TensorLookup lookup() const {
    return [this](const std::string& n) -> const TensorInfo* {
      auto it = info.find(n);
      if (it == info.end()) return nullptr;
      it->second.data = bytes.at(n).data();  // after copies of the Ckpt
      return &it->second;
    };
  }
};

std::string stem(const char* site) { return std::string("model.layers.0.") + site; }

// A valid checkpoint for layout q (codes all 0 after the offset, scales 0.5, zeros 0).
Ckpt valid(const QuantLayout& q) {
  Ckpt k;
  const int64_t groups = q.w_group_size > 0 ? 8 / q.w_group_size : 1;
  const int64_t offset = q.w_symmetric ? 0 : -(int64_t(1) << (q.w_bits - 1));
  for (const char* site : kSites) {
    const std::string s = stem(site);
    if (q.w_bits <= 4) {
      const uint8_t nib = uint8_t(offset & 0xF);
      k.put(s + ".qweight", DType::U8, {8, 4}, std::vector<uint8_t>(32, uint8_t(nib | (nib << 4))));
    } else {
      k.put(s + ".qweight", DType::I8, {8, 8}, std::vector<uint8_t>(64, uint8_t(int8_t(offset))));
    }
    k.put_f32(s + ".scales", {8, groups}, 0.5f);
    if (!q.w_symmetric) k.put_f32(s + ".zeros", {8, groups}, 0.f);
    if (q.act_param_sets > 0)
      k.put_f32(s + (q.act_static_scale ? ".loop_act_scale" : ".loop_act_clip"), {q.act_param_sets}, 0.9f);
    if (q.out_affine_sets > 0) {
      k.put_f32(s + ".loop_out_scale", {q.out_affine_sets, 8}, 1.f);
      k.put_f32(s + ".loop_out_bias", {q.out_affine_sets, 8}, 0.f);
    }
  }
  for (size_t l = 0; l < q.transform_groups.size(); ++l)
    for (int g = 0; g < 4; ++g)
      if (q.transform_groups[l][size_t(g)]) k.put_f32(loopq::quant::input_transform_name(int64_t(l), g), {8, 8}, 0.125f);
  for (size_t l = 0; l < q.kv_transform_layers.size(); ++l)
    for (int t = 0; t < 2; ++t)
      if (q.kv_transform_layers[l][size_t(t)]) k.put_f32(loopq::quant::kv_transform_name(int64_t(l), t), {2, 4, 4}, 0.25f);
  if (q.state_sets > 0) {
    k.put_f32("model.loop_state.weight", {q.state_sets, 8}, 1.f);
    k.put_f32("model.loop_state.bias", {q.state_sets, 8}, 0.f);
  }
  return k;
}

void check(const Ckpt& k, const QuantLayout& q) { loopq::quant::check_quantized_tensors("d", mini(), q, k.lookup()); }

void expect_error(const std::function<void()>& fn, const std::string& needle) {
  try {
    fn();
  } catch (const loopq::Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << "'" << needle << "' not in: " << e.what();
    return;
  }
  ADD_FAILURE() << "expected loopq::Error containing '" << needle << "'";
}

QuantLayout layout(int bits, bool sym, int64_t group = 0) {
  QuantLayout q;
  q.w_bits = bits;
  q.w_symmetric = sym;
  q.w_group_size = group;
  return q;
}

}  // namespace

TEST(QuantizedLayout, ValidCheckpointsPass) {
  for (const QuantLayout& q : {layout(4, true), layout(4, false, 4), layout(3, false), layout(2, true, 2),
                               layout(8, true), layout(6, false, 8)})
    EXPECT_NO_THROW(check(valid(q), q)) << q.w_bits << (q.w_symmetric ? " sym" : " asym");
  QuantLayout a = layout(4, true);
  a.act_param_sets = 2, a.out_affine_sets = 2, a.state_sets = 2;
  EXPECT_NO_THROW(check(valid(a), a));
  a.act_static_scale = true;
  EXPECT_NO_THROW(check(valid(a), a));
}

TEST(QuantizedLayout, MissingMistypedMisshapen) {
  const QuantLayout q = layout(4, true);
  Ckpt k = valid(q);
  k.info.erase(stem("mlp.up_proj") + ".qweight");
  expect_error([&] { check(k, q); }, "d: missing tensor 'model.layers.0.mlp.up_proj.qweight'");
  k = valid(q);
  k.info[stem("self_attn.k_proj") + ".qweight"].dtype = DType::I8;
  expect_error([&] { check(k, q); }, "k_proj.qweight' has dtype I8, expected U8");
  k = valid(q);
  k.info[stem("self_attn.o_proj") + ".scales"].shape = {8, 2};
  expect_error([&] { check(k, q); }, "o_proj.scales' has shape [8, 2], expected [8, 1]");
  QuantLayout asym = layout(4, false);
  expect_error([&] { check(valid(q), asym); }, "missing tensor 'model.layers.0.self_attn.q_proj.zeros'");
}

TEST(QuantizedLayout, CodesOutsideTheGrid) {
  for (const QuantLayout& q : {layout(3, true), layout(3, false), layout(6, true), layout(2, false)}) {
    Ckpt k = valid(q);
    // 0x7 nibble / 0x7F byte: code 7 (127) is past every grid narrower than its storage.
    k.bytes[stem("mlp.down_proj") + ".qweight"][5] = q.w_bits <= 4 ? 0x77 : 0x7F;
    expect_error([&] { check(k, q); }, "mlp.down_proj.qweight holds codes outside the " + std::to_string(q.w_bits) + "-bit grid");
  }
  // The full-width grids accept every stored byte.
  for (const QuantLayout& q : {layout(4, true), layout(4, false), layout(8, true), layout(8, false)}) {
    Ckpt k = valid(q);
    for (auto& b : k.bytes[stem("mlp.down_proj") + ".qweight"]) b = 0x80;
    EXPECT_NO_THROW(check(k, q));
  }
}

TEST(QuantizedLayout, ScalesZerosAndAdaptationValues) {
  const QuantLayout q = layout(4, false);
  for (float bad : {0.f, -1.f, NAN, INFINITY}) {
    Ckpt k = valid(q);
    k.set_f32(stem("self_attn.v_proj") + ".scales", 3, bad);
    expect_error([&] { check(k, q); }, "v_proj.scales must be finite and positive");
  }
  Ckpt k = valid(q);
  k.set_f32(stem("self_attn.v_proj") + ".zeros", 0, NAN);
  expect_error([&] { check(k, q); }, "v_proj.zeros must be finite");

  QuantLayout a = layout(4, true);
  a.act_param_sets = 2, a.out_affine_sets = 1, a.state_sets = 2;
  k = valid(a);
  k.set_f32(stem("mlp.gate_proj") + ".loop_act_clip", 1, 1.5f);
  expect_error([&] { check(k, a); }, "gate_proj.loop_act_clip must be in (0, 1]");
  k = valid(a);
  k.set_f32(stem("mlp.gate_proj") + ".loop_out_bias", 7, INFINITY);
  expect_error([&] { check(k, a); }, "d: model.layers.0.mlp.gate_proj.loop_out_bias holds NaN or Inf");
  k = valid(a);
  k.set_f32("model.loop_state.bias", 0, NAN);
  expect_error([&] { check(k, a); }, "d: model.loop_state.bias holds NaN or Inf");
  k = valid(a);
  k.info["model.loop_state.weight"].shape = {3, 8};
  expect_error([&] { check(k, a); }, "loop_state.weight' has shape [3, 8], config implies [2, 8]");
  k = valid(a);
  k.info["model.loop_state.weight"].dtype = DType::I32;
  expect_error([&] { check(k, a); }, "loop_state.weight' has dtype I32, expected F32, F16 or BF16");
  a.act_static_scale = true;
  k = valid(a);
  k.set_f32(stem("mlp.up_proj") + ".loop_act_scale", 0, -0.5f);
  expect_error([&] { check(k, a); }, "up_proj.loop_act_scale must be positive");
}

TEST(QuantizedLayout, OddInputCannotHoldInt4) {
  loopq::LoopLMConfig c = mini();
  c.hidden_size = 7;  // q_proj, the first site read, has input 7
  expect_error([&] { loopq::quant::check_quantized_tensors("d", c, layout(4, true), Ckpt().lookup()); },
               "odd input size cannot hold packed int4");
}

TEST(QuantizedLayout, ConfigBlock) {
  loopq::quant::QuantConfig qc;
  EXPECT_FALSE(loopq::quant::parse_quant_config_text(R"({"model_type": "ouro"})", "c.json", qc));
  expect_error([&] { loopq::quant::parse_quant_config_text("{\"quantization_config\": ", "c.json", qc); },
               "c.json: invalid JSON");
  expect_error([&] { loopq::quant::parse_quant_config_text(R"({"quantization_config": {"x": 1e999}})", "c.json", qc); },
               "c.json: invalid JSON");
  expect_error([&] { loopq::quant::parse_quant_config_text(R"({"quantization_config": {"quant_method": "gptq"}})", "c.json", qc); },
               "quant_method is not 'loopq'");
  // A written block reads back; then the checks against the model.
  loopq::quant::QuantConfig w;
  w.w_group_size = 4;
  const std::string text = "{\"quantization_config\": " + w.to_json().dump() + "}";
  ASSERT_TRUE(loopq::quant::parse_quant_config_text(text, "c.json", qc));
  EXPECT_EQ(qc.w_group_size, 4);
  EXPECT_NO_THROW(loopq::quant::check_quant_config("d", mini(), qc));
  qc.w_group_size = 3;
  expect_error([&] { loopq::quant::check_quant_config("d", mini(), qc); }, "d: quantization_config: --group-size 3");
  qc.w_group_size = 4;
  qc.rotate_groups.resize(2);
  expect_error([&] { loopq::quant::check_quant_config("d", mini(), qc); }, "selective_rotation has 2 layers, the model 1");
  qc.rotate_groups.clear();
  qc.act.bits = 8;
  qc.act.static_scale = true;
  expect_error([&] { loopq::quant::check_quant_config("d", mini(), qc); }, "static activations but no stored scales");
}

TEST(QuantizedLayout, InputTransforms) {
  QuantLayout q = layout(4, true);
  q.transform_groups = {{true, false, true, true}};
  EXPECT_NO_THROW(check(valid(q), q));
  Ckpt k = valid(q);
  k.info.erase("model.layers.0.mlp_in.input_transform");
  expect_error([&] { check(k, q); }, "d: missing tensor 'model.layers.0.mlp_in.input_transform'");
  k = valid(q);
  k.info["model.layers.0.attn_in.input_transform"].shape = {8, 4};
  expect_error([&] { check(k, q); }, "attn_in.input_transform' has shape [8, 4], expected [8, 8]");
  k = valid(q);
  k.info["model.layers.0.down_in.input_transform"].dtype = DType::F16;
  expect_error([&] { check(k, q); }, "down_in.input_transform' has dtype F16, expected F32");
  for (float bad : {NAN, INFINITY}) {
    k = valid(q);
    k.set_f32("model.layers.0.down_in.input_transform", 9, bad);
    expect_error([&] { check(k, q); }, "d: model.layers.0.down_in.input_transform holds NaN or Inf");
  }
  // The config's per-layer mask must match the model, and name known groups only.
  loopq::quant::QuantConfig qc;
  qc.method = loopq::quant::Method::QuaRotGPTQ;
  qc.transform_request = {true, false, false, false};
  qc.transform_groups = {{true, false, false, false}, {true, false, false, false}};
  expect_error([&] { loopq::quant::check_quant_config("d", mini(), qc); }, "input_transform has 2 layers, the model 1");
  const std::string text = "{\"quantization_config\": " + qc.to_json().dump() + "}";
  loopq::quant::QuantConfig back;
  ASSERT_TRUE(loopq::quant::parse_quant_config_text(text, "c.json", back));
  EXPECT_EQ(back.transform_request, qc.transform_request);
  EXPECT_EQ(back.transform_groups, qc.transform_groups);
  std::string bad = text;
  bad.replace(bad.find("\"attn_in\"]"), 9, "\"nope_in\"");
  expect_error([&] { loopq::quant::parse_quant_config_text(bad, "c.json", back); }, "unknown input group");
  qc.method = loopq::quant::Method::GPTQ;
  qc.transform_groups = {{true, false, false, false}};
  expect_error([&] { loopq::quant::check_quant_config("d", mini(), qc); }, "--input-transform needs a rotated method");
}

TEST(QuantizedLayout, KVTransforms) {
  QuantLayout q = layout(4, true);
  q.kv_transform_layers = {{true, true}};
  EXPECT_NO_THROW(check(valid(q), q));
  Ckpt k = valid(q);
  k.info.erase("model.layers.0.self_attn.k_transform");
  expect_error([&] { check(k, q); }, "d: missing tensor 'model.layers.0.self_attn.k_transform'");
  k = valid(q);
  k.info["model.layers.0.self_attn.v_transform"].shape = {2, 4, 2};
  expect_error([&] { check(k, q); }, "self_attn.v_transform' has shape [2, 4, 2], expected [2, 4, 4]");
  k = valid(q);
  k.info["model.layers.0.self_attn.k_transform"].dtype = DType::F16;
  expect_error([&] { check(k, q); }, "self_attn.k_transform' has dtype F16, expected F32");
  for (float bad : {NAN, INFINITY}) {
    k = valid(q);
    k.set_f32("model.layers.0.self_attn.v_transform", 5, bad);
    expect_error([&] { check(k, q); }, "d: model.layers.0.self_attn.v_transform holds NaN or Inf");
  }
  // The config's per-layer mask must match the model and name known tensors; a cache in FP has
  // nothing to shape.
  loopq::quant::QuantConfig qc;
  qc.method = loopq::quant::Method::QuaRotGPTQ;
  qc.kv.bits = 4;
  qc.kv.group_size = 8;
  qc.kv_transform_request = {true, false};
  qc.kv_transform_layers = {{true, false}, {false, false}};
  expect_error([&] { loopq::quant::check_quant_config("d", mini(), qc); }, "kv_transform has 2 layers, the model 1");
  qc.kv_transform_layers = {{true, false}};
  const std::string text = "{\"quantization_config\": " + qc.to_json().dump() + "}";
  loopq::quant::QuantConfig back;
  ASSERT_TRUE(loopq::quant::parse_quant_config_text(text, "c.json", back));
  EXPECT_EQ(back.kv_transform_request, qc.kv_transform_request);
  EXPECT_EQ(back.kv_transform_layers, qc.kv_transform_layers);
  std::string bad = text;
  bad.replace(bad.find("\"requested\":[\"k\"]"), 17, "\"requested\":[\"q\"]");
  expect_error([&] { loopq::quant::parse_quant_config_text(bad, "c.json", back); }, "unknown cache tensor");
  qc.kv.bits = 16;
  expect_error([&] { loopq::quant::check_quant_config("d", mini(), qc); }, "--kv-transform needs a quantized KV cache");
}
