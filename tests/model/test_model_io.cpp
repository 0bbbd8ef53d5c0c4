// Checkpoint directories: save/load round trip and every structural mismatch as a clear error.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <regex>

#include "io/safetensors.h"
#include "test_helpers.h"

using namespace loopq;
namespace fs = std::filesystem;

namespace {

std::string temp_dir(const std::string& name) {
  fs::path p = fs::temp_directory_path() / ("loopq_test_model_io_" + name);
  fs::remove_all(p);
  return p.string();
}

std::string read(const fs::path& p) {
  std::ifstream in(p);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

void write(const fs::path& p, const std::string& s) { std::ofstream(p) << s; }

// Rewrites a saved model's safetensors with `edit` applied to the tensor list.
void rewrite(const std::string& dir,
             const std::function<void(std::vector<std::pair<std::string, at::Tensor>>&)>& edit) {
  std::vector<std::pair<std::string, at::Tensor>> ts;
  {
    auto f = io::SafetensorsFile::open(dir + "/model.safetensors");
    for (const auto& n : f->names()) {
      const auto& info = f->get(n);
      at::Tensor t = at::empty(info.shape, at::kFloat);
      io::convert_to_f32(info.dtype, info.data, t.data_ptr<float>(), size_t(t.numel()));
      ts.emplace_back(n, t);
    }
  }
  edit(ts);
  std::vector<io::TensorToWrite> out;
  for (auto& [n, t] : ts)
    out.push_back({n, io::DType::F32, t.sizes().vec(), t.data_ptr(), size_t(t.numel() * 4)});
  io::write_safetensors(dir + "/model.safetensors", out);
}

}  // namespace

TEST(ModelIO, SaveLoadRoundTripF32IsExact) {
  OuroModel m = loopq::testing::tiny_model(31);
  std::string dir = temp_dir("roundtrip");
  save_model(m, dir, "F32");
  OuroModel back = load_model(dir);
  at::Tensor ids = at::arange(0, 9, at::kLong).view({1, -1});
  ForwardOptions o;
  o.loop_logits = true;
  ForwardResult a = m.forward(ids, o), b = back.forward(ids, o);
  for (size_t t = 0; t < a.loop_logits.size(); ++t)
    EXPECT_EQ(loopq::testing::max_abs_diff(a.loop_logits[t], b.loop_logits[t]), 0.0);
  EXPECT_EQ(back.parameter_count(), m.parameter_count());
  EXPECT_EQ(back.config().total_ut_steps, 4);
}

TEST(ModelIO, Bf16RoundTripRoundsEachWeightOnce) {
  OuroModel m = loopq::testing::tiny_model(32);
  std::string dir = temp_dir("bf16");
  save_model(m, dir, "BF16");
  OuroModel back = load_model(dir);
  at::Tensor w = m.weights().layers[1].down->dense_weight();
  at::Tensor expect = w.to(at::kBFloat16).to(at::kFloat);
  EXPECT_EQ(loopq::testing::max_abs_diff(back.weights().layers[1].down->dense_weight(), expect), 0.0);
}

TEST(ModelIO, StructuralErrorsNameTheProblem) {
  OuroModel m = loopq::testing::tiny_model(33);
  auto expect_error = [](const std::string& dir, const std::string& needle) {
    try {
      load_model(dir);
      ADD_FAILURE() << "no error, expected one mentioning " << needle;
    } catch (const loopq::Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  std::string dir = temp_dir("missing");
  save_model(m, dir, "F32");
  rewrite(dir, [](auto& ts) {
    ts.erase(std::remove_if(ts.begin(), ts.end(), [](auto& p) {
      return p.first == "model.layers.1.post_attention_layernorm_2.weight"; }), ts.end());
  });
  expect_error(dir, "missing tensor 'model.layers.1.post_attention_layernorm_2.weight'");

  dir = temp_dir("unexpected");
  save_model(m, dir, "F32");
  rewrite(dir, [](auto& ts) { ts.emplace_back("model.layers.2.extra.weight", at::zeros({3})); });
  expect_error(dir, "unexpected tensor 'model.layers.2.extra.weight'");

  dir = temp_dir("shape");
  save_model(m, dir, "F32");
  rewrite(dir, [](auto& ts) {
    for (auto& p : ts)
      if (p.first == "model.layers.0.mlp.up_proj.weight") p.second = at::zeros({43, 32});
  });
  expect_error(dir, "has shape [43, 32], config implies [44, 32]");

  dir = temp_dir("config");
  save_model(m, dir, "F32");
  std::string cfg = read(fs::path(dir) / "config.json");
  write(fs::path(dir) / "config.json", std::regex_replace(cfg, std::regex("\"ouro\""), "\"llama\""));
  expect_error(dir, "unsupported model_type 'llama'");

  write(fs::path(dir) / "config.json",
        std::regex_replace(cfg, std::regex("\"num_key_value_heads\": 2"), "\"num_key_value_heads\": 3"));
  expect_error(dir, "not divisible by num_key_value_heads");

  fs::remove(fs::path(dir) / "config.json");
  expect_error(dir, "no config.json");
  expect_error(temp_dir("nonexistent"), "not a model directory");
}

// Library callers of load_model (not only the CLI) get NaN/Inf weights refused, naming the
// tensor and element (io::check_finite covers each float dtype, tests/io/test_finite.cpp).
TEST(ModelIO, NonFiniteWeightsAreRefused) {
  OuroModel m = loopq::testing::tiny_model(34);
  std::string dir = temp_dir("nan");
  save_model(m, dir, "F32");
  rewrite(dir, [](auto& ts) {
    for (auto& p : ts)
      if (p.first == "model.layers.1.self_attn.o_proj.weight") p.second.view({-1})[7] = NAN;
  });
  try {
    load_model(dir);
    ADD_FAILURE() << "NaN weight loaded";
  } catch (const loopq::Error& e) {
    EXPECT_NE(std::string(e.what()).find("tensor 'model.layers.1.self_attn.o_proj.weight' has NaN at element 7"),
              std::string::npos) << e.what();
  }
  dir = temp_dir("inf");
  save_model(m, dir, "F32");
  rewrite(dir, [](auto& ts) {
    for (auto& p : ts)
      if (p.first == "model.norm.weight") p.second[0] = -INFINITY;
  });
  try {
    load_model(dir);
    ADD_FAILURE() << "Inf weight loaded";
  } catch (const loopq::Error& e) {
    EXPECT_NE(std::string(e.what()).find("tensor 'model.norm.weight' has Inf at element 0"), std::string::npos) << e.what();
  }
}

TEST(ModelIO, TiedEmbeddingsNeedNoLmHead) {
  LoopLMConfig c = loopq::testing::tiny_config();
  c.tie_word_embeddings = true;
  OuroModel m = random_model(c, 5, 0.2, true);
  std::string dir = temp_dir("tied");
  save_model(m, dir, "F32");
  OuroModel back = load_model(dir);
  EXPECT_EQ(loopq::testing::max_abs_diff(back.weights().lm_head->dense_weight(), back.weights().embed), 0.0);
}
