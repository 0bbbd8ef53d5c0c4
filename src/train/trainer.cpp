#include "train/trainer.h"

#include <ATen/Parallel.h>
#include <ATen/core/Reduction.h>
#include <ATen/core/grad_mode.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <cstring>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>

#include "io/atomic_file.h"
#include "io/safetensors.h"
#include "io/tokenizer/tokenizer.h"
#include "model/model_io.h"
#include "model/runtime.h"
#include "train/adamw.h"
#include "util/error.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace loopq::train {
namespace {

using Clock = std::chrono::steady_clock;

std::vector<int32_t> tokenize_file(const tok::Tokenizer& tokenizer, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path + ": cannot open file");
  std::stringstream ss;
  ss << in.rdbuf();
  std::vector<int32_t> ids = tokenizer.encode(ss.str());
  if (ids.empty()) throw Error(path + ": file is empty");
  return ids;
}

// The options that must match for a resume to continue the same run.
json run_identity(const TrainOptions& o) {
  return json{{"vocab_size", o.model.vocab_size}, {"hidden_size", o.model.hidden_size},
              {"num_layers", o.model.num_layers}, {"num_heads", o.model.num_heads},
              {"num_kv_heads", o.model.num_kv_heads}, {"head_dim", o.model.head_dim},
              {"intermediate_size", o.model.intermediate_size}, {"loops", o.model.total_ut_steps},
              {"seqlen", o.seqlen}, {"batch", o.batch}, {"steps", o.steps}, {"warmup", o.warmup},
              {"lr", o.lr}, {"min_lr_ratio", o.min_lr_ratio}, {"weight_decay", o.weight_decay},
              {"clip", o.clip}, {"init_std", o.init_std}, {"loop_weights", o.loop_weights},
              {"gate_loss_weight", o.gate_loss_weight}, {"seed", o.seed},
              {"train_file", fs::path(o.train_file).filename().string()},
              {"init_from", o.init_from.empty() ? "" : fs::path(o.init_from).filename().string()}};
}

std::string format_duration(double seconds) {
  char buf[32];
  long s = long(seconds);
  if (s >= 3600) std::snprintf(buf, sizeof buf, "%ldh%02ldm", s / 3600, (s / 60) % 60);
  else std::snprintf(buf, sizeof buf, "%ldm%02lds", s / 60, s % 60);
  return buf;
}

struct LogRow {
  int64_t step;
  double lr, loss, gate_loss, grad_norm, tokens_per_s;
  std::vector<double> train_ce;  // per loop
  std::vector<double> valid_ce;  // per loop; empty when not evaluated at this step
};

std::string log_csv(const std::vector<LogRow>& rows, int64_t loops) {
  std::ostringstream out;
  out << "step,lr,loss,gate_loss,grad_norm,tokens_per_s";
  for (int64_t t = 1; t <= loops; ++t) out << ",train_ce_loop" << t;
  for (int64_t t = 1; t <= loops; ++t) out << ",valid_ce_loop" << t;
  out << "\n";
  for (const auto& r : rows) {
    out << r.step << "," << r.lr << "," << r.loss << "," << r.gate_loss << "," << r.grad_norm << ","
        << r.tokens_per_s;
    for (double v : r.train_ce) out << "," << v;
    for (int64_t t = 0; t < loops; ++t) {
      out << ",";
      if (!r.valid_ce.empty()) out << r.valid_ce[t];
    }
    out << "\n";
  }
  return out.str();
}

std::vector<LogRow> read_log_csv(const std::string& path, int64_t loops, int64_t up_to_step) {
  std::vector<LogRow> rows;
  std::ifstream in(path);
  std::string line;
  if (!std::getline(in, line)) return rows;
  while (std::getline(in, line)) {
    std::vector<std::string> f;
    std::stringstream ss(line);
    std::string item;
    while (std::getline(ss, item, ',')) f.push_back(item);
    while (int64_t(f.size()) < 6 + 2 * loops) f.push_back("");
    LogRow r{};
    try {
      r.step = std::stoll(f[0]), r.lr = std::stod(f[1]), r.loss = std::stod(f[2]);
      r.gate_loss = std::stod(f[3]), r.grad_norm = std::stod(f[4]), r.tokens_per_s = std::stod(f[5]);
      for (int64_t t = 0; t < loops; ++t) r.train_ce.push_back(std::stod(f[6 + t]));
      if (!f[6 + loops].empty())
        for (int64_t t = 0; t < loops; ++t) r.valid_ce.push_back(std::stod(f[6 + loops + t]));
    } catch (const std::exception&) {
      throw Error(path + ": malformed training log line '" + line + "'");
    }
    if (r.step <= up_to_step) rows.push_back(r);
  }
  return rows;
}

}  // namespace

void run_training(const TrainOptions& opt_in) {
  TrainOptions opt = opt_in;
  const at::Device device = parse_device(opt.device);
  if (opt.seqlen < 2) throw Error("--seqlen must be at least 2");
  auto tokenizer = tok::Tokenizer::load(opt.tokenizer_path);
  opt.model.vocab_size = int64_t(tokenizer->vocab_size());
  opt.model.max_position_embeddings = std::max(opt.model.max_position_embeddings, opt.seqlen);
  opt.model.eos_token_ids.clear();
  if (auto eos = tokenizer->token_to_id("<|endoftext|>")) opt.model.eos_token_ids.push_back(*eos);
  if (auto eos = tokenizer->token_to_id("<|im_end|>")) opt.model.eos_token_ids.push_back(*eos);
  validate_config(opt.model);
  const int64_t T = opt.model.total_ut_steps, V = opt.model.vocab_size;
  if (opt.loop_weights.empty())
    for (int64_t t = 1; t <= T; ++t) opt.loop_weights.push_back(double(t));
  if (int64_t(opt.loop_weights.size()) != T)
    throw Error("--loop-weights needs " + std::to_string(T) + " values, one per loop");
  double wsum = 0;
  for (double w : opt.loop_weights) {
    if (!(w >= 0)) throw Error("--loop-weights must be non-negative");
    wsum += w;
  }
  if (wsum <= 0) throw Error("--loop-weights must not all be zero");
  for (double& w : opt.loop_weights) w /= wsum;

  const fs::path out(opt.out_dir), ckpt_dir = out / "checkpoint";
  const fs::path ckpt_file = ckpt_dir / "train_state.safetensors";
  if (fs::exists(ckpt_file) && !opt.resume)
    throw Error(ckpt_file.string() + " exists: pass --resume to continue it, or use a new -o");

  OuroModel model = random_model(opt.model, opt.seed, opt.init_std);
  if (!opt.init_from.empty()) {
    // A later training stage: same shape, weights from an earlier run.
    OuroModel init = load_model(opt.init_from);
    auto src = named_tensors(init), dst = named_tensors(model);
    if (src.size() != dst.size()) throw Error(opt.init_from + ": model layout differs from the configured shape");
    for (size_t i = 0; i < src.size(); ++i) {
      if (src[i].first != dst[i].first || !src[i].second.sizes().equals(dst[i].second.sizes()))
        throw Error(opt.init_from + ": tensor '" + src[i].first + "' does not match the configured shape");
      dst[i].second.copy_(src[i].second);
    }
  }
  auto t_tok = Clock::now();
  std::vector<int32_t> train_ids = tokenize_file(*tokenizer, opt.train_file);
  std::vector<int32_t> valid_ids = tokenize_file(*tokenizer, opt.valid_file);
  if (int64_t(train_ids.size()) <= opt.seqlen + 1)
    throw Error(opt.train_file + ": only " + std::to_string(train_ids.size()) +
                " tokens, fewer than one training window of " + std::to_string(opt.seqlen + 1));
  const int64_t n_valid_windows = std::min<int64_t>(opt.eval_windows, int64_t(valid_ids.size()) / (opt.seqlen + 1));
  if (n_valid_windows < 1) throw Error(opt.valid_file + ": shorter than one validation window");
  // Everything the user gave has been checked: only now create the output directory.
  fs::create_directories(ckpt_dir);
  std::fprintf(stderr, "training on %s with %d threads; tokenized %zu train and %zu valid tokens in %.1f s\n",
               opt.device.c_str(), at::get_num_threads(), train_ids.size(), valid_ids.size(),
               std::chrono::duration<double>(Clock::now() - t_tok).count());

  model.to(device);
  auto params = named_tensors(model);
  for (auto& [name, p] : params) p.requires_grad_(true);
  AdamWOptions aopt;
  aopt.weight_decay = opt.weight_decay;
  AdamW optimizer(params, aopt);

  std::vector<LogRow> log;
  int64_t start_step = 0;
  double elapsed_before = 0;
  if (opt.resume && fs::exists(ckpt_file)) {
    auto f = io::SafetensorsFile::open(ckpt_file.string());
    const auto& meta = f->metadata();
    auto need = [&](const char* key) {
      auto it = meta.find(key);
      if (it == meta.end()) throw Error(ckpt_file.string() + ": checkpoint lacks '" + key + "'");
      return it->second;
    };
    json saved = json::parse(need("run"), nullptr, false);
    if (saved != run_identity(opt))
      throw Error(ckpt_file.string() + ": checkpoint was made with other options: " + saved.dump());
    start_step = std::stoll(need("step"));
    elapsed_before = std::stod(need("elapsed_seconds"));
    auto load = [&](const std::string& name, const at::Tensor& like) {
      if (!f->has(name)) throw Error(ckpt_file.string() + ": checkpoint lacks tensor '" + name + "'");
      const io::TensorInfo& info = f->get(name);
      if (info.dtype != io::DType::F32 || info.shape != like.sizes().vec())
        throw Error(ckpt_file.string() + ": tensor '" + name + "' has the wrong dtype or shape");
      at::Tensor t = at::empty(info.shape, at::kFloat);
      std::memcpy(t.data_ptr(), info.data, info.nbytes);
      return t.to(device);
    };
    {
      at::NoGradGuard no_grad;
      for (auto& [name, p] : params) p.copy_(load("param." + name, p));
    }
    std::vector<std::pair<std::string, at::Tensor>> state;
    for (const auto& [name, t] : optimizer.state()) state.emplace_back(name, load(name, t));
    optimizer.load_state(state, start_step);
    log = read_log_csv((out / "train_log.csv").string(), T, start_step);
    std::fprintf(stderr, "resumed from step %lld\n", (long long)start_step);
  }

  auto save_checkpoint = [&](int64_t step, double elapsed) {
    std::vector<std::pair<std::string, at::Tensor>> host;
    for (const auto& [name, p] : params) host.emplace_back("param." + name, p.detach().to(at::kCPU).contiguous());
    for (const auto& [name, t] : optimizer.state()) host.emplace_back(name, t.to(at::kCPU).contiguous());
    std::vector<io::TensorToWrite> w;
    for (const auto& [name, t] : host)
      w.push_back({name, io::DType::F32, t.sizes().vec(), t.data_ptr(), size_t(t.numel()) * 4});
    io::write_safetensors(ckpt_file.string(), w,
                          {{"step", std::to_string(step)}, {"run", run_identity(opt).dump()},
                           {"elapsed_seconds", std::to_string(elapsed)}});
    io::write_file_atomic((out / "train_log.csv").string(), log_csv(log, T));
  };

  ForwardOptions fo;
  fo.loops = T;
  fo.loop_logits = true;
  fo.exit = ExitMode{};
  auto batch_at = [&](const std::vector<int32_t>& ids, const std::vector<int64_t>& starts) {
    const int64_t B = int64_t(starts.size());
    at::Tensor x = at::empty({B, opt.seqlen + 1}, at::kLong);
    auto* xp = x.data_ptr<int64_t>();
    for (int64_t b = 0; b < B; ++b)
      for (int64_t i = 0; i <= opt.seqlen; ++i) xp[b * (opt.seqlen + 1) + i] = ids[starts[b] + i];
    x = x.to(device);
    return std::make_pair(x.narrow(1, 0, opt.seqlen), x.narrow(1, 1, opt.seqlen).reshape({-1}));
  };
  auto per_loop_ce = [&](const ForwardResult& r, const at::Tensor& targets) {
    std::vector<at::Tensor> ce;
    for (int64_t t = 0; t < T; ++t) {
      at::Tensor logp = at::log_softmax(r.loop_logits[t].reshape({-1, V}), -1);
      ce.push_back(at::nll_loss(logp, targets, {}, at::Reduction::None));
    }
    return ce;
  };
  auto validate = [&]() {
    at::NoGradGuard no_grad;
    std::vector<double> sum(T, 0.0);
    int64_t count = 0;
    for (int64_t w = 0; w < n_valid_windows; w += opt.batch) {
      std::vector<int64_t> starts;
      for (int64_t k = w; k < std::min(n_valid_windows, w + opt.batch); ++k) starts.push_back(k * (opt.seqlen + 1));
      auto [x, y] = batch_at(valid_ids, starts);
      auto ce = per_loop_ce(model.forward(x, fo), y);
      for (int64_t t = 0; t < T; ++t) sum[t] += ce[t].sum().item<double>();
      count += y.numel();
    }
    for (double& s : sum) s /= double(count);
    return sum;
  };

  double best_valid = INFINITY;
  int64_t best_step = 0;
  for (const auto& r : log)
    if (!r.valid_ce.empty() && r.valid_ce.back() < best_valid) best_valid = r.valid_ce.back(), best_step = r.step;
  const bool tty = isatty(fileno(stderr));
  const int64_t tokens_per_step = opt.batch * opt.seqlen;
  auto t_start = Clock::now();
  double ema_step_s = 0;
  std::uniform_int_distribution<int64_t> pick(0, int64_t(train_ids.size()) - opt.seqlen - 2);
  for (int64_t step = start_step; step < opt.steps; ++step) {
    auto t0 = Clock::now();
    // Each step's windows depend only on (seed, step), so a resumed run sees the same data.
    std::mt19937_64 rng(opt.seed * 0x9E3779B97F4A7C15ULL + uint64_t(step));
    std::vector<int64_t> starts(opt.batch);
    for (auto& s : starts) s = pick(rng);
    auto [x, y] = batch_at(train_ids, starts);

    ForwardResult r = model.forward(x, fo);
    auto ce = per_loop_ce(r, y);
    at::Tensor loss = at::zeros({}, ce[0].options());
    for (int64_t t = 0; t < T; ++t) loss = loss + opt.loop_weights[t] * ce[t].mean();
    // Gate target: exit (1) after loop t when loop t+1 does not lower this token's loss. The
    // gate reads detached states, so it never pulls the language model toward easy exits.
    at::Tensor gate_loss = at::zeros({}, ce[0].options());
    if (model.has_exit_gate() && T > 1 && opt.gate_loss_weight > 0) {
      const auto& w = model.weights();
      for (int64_t t = 0; t + 1 < T; ++t) {
        at::Tensor g = at::linear(r.states[t].detach(), w.exit_gate_weight, w.exit_gate_bias).reshape({-1});
        at::Tensor target = (ce[t + 1].detach() >= ce[t].detach()).to(g.scalar_type());
        gate_loss = gate_loss + at::binary_cross_entropy_with_logits(g, target) / double(T - 1);
      }
    }
    at::Tensor total = loss + opt.gate_loss_weight * gate_loss;
    optimizer.zero_grad();
    total.backward();
    const double grad_norm = optimizer.clip_grad_norm(opt.clip);
    const double lr = warmup_cosine_lr(step, opt.warmup, opt.steps, opt.lr, opt.min_lr_ratio);
    optimizer.step(lr);

    LogRow row{};
    row.step = step + 1, row.lr = lr, row.loss = loss.item<double>();
    row.gate_loss = gate_loss.item<double>(), row.grad_norm = grad_norm;
    for (int64_t t = 0; t < T; ++t) row.train_ce.push_back(ce[t].mean().item<double>());
    if (!std::isfinite(row.loss)) throw Error("training diverged at step " + std::to_string(step + 1) + " (loss is not finite)");
    const double step_s = std::chrono::duration<double>(Clock::now() - t0).count();
    ema_step_s = ema_step_s == 0 ? step_s : 0.9 * ema_step_s + 0.1 * step_s;
    row.tokens_per_s = tokens_per_step / step_s;

    const bool eval_now = (step + 1) % opt.eval_every == 0 || step + 1 == opt.steps;
    if (eval_now) row.valid_ce = validate();
    log.push_back(row);

    // Progress bar: loss of the last loop, throughput, ETA.
    const int width = 24, filled = int(width * double(step + 1) / double(opt.steps));
    std::string bar(size_t(filled), '#');
    bar.resize(width, '.');
    char line[256];
    std::snprintf(line, sizeof line, "[%s] step %lld/%lld loss %.4f (last loop %.4f) lr %.2e %.0f tok/s ETA %s",
                  bar.c_str(), (long long)(step + 1), (long long)opt.steps, row.loss, row.train_ce.back(), lr,
                  tokens_per_step / ema_step_s, format_duration(ema_step_s * double(opt.steps - step - 1)).c_str());
    if (tty) std::fprintf(stderr, "\r%s", line);
    else if ((step + 1) % 10 == 0 || eval_now) std::fprintf(stderr, "%s\n", line);
    if (eval_now) {
      std::fprintf(stderr, "%svalid ppl by loop:", tty ? "\n" : "");
      for (double v : row.valid_ce) std::fprintf(stderr, " %.2f", std::exp(v));
      // Model selection on the valid split: the output directory always holds the best model
      // (by the last loop's valid CE) seen so far.
      if (row.valid_ce.back() < best_valid) {
        best_valid = row.valid_ce.back();
        best_step = step + 1;
        {
          // Staged beside the output folder, then moved in with config.json last: a kill -9
          // never leaves a config.json next to missing or older weights.
          io::AtomicDir staged(opt.out_dir);
          save_model(model, staged.staging(), opt.save_dtype, opt.tokenizer_path);
          staged.commit({"config.json"});
        }
        std::fprintf(stderr, "  (best, saved)");
      }
      std::fprintf(stderr, "\n");
    }
    const double elapsed = elapsed_before + std::chrono::duration<double>(Clock::now() - t_start).count();
    const bool stop_now = opt.stop_after > 0 && step + 1 - start_step >= opt.stop_after && step + 1 < opt.steps;
    if ((step + 1) % opt.ckpt_every == 0 || step + 1 == opt.steps || stop_now) save_checkpoint(step + 1, elapsed);
    if (stop_now) {
      if (tty) std::fprintf(stderr, "\n");
      std::fprintf(stderr, "stopped after step %lld as asked; continue with --resume\n", (long long)(step + 1));
      return;
    }
  }
  if (tty) std::fprintf(stderr, "\n");

  const double elapsed = elapsed_before + std::chrono::duration<double>(Clock::now() - t_start).count();
  json summary = run_identity(opt);
  summary["loop_weights"] = opt.loop_weights;
  summary["wall_seconds"] = elapsed;
  summary["device"] = opt.device;
  summary["threads"] = at::get_num_threads();
  summary["train_tokens"] = train_ids.size();
  summary["tokens_seen"] = opt.steps * tokens_per_step;
  summary["best_step"] = best_step;
  summary["best_valid_ppl_last_loop"] = std::exp(best_valid);
  for (const auto& r : log)
    if (r.step == best_step) {
      json per_loop = json::array();
      for (size_t t = 0; t < r.valid_ce.size(); ++t)
        per_loop.push_back({{"loop", t + 1}, {"valid_ppl", std::exp(r.valid_ce[t])}});
      summary["best_valid"] = per_loop;
    }
  io::write_file_atomic((out / "training.json").string(), summary.dump(2) + "\n");
  std::fprintf(stderr, "wrote %s (%.1f s)\n", opt.out_dir.c_str(), elapsed);
}

}  // namespace loopq::train
