#include "model/model_io.h"

#include <ATen/CPUGeneratorImpl.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>

#include "io/atomic_file.h"
#include "io/dtype.h"
#include "io/finite.h"
#include "io/mapped_file.h"
#include "io/safetensors.h"
#include "util/error.h"

namespace fs = std::filesystem;

namespace loopq {
namespace {

const char* kLayerNorms[] = {"input_layernorm", "input_layernorm_2", "post_attention_layernorm",
                             "post_attention_layernorm_2"};

std::string layer_prefix(int64_t i) { return "model.layers." + std::to_string(i) + "."; }

std::string linear_name(int64_t layer, LinearSite site) {
  std::string group = (site == LinearSite::Gate || site == LinearSite::Up || site == LinearSite::Down)
                          ? "mlp." : "self_attn.";
  return layer_prefix(layer) + group + linear_site_name(site) + ".weight";
}

std::string shape_str(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

// Copies a checkpoint tensor into a new fp32 tensor after checking its shape and values.
at::Tensor read_f32(const io::Checkpoint& ckpt, const std::string& name,
                    const std::vector<int64_t>& shape) {
  const io::TensorInfo& info = ckpt.get(name);
  if (info.shape != shape)
    throw Error("tensor '" + name + "' has shape " + shape_str(info.shape) + ", config implies " +
                shape_str(shape));
  // A NaN or Inf weight makes every result nan without a word; refuse it here, so every library
  // caller gets the check. Scans the raw bits in steps, dropping the mapped pages behind it.
  io::check_finite(info, "", /*release=*/true);
  at::Tensor out = at::empty(shape, at::kFloat);
  const size_t n = static_cast<size_t>(out.numel());
  if (info.dtype != io::DType::F32 && info.dtype != io::DType::F16 && info.dtype != io::DType::BF16 &&
      info.dtype != io::DType::F64)
    throw Error("tensor '" + name + "' has dtype " + io::dtype_name(info.dtype) +
                ", expected F32, F16 or BF16");
  // In steps, each step's mapped pages dropped once copied: a 400 MB embedding never sits in
  // memory twice.
  const size_t esize = io::dtype_size(info.dtype);
  constexpr size_t kStep = size_t(1) << 22;  // elements
  float* dst = out.data_ptr<float>();
  for (size_t off = 0; off < n; off += kStep) {
    const size_t len = std::min(kStep, n - off);
    const uint8_t* src = info.data + off * esize;
    if (info.dtype == io::DType::BF16 && reinterpret_cast<uintptr_t>(src) % 2 == 0) {
      // Aligned bf16 (the normal case): ATen's vectorised, multi-threaded conversion.
      at::Tensor from = at::from_blob(const_cast<uint8_t*>(src), {int64_t(len)}, at::kBFloat16);
      at::from_blob(dst + off, {int64_t(len)}, at::kFloat).copy_(from);
    } else {
      io::convert_to_f32(info.dtype, src, dst + off, len);
    }
    io::release_pages(src, len * esize);
  }
  return out;
}

// A bf16 copy of a checkpoint tensor when that changes no value (BF16 in the file, or F32 whose
// low 16 bits are all zero); an undefined tensor otherwise. Shape and values are checked first.
// map: a BF16 tensor at an aligned offset is not copied but read from the file mapping (kept
// alive by the tensor), so only the pages actually read become resident: an embedding, whose
// rows are read a token at a time.
at::Tensor read_exact_bf16(const io::Checkpoint& ckpt, const std::string& name, const std::vector<int64_t>& shape,
                           bool map) {
  const io::TensorInfo& info = ckpt.get(name);
  if (info.shape != shape)
    throw Error("tensor '" + name + "' has shape " + shape_str(info.shape) + ", config implies " +
                shape_str(shape));
  if (info.dtype != io::DType::BF16 && info.dtype != io::DType::F32) return {};
  io::check_finite(info, "", /*release=*/true);
  if (map && info.dtype == io::DType::BF16 && reinterpret_cast<uintptr_t>(info.data) % 2 == 0)
    return at::from_blob(const_cast<uint8_t*>(info.data), shape, [keep = ckpt](void*) {},
                         at::TensorOptions().dtype(at::kBFloat16));
  at::Tensor out = at::empty(shape, at::kBFloat16);
  uint16_t* dst = static_cast<uint16_t*>(out.data_ptr());
  const size_t n = static_cast<size_t>(out.numel()), esize = io::dtype_size(info.dtype);
  constexpr size_t kStep = size_t(1) << 22;  // elements
  for (size_t off = 0; off < n; off += kStep) {
    const size_t len = std::min(kStep, n - off);
    const uint8_t* src = info.data + off * esize;
    if (info.dtype == io::DType::BF16) {
      std::memcpy(dst + off, src, len * 2);
    } else {
      for (size_t i = 0; i < len; ++i) {
        uint32_t bits;
        std::memcpy(&bits, src + 4 * i, 4);
        if (bits & 0xFFFFu) {
          io::release_pages(src, len * esize);
          return {};
        }
        dst[off + i] = uint16_t(bits >> 16);
      }
    }
    io::release_pages(src, len * esize);
  }
  return out;
}

// Copies a tensor's bytes after checking its dtype and shape exactly (packed integer weights).
at::Tensor read_raw(const io::Checkpoint& ckpt, const std::string& name, const std::string& dtype,
                    const std::vector<int64_t>& shape, const std::string& dir) {
  if (!ckpt.has(name)) throw Error(dir + ": missing tensor '" + name + "'");
  const io::TensorInfo& info = ckpt.get(name);
  if (io::dtype_name(info.dtype) != dtype)
    throw Error(dir + ": tensor '" + name + "' has dtype " + io::dtype_name(info.dtype) + ", expected " + dtype);
  if (info.shape != shape)
    throw Error(dir + ": tensor '" + name + "' has shape " + shape_str(info.shape) + ", expected " + shape_str(shape));
  const at::ScalarType st = dtype == "U8" ? at::kByte : dtype == "I8" ? at::kChar : at::kFloat;
  at::Tensor out = at::empty(shape, st);
  if (size_t(out.numel() * out.element_size()) != info.nbytes)
    throw Error(dir + ": tensor '" + name + "' byte size does not match its shape");
  std::memcpy(out.data_ptr(), info.data, info.nbytes);
  io::release_pages(info.data, info.nbytes);
  return out;
}

}  // namespace

std::string model_dir_of(const std::string& path) {
  if (fs::is_directory(path)) return path;
  if (fs::is_regular_file(path) && fs::path(path).filename() == "config.json")
    return fs::path(path).parent_path().string();
  throw Error(path + ": not a model directory");
}

OuroModel load_model(const std::string& path, const LoadOptions& options) {
  const std::string dir = model_dir_of(path);
  const std::string config_path = (fs::path(dir) / "config.json").string();
  if (!fs::exists(config_path)) throw Error(dir + ": no config.json in model directory");
  LoopLMConfig cfg = parse_hf_config(config_path);
  io::Checkpoint ckpt = io::Checkpoint::open(dir);

  const int64_t V = cfg.vocab_size, d = cfg.hidden_size, F = cfg.intermediate_size;
  if (options.compact_vocab && !options.head_factory)
    throw Error("load_model: compact_vocab needs a head_factory (DenseLinear computes in fp32)");
  std::set<std::string> expected;
  auto take = [&](const std::string& name, const std::vector<int64_t>& shape) {
    expected.insert(name);
    if (!ckpt.has(name)) throw Error(dir + ": missing tensor '" + name + "'");
    try {
      return read_f32(ckpt, name, shape);
    } catch (const Error& e) {
      throw Error(dir + ": " + e.what());
    }
  };

  // The embedding and LM head: bf16 under compact_vocab when exact, else fp32.
  auto take_vocab = [&](const std::string& name, bool map) {
    if (options.compact_vocab && ckpt.has(name)) {
      try {
        at::Tensor t = read_exact_bf16(ckpt, name, {V, d}, map);
        if (t.defined()) {
          expected.insert(name);
          return t;
        }
      } catch (const Error& e) {
        throw Error(dir + ": " + e.what());
      }
    }
    return take(name, {V, d});
  };
  auto make_head = [&](at::Tensor weight) -> LinearPtr {
    if (options.head_factory) return options.head_factory(std::move(weight));
    return std::make_shared<DenseLinear>(std::move(weight));
  };

  OuroWeights w;
  // A tied embedding is also the head, which reads every row each token: copy it.
  w.embed = take_vocab("model.embed_tokens.weight", /*map=*/!cfg.tie_word_embeddings);
  for (int64_t i = 0; i < cfg.num_layers; ++i) {
    LayerWeights L;
    at::Tensor* norms[] = {&L.input_norm, &L.attn_out_norm, &L.ffn_in_norm, &L.ffn_out_norm};
    for (int n = 0; n < 4; ++n) *norms[n] = take(layer_prefix(i) + kLayerNorms[n] + ".weight", {d});
    const std::pair<LinearSite, std::vector<int64_t>> linears[] = {
        {LinearSite::Q, {cfg.q_dim(), d}},  {LinearSite::K, {cfg.kv_dim(), d}},
        {LinearSite::V, {cfg.kv_dim(), d}}, {LinearSite::O, {d, cfg.q_dim()}},
        {LinearSite::Gate, {F, d}},         {LinearSite::Up, {F, d}},
        {LinearSite::Down, {d, F}}};
    for (const auto& [site, shape] : linears) {
      if (!options.linear_loader) {
        L.linear(site) = std::make_shared<DenseLinear>(take(linear_name(i, site), shape));
        continue;
      }
      std::string stem = linear_name(i, site);
      stem.resize(stem.size() - std::string(".weight").size());
      LinearLoadRequest req{stem, i, site, shape,
                            [&](const std::string& n) { return ckpt.has(n); },
                            take,
                            [&](const std::string& n, const std::string& dt, const std::vector<int64_t>& sh) {
                              expected.insert(n);
                              return read_raw(ckpt, n, dt, sh, dir);
                            }};
      L.linear(site) = options.linear_loader(req);
    }
    w.layers.push_back(std::move(L));
  }
  w.final_norm = take("model.norm.weight", {d});
  if (options.extra_loader) options.extra_loader(w, take);
  // The gate may be absent in converted files (§8); then cdf/expected exit modes are unavailable.
  if (ckpt.has("model.early_exit_gate.weight") || ckpt.has("model.early_exit_gate.bias")) {
    w.exit_gate_weight = take("model.early_exit_gate.weight", {1, d});
    w.exit_gate_bias = take("model.early_exit_gate.bias", {1});
  }
  if (ckpt.has("lm_head.weight") && !cfg.tie_word_embeddings) {
    w.lm_head = make_head(take_vocab("lm_head.weight", /*map=*/false));
  } else if (cfg.tie_word_embeddings) {
    if (ckpt.has("lm_head.weight")) expected.insert("lm_head.weight");  // tied copy, ignored
    w.lm_head = make_head(w.embed);
  } else {
    throw Error(dir + ": missing tensor 'lm_head.weight' (tie_word_embeddings is false)");
  }
  for (const auto& name : options.extra_names) expected.insert(name);
  for (const auto& name : ckpt.names())
    if (!expected.count(name)) throw Error(dir + ": unexpected tensor '" + name + "' in checkpoint");

  OuroModel model(cfg, std::move(w));
  if (options.device != at::Device(at::kCPU)) model.to(options.device);
  return model;
}

void save_model(const OuroModel& model, const std::string& dir, const std::string& dtype_name,
                const std::string& tokenizer_from) {
  io::DType dtype = io::dtype_from_name(dtype_name);
  at::ScalarType st;
  switch (dtype) {
    case io::DType::F32: st = at::kFloat; break;
    case io::DType::BF16: st = at::kBFloat16; break;
    case io::DType::F16: st = at::kHalf; break;
    default: throw Error("save_model: dtype must be F32, BF16 or F16, got " + dtype_name);
  }
  fs::create_directories(dir);
  const LoopLMConfig& cfg = model.config();
  std::vector<std::pair<std::string, at::Tensor>> tensors;
  for (const auto& [name, t] : named_tensors(model))
    tensors.emplace_back(name, t.detach().to(at::kCPU).to(st).contiguous());

  std::vector<io::TensorToWrite> out;
  for (const auto& [name, t] : tensors)
    out.push_back({name, dtype, t.sizes().vec(), t.data_ptr(), size_t(t.numel() * t.element_size())});
  LoopLMConfig saved = cfg;
  saved.torch_dtype = dtype == io::DType::F32 ? "float32" : dtype == io::DType::BF16 ? "bfloat16" : "float16";
  io::write_safetensors((fs::path(dir) / "model.safetensors").string(), out, {{"format", "pt"}});
  io::write_file_atomic((fs::path(dir) / "config.json").string(), config_to_hf_json(saved));
  if (!tokenizer_from.empty()) {
    for (const char* f : {"tokenizer.json", "tokenizer_config.json", "encoder.json", "vocab.bpe"}) {
      fs::path src = fs::path(tokenizer_from) / f;
      if (fs::is_regular_file(tokenizer_from) && fs::path(tokenizer_from).filename() == f) src = tokenizer_from;
      if (!fs::exists(src)) continue;
      std::ifstream in(src, std::ios::binary);
      std::string contents((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      io::write_file_atomic((fs::path(dir) / f).string(), contents);
    }
  }
}

std::vector<std::pair<std::string, at::Tensor>> named_tensors(const OuroModel& model) {
  const LoopLMConfig& cfg = model.config();
  const OuroWeights& w = model.weights();
  std::vector<std::pair<std::string, at::Tensor>> out;
  out.emplace_back("model.embed_tokens.weight", w.embed);
  for (int64_t i = 0; i < cfg.num_layers; ++i) {
    const LayerWeights& L = w.layers[i];
    const at::Tensor* norms[] = {&L.input_norm, &L.attn_out_norm, &L.ffn_in_norm, &L.ffn_out_norm};
    for (int n = 0; n < 4; ++n) out.emplace_back(layer_prefix(i) + kLayerNorms[n] + ".weight", *norms[n]);
    for (int s = 0; s < kNumLayerSites; ++s) {
      auto site = static_cast<LinearSite>(s);
      out.emplace_back(linear_name(i, site), L.linear(site)->dense_weight());
    }
  }
  out.emplace_back("model.norm.weight", w.final_norm);
  if (model.has_exit_gate()) {
    out.emplace_back("model.early_exit_gate.weight", w.exit_gate_weight);
    out.emplace_back("model.early_exit_gate.bias", w.exit_gate_bias);
  }
  if (!cfg.tie_word_embeddings) out.emplace_back("lm_head.weight", w.lm_head->dense_weight());
  return out;
}

OuroModel random_model(const LoopLMConfig& cfg, uint64_t seed, double init_std, bool random_norms) {
  validate_config(cfg);
  at::Generator gen = at::detail::createCPUGenerator(seed);
  auto normal = [&](std::vector<int64_t> shape) {
    at::Tensor t = at::empty(shape, at::kFloat);
    t.normal_(0.0, init_std, gen);
    return t;
  };
  auto norm_weight = [&]() {
    at::Tensor t = at::ones({cfg.hidden_size}, at::kFloat);
    if (random_norms) t.uniform_(0.5, 1.5, gen);
    return t;
  };
  const int64_t V = cfg.vocab_size, d = cfg.hidden_size, F = cfg.intermediate_size;
  OuroWeights w;
  w.embed = normal({V, d});
  for (int64_t i = 0; i < cfg.num_layers; ++i) {
    LayerWeights L;
    L.input_norm = norm_weight(), L.attn_out_norm = norm_weight();
    L.ffn_in_norm = norm_weight(), L.ffn_out_norm = norm_weight();
    L.q = std::make_shared<DenseLinear>(normal({cfg.q_dim(), d}));
    L.k = std::make_shared<DenseLinear>(normal({cfg.kv_dim(), d}));
    L.v = std::make_shared<DenseLinear>(normal({cfg.kv_dim(), d}));
    L.o = std::make_shared<DenseLinear>(normal({d, cfg.q_dim()}));
    L.gate = std::make_shared<DenseLinear>(normal({F, d}));
    L.up = std::make_shared<DenseLinear>(normal({F, d}));
    L.down = std::make_shared<DenseLinear>(normal({d, F}));
    w.layers.push_back(std::move(L));
  }
  w.final_norm = norm_weight();
  w.exit_gate_weight = normal({1, d});
  w.exit_gate_bias = at::zeros({1}, at::kFloat);
  w.lm_head = cfg.tie_word_embeddings ? std::make_shared<DenseLinear>(w.embed)
                                      : std::make_shared<DenseLinear>(normal({V, d}));
  return OuroModel(cfg, std::move(w));
}

}  // namespace loopq
