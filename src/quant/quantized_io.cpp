#include "quant/quantized_io.h"

#include <malloc.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "io/atomic_file.h"
#include "io/safetensors.h"
#include "kernels/cpu/kernels.h"
#include "quant/calibration.h"
#include "quant/packed_dense_linear.h"
#include "quant/packed_linear.h"
#include "quant/ptq.h"
#include "quant/quantized_layout.h"
#include "quant/quarot.h"
#include "util/error.h"

namespace fs = std::filesystem;

namespace loopq::quant {
namespace {

std::string read_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) throw Error(p.string() + ": cannot read");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Stored codes are shifted into the signed range [-2^(b-1), 2^(b-1)-1] for both grids.
int64_t code_offset(const Grid& g) { return g.symmetric ? 0 : -(int64_t(1) << (g.bits - 1)); }

struct Owned {  // tensors kept alive until the file is written
  std::vector<at::Tensor> keep;
  std::vector<io::TensorToWrite> out;
  void add(const std::string& name, at::Tensor t, io::DType dt) {
    t = t.detach().to(at::kCPU).contiguous();
    keep.push_back(t);
    out.push_back({name, dt, t.sizes().vec(), t.data_ptr(), size_t(t.numel() * t.element_size())});
  }
};

std::string stem_of(int64_t layer, LinearSite site) {
  const bool mlp = site == LinearSite::Gate || site == LinearSite::Up || site == LinearSite::Down;
  return "model.layers." + std::to_string(layer) + (mlp ? ".mlp." : ".self_attn.") + linear_site_name(site);
}

const char* kStateWeight = "model.loop_state.weight";  // [P, d]
const char* kStateBias = "model.loop_state.bias";      // [P, d]

std::vector<std::pair<std::string, const at::Tensor*>> adaptation_tensors(const SiteAdaptation& a) {
  return {{".loop_act_scale", &a.act_scale}, {".loop_act_clip", &a.act_clip},
          {".loop_out_scale", &a.out_scale}, {".loop_out_bias", &a.out_bias}};
}

}  // namespace

bool is_adaptation_tensor(const std::string& name) {
  return name.find(".loop_") != std::string::npos || name.rfind("model.loop_state.", 0) == 0;
}

FormatBytes quantized_format_bytes(const LoopLMConfig& c, const QuantConfig& q) {
  FormatBytes b;
  const int64_t d = c.hidden_size, F = c.intermediate_size, V = c.vocab_size;
  const std::pair<int64_t, int64_t> shapes[] = {{c.q_dim(), d}, {c.kv_dim(), d}, {c.kv_dim(), d}, {d, c.q_dim()},
                                                {F, d},         {F, d},          {d, F}};
  for (const auto& [out, in] : shapes) {
    const int64_t groups = q.w_group_size > 0 ? in / q.w_group_size : 1;
    const int64_t codes = q.w_bits <= 4 ? out * in / 2 : out * in;
    const int64_t scales = out * groups * 4 * (q.w_symmetric ? 1 : 2);
    const int64_t adapt = q.act_param_sets * 4 + q.out_affine_sets * out * 2 * 2;  // affines in fp16
    b.model += c.num_layers * (codes + scales + adapt);
    b.adaptation += c.num_layers * adapt;
  }
  // Input transforms: fp32 [in, in] per transformed group (the backbone's, not an adaptation).
  const int64_t group_in[] = {d, c.q_dim(), d, F};
  // Another shape (a projection) has other layers: there every requested group counts.
  const bool own = int64_t(q.transform_groups.size()) == c.num_layers;
  for (int64_t l = 0; l < c.num_layers; ++l)
    for (int g = 0; g < 4; ++g)
      if (own ? q.transform_groups[size_t(l)][size_t(g)] : q.transform_request[size_t(g)])
        b.transform += group_in[g] * group_in[g] * 4;
  // KV transforms: fp32 [kv_heads, head_dim, head_dim] per kept (layer, k|v).
  const bool own_kv = int64_t(q.kv_transform_layers.size()) == c.num_layers;
  for (int64_t l = 0; l < c.num_layers; ++l)
    for (int k = 0; k < 2; ++k)
      if (own_kv ? q.kv_transform_layers[size_t(l)][size_t(k)] : q.kv_transform_request[size_t(k)])
        b.transform += c.num_kv_heads * c.head_dim * c.head_dim * 4;
  b.model += b.transform;
  const int64_t state = q.state_sets * d * 4 * 2;
  b.adaptation += state;
  // The embedding and head of a bf16-born model are stored in bf16 (save_quantized_model).
  b.model += state + V * d * 2 /*embed*/ + (c.tie_word_embeddings ? 0 : V * d * 2) + d * 4 /*norm*/ +
             c.num_layers * 4 * d * 4 /*layer norms*/;
  return b;
}

bool read_quant_config(const std::string& path, QuantConfig& out) {
  const fs::path cfg = fs::path(model_dir_of(path)) / "config.json";
  if (!fs::exists(cfg)) return false;
  return parse_quant_config_text(read_text(cfg), cfg.string(), out);
}

void save_quantized_model(const OuroModel& model, const QuantConfig& cfg, const std::string& dir,
                          const std::string& tokenizer_from) {
  const fs::path target(dir);
  if (fs::exists(target) && !(fs::is_directory(target) && fs::is_empty(target)))
    throw Error(dir + " already exists and is not empty; choose a new -o");
  // Staged in a hidden folder beside `dir` and renamed into place whole; a killed run's staging
  // folder is removed by the next save to the same path. The final rename fails if another run
  // filled `dir` meanwhile, so two runs never mix their files.
  io::remove_stale_temps(dir);
  const fs::path tmp(io::hidden_temp_path(dir, long(::getpid())));
  const io::StagingFolder staging(tmp.string());  // holds the owner lock until the rename
  try {
    const LoopLMConfig& c = model.config();
    const OuroWeights& w = model.weights();
    Owned o;
    // The embedding and head stay FP: bf16 when that is exact (a bf16-born model), else fp32.
    auto add_vocab = [&o](const std::string& name, const at::Tensor& t) {
      const at::Tensor f = t.to(at::kFloat);
      const at::Tensor h = f.to(at::kBFloat16);
      if (h.to(at::kFloat).equal(f)) o.add(name, h, io::DType::BF16);
      else o.add(name, f, io::DType::F32);
    };
    add_vocab("model.embed_tokens.weight", w.embed);
    const char* norm_names[] = {"input_layernorm", "input_layernorm_2", "post_attention_layernorm",
                                "post_attention_layernorm_2"};
    for (int64_t l = 0; l < c.num_layers; ++l) {
      const LayerWeights& L = w.layers[size_t(l)];
      const at::Tensor* norms[] = {&L.input_norm, &L.attn_out_norm, &L.ffn_in_norm, &L.ffn_out_norm};
      for (int n = 0; n < 4; ++n)
        o.add("model.layers." + std::to_string(l) + "." + norm_names[n] + ".weight", norms[n]->to(at::kFloat), io::DType::F32);
      for (int g = 0; g < kNumInputGroups; ++g) {
        if (!cfg.group_transformed(l, g)) continue;
        const auto* q = dynamic_cast<const QuantLinear*>(L.linear(sites_of(InputGroup(g)).front()).get());
        if (!q || q->rotation().kind != InputRotation::Kind::Dense)
          throw Error("save_quantized_model: layer " + std::to_string(l) + " " + input_group_name(InputGroup(g)) +
                      " has no input transform");
        o.add(input_transform_name(l, g), q->rotation().dense.to(at::kCPU, at::kFloat), io::DType::F32);
      }
      for (int k = 0; k < 2; ++k) {
        if (!cfg.kv_transformed(l, k)) continue;
        static const std::vector<at::Tensor> none;
        const auto& maps = !cfg.kv.shaping ? none : k == 0 ? cfg.kv.shaping->k : cfg.kv.shaping->v;
        if (size_t(l) >= maps.size() || !maps[size_t(l)].defined())
          throw Error("save_quantized_model: layer " + std::to_string(l) + " has no KV " + (k == 0 ? "k" : "v") + " transform");
        o.add(kv_transform_name(l, k), maps[size_t(l)].to(at::kCPU, at::kFloat), io::DType::F32);
      }
      for (int s = 0; s < kNumLayerSites; ++s) {
        const auto* q = dynamic_cast<const QuantLinear*>(L.linear(LinearSite(s)).get());
        if (!q) throw Error("save_quantized_model: layer " + std::to_string(l) + " " + linear_site_name(LinearSite(s)) + " is not quantized");
        const QuantizedWeight& qw = q->weight();
        const std::string stem = stem_of(l, LinearSite(s));
        at::Tensor codes = (qw.codes.to(at::kCPU) + double(code_offset(qw.grid))).to(at::kInt);
        if (qw.grid.bits <= 4) o.add(stem + ".qweight", pack_int4(codes), io::DType::U8);
        else o.add(stem + ".qweight", codes.to(at::kChar), io::DType::I8);
        const int64_t rows = qw.codes.size(0);
        o.add(stem + ".scales", qw.params.scale.reshape({rows, -1}).to(at::kFloat), io::DType::F32);
        if (!qw.grid.symmetric) o.add(stem + ".zeros", qw.params.zero.reshape({rows, -1}).to(at::kFloat), io::DType::F32);
        // Adaptations: separate named tensors beside the one shared integer weight.
        const SiteAdaptation& ad = q->adaptation();
        for (const auto& [suffix, t] : adaptation_tensors(ad)) {
          if (!t->defined()) continue;
          // Output affines (O(out) per loop) are stored as fp16: the in-memory values were
          // rounded to fp16 when they were made (round_output_affines), so reloading is exact.
          const bool half = suffix == ".loop_out_scale" || suffix == ".loop_out_bias";
          o.add(stem + suffix, half ? t->to(at::kHalf) : t->to(at::kFloat), half ? io::DType::F16 : io::DType::F32);
        }
      }
    }
    o.add("model.norm.weight", w.final_norm.to(at::kFloat), io::DType::F32);
    if (w.state_weight.defined()) o.add(kStateWeight, w.state_weight.to(at::kFloat), io::DType::F32);
    if (w.state_bias.defined()) o.add(kStateBias, w.state_bias.to(at::kFloat), io::DType::F32);
    if (model.has_exit_gate()) {
      o.add("model.early_exit_gate.weight", w.exit_gate_weight.to(at::kFloat), io::DType::F32);
      o.add("model.early_exit_gate.bias", w.exit_gate_bias.to(at::kFloat), io::DType::F32);
    }
    if (!c.tie_word_embeddings) add_vocab("lm_head.weight", w.lm_head->dense_weight());
    io::write_safetensors((tmp / "model.safetensors").string(), o.out, {{"format", "pt"}, {"quantization", "loopq"}});

    LoopLMConfig saved = c;
    saved.torch_dtype = "float32";
    nlohmann::json j = nlohmann::json::parse(config_to_hf_json(saved));
    j["quantization_config"] = cfg.to_json();
    io::write_file_atomic((tmp / "config.json").string(), j.dump(2) + "\n");
    for (const char* f : {"tokenizer.json", "tokenizer_config.json", "encoder.json", "vocab.bpe"}) {
      fs::path src = fs::path(tokenizer_from) / f;
      if (!tokenizer_from.empty() && fs::exists(src)) fs::copy_file(src, tmp / f);
    }
    if (fs::exists(target)) fs::remove(target);  // an empty directory (throws if it was filled meanwhile)
    fs::rename(tmp, target);
  } catch (...) {
    std::error_code ec;
    fs::remove_all(tmp, ec);
    throw;
  }
}

Kernels parse_kernels(const std::string& name) {
  if (name == "packed") return Kernels::Packed;
  if (name == "reference") return Kernels::Reference;
  throw Error("unknown --kernels '" + name + "' (expected packed or reference)");
}

std::string why_not_packed(const QuantConfig& qc) {
  return PackedLinear::why_unsupported(qc.w_bits, qc.w_group_size, qc.act);
}

OuroModel load_any_model(const std::string& path, const LoadOptions& options, Kernels kernels) {
  QuantConfig qc;
  if (!read_quant_config(path, qc)) return load_model(path, options);
  const bool packed = kernels == Kernels::Packed;
  if (packed && !why_not_packed(qc).empty())
    throw Error(path + ": the packed kernels do not run " + why_not_packed(qc));
  if (packed && options.device != at::Device(at::kCPU)) throw Error("the packed kernels run on the CPU only");
  const std::string dir = model_dir_of(path);
  const LoopLMConfig c = parse_hf_config((fs::path(dir) / "config.json").string());
  check_quant_config(dir, c, qc);
  if (uses_rotation(qc.method)) quarot_check_sizes(c);
  // Every quantized tensor's dtype, shape and values are checked here, torch-free, so the
  // loader below only copies.
  {
    const io::Checkpoint ckpt = io::Checkpoint::open(dir);
    check_quantized_tensors(dir, c, quant_layout_of(qc), [&](const std::string& n) -> const io::TensorInfo* {
      return ckpt.has(n) ? &ckpt.get(n) : nullptr;
    });
  }
  const Grid grid{qc.w_bits, qc.w_symmetric};
  LoadOptions lo = options;
  lo.device = at::kCPU;
  if (packed) {
    // The embedding and head in bf16 where that is exact (any bf16-born model), and the head on
    // the dense decode kernel instead of a one-row BLAS call that re-packs it every token.
    lo.compact_vocab = true;
    lo.head_factory = [](at::Tensor weight) -> LinearPtr { return std::make_shared<PackedDenseLinear>(std::move(weight)); };
  }
  // The first packed linear of each (layer, input): the others of that input share its
  // quantized activations.
  std::map<std::pair<int64_t, int>, std::shared_ptr<PackedLinear>> input_owner;
  std::map<std::pair<int64_t, int>, at::Tensor> transforms;
  lo.linear_loader = [&](const LinearLoadRequest& r) -> LinearPtr {
    const int64_t out = r.shape[0], in = r.shape[1];
    const int64_t groups = qc.w_group_size > 0 ? in / qc.w_group_size : 1;
    // Dtypes, shapes and values were checked above (check_quantized_tensors): only copies here.
    const at::Tensor raw = grid.bits <= 4 ? r.read_raw(r.stem + ".qweight", "U8", {out, in / 2})
                                          : r.read_raw(r.stem + ".qweight", "I8", {out, in});
    const at::Tensor scale = r.read_raw(r.stem + ".scales", "F32", {out, groups});
    const at::Tensor zero = grid.symmetric ? at::Tensor() : r.read_raw(r.stem + ".zeros", "F32", {out, groups});
    const bool rotated = uses_rotation(qc.method) && qc.group_rotated(r.layer, int(input_group_of(r.site)));
    InputRotation rot = rotated ? quarot_input_rotation(c, r.site, qc.rotation_seed) : InputRotation{};
    const int group = int(input_group_of(r.site));
    if (qc.group_transformed(r.layer, group)) {
      rot = InputRotation{};
      rot.kind = InputRotation::Kind::Dense;
      at::Tensor& t = transforms[{r.layer, group}];  // one read per input group, shared by its linears
      if (!t.defined()) t = r.read_raw(input_transform_name(r.layer, group), "F32", {in, in});
      rot.dense = t;
    }
    // Adaptations: exactly the ones the config announces, with their announced shapes.
    SiteAdaptation ad;
    auto read = [&](const std::string& suffix, int64_t sets, std::vector<int64_t> tail) {
      std::vector<int64_t> shape{sets};
      shape.insert(shape.end(), tail.begin(), tail.end());
      return r.read_f32(r.stem + suffix, shape);
    };
    if (qc.act_param_sets > 0) {
      if (qc.act.static_scale) ad.act_scale = read(".loop_act_scale", qc.act_param_sets, {});
      else ad.act_clip = read(".loop_act_clip", qc.act_param_sets, {});
    }
    if (qc.out_affine_sets > 0) {
      ad.out_scale = read(".loop_out_scale", qc.out_affine_sets, {out});
      ad.out_bias = read(".loop_out_bias", qc.out_affine_sets, {out});
    }
    if (packed) {
      // Straight from the file's bytes into the kernel layout: no unpacked or fp32 weight.
      const kernels::FileWeight f{grid.bits, grid.symmetric, out, in, qc.w_group_size,
                                  static_cast<const uint8_t*>(raw.data_ptr()), scale.data_ptr<float>(),
                                  zero.defined() ? zero.data_ptr<float>() : nullptr};
      auto p = std::make_shared<PackedLinear>(kernels::repack(f), qc.act, std::move(rot));
      p->set_adaptation(ad);
      auto owner = input_owner.emplace(std::make_pair(r.layer, int(input_group_of(r.site))), p);
      if (!owner.second) owner.first->second->share_input_with(*p);
      // The freed read buffers stay in the heap otherwise, and would add up to a few hundred MB
      // of peak RSS by the last layer: hand them back after each layer.
      if (r.site == LinearSite::Down) ::malloc_trim(0);
      return p;
    }
    const at::Tensor codes = (grid.bits <= 4 ? unpack_int4(raw) : raw).to(at::kFloat) - double(code_offset(grid));
    QuantizedWeight qw;
    qw.grid = grid;
    qw.group_size = qc.w_group_size;
    qw.codes = codes;
    qw.params.scale = scale.reshape({out, groups, 1});
    qw.params.zero = grid.symmetric ? at::zeros_like(qw.params.scale) : zero.reshape({out, groups, 1});
    auto op = std::make_shared<QuantLinear>(std::move(qw), ActQuant{}, std::move(rot));
    op->adaptation() = ad;
    return op;
  };
  const int64_t d = c.hidden_size;
  lo.extra_loader = [&](OuroWeights& w, const std::function<at::Tensor(const std::string&, const std::vector<int64_t>&)>& take) {
    if (qc.state_sets > 0) {
      w.state_weight = take(kStateWeight, {qc.state_sets, d});
      w.state_bias = take(kStateBias, {qc.state_sets, d});
    }
    auto shaping = std::make_shared<KVShaping>();
    for (int64_t l = 0; l < int64_t(qc.kv_transform_layers.size()); ++l)
      for (int k = 0; k < 2; ++k) {
        auto& maps = k == 0 ? shaping->k : shaping->v;
        maps.resize(size_t(c.num_layers));
        if (qc.kv_transformed(l, k)) maps[size_t(l)] = take(kv_transform_name(l, k), {c.num_kv_heads, c.head_dim, c.head_dim});
      }
    qc.kv.shaping = shaping->any() ? shaping : nullptr;
  };
  OuroModel model = load_model(dir, lo);
  // The per-linear read buffers are freed; hand the heap's free pages back, so what stays
  // resident is the packed model.
  if (packed) ::malloc_trim(0);
  install_runtime_quantizers(model, qc);
  if (options.device != at::Device(at::kCPU)) model.to(options.device);
  return model;
}

}  // namespace loopq::quant
