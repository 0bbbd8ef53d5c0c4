// loopq eval: perplexity (PTQ-paper protocol) and zero-shot tasks (lm-evaluation-harness
// scoring), reported for every loop readout and the exit-mode selection.
#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>  // NoGradGuard: not pulled in by ATen.h in PyTorch 2.x

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <unordered_map>

#include "cli/commands.h"
#include "cli/common.h"
#include "eval/loglikelihood.h"
#include "eval/perplexity.h"
#include "util/progress.h"
#include "eval/readout.h"
#include "eval/request_encoding.h"
#include "eval/results_json.h"
#include "eval/task_data.h"
#include "eval/task_metrics.h"
#include "io/atomic_file.h"
#include "util/error.h"

namespace fs = std::filesystem;

namespace loopq::cli {
namespace {

const char* kEvalHelp =
    "usage: loopq eval ppl|tasks [flags]   (loopq eval ppl --help, loopq eval tasks --help)\n"
    "  ppl    perplexity and bits per byte of a text file (PTQ-paper protocol)\n"
    "  tasks  zero-shot multiple-choice / LAMBADA accuracy (lm-evaluation-harness scoring)\n"
    "Both report every loop's readout (loops 1..T) and the --exit selection from one forward.\n";

const char* kPplHelp =
    "usage: loopq eval ppl --model DIR --file TEXT [--seqlen N] [--nsamples N] [--json FILE]\n"
    "                      [--loops T] [--exit last|step:k|cdf:q|expected] [--no-per-loop]\n"
    "                      [--threads N] [--device D]\n"
    "  --kernels packed|reference  how a quantized model runs: packed integer kernels (default)\n"
    "                              or the fake-quant reference path\n"
    "The whole file is tokenized at once with the model's tokenizer and cut into non-overlapping\n"
    "windows of --seqlen tokens (default 2048, capped at max_position_embeddings); the incomplete\n"
    "tail is dropped and --nsamples keeps only the first N windows. Each window is scored alone\n"
    "from position 0: tokens 1..seqlen-1 are scored, token 0 is not.\n"
    "  ppl           = exp(mean NLL per scored token), log-softmax in float64\n"
    "  bits_per_byte = sum NLL / ln 2 / bytes, bytes = UTF-8 bytes of the scored tokens (each\n"
    "                  scored token's decoded bytes; token 0 of every window is excluded)\n"
    "Reported per loop readout and for the exit selection (default: the config's mode);\n"
    "--no-per-loop scores only the exit selection (T fewer LM-head products per token).\n"
    "  top1          = fraction of scored tokens whose target is the readout's argmax\n"
    "--json FILE writes {ppl, bits_per_byte, top1, tokens, bytes, windows, seqlen, file, model, loops,\n"
    "exit, per_loop: [{loop, ppl, bits_per_byte, top1}]}.\n";

const char* kTasksHelp =
    "usage: loopq eval tasks --model DIR --tasks-dir DIR --tasks NAME,NAME,...|all [--limit N]\n"
    "                        [--json FILE] [--dump-requests FILE] [--batch-size N]\n"
    "                        [--max-batch-tokens N] [--loops T] [--exit MODE] [--no-per-loop]\n"
    "                        [--threads N] [--device D]\n"
    "  --kernels packed|reference  how a quantized model runs: packed integer kernels (default)\n"
    "                              or the fake-quant reference path\n"
    "Task files are DIR/<name>.jsonl (one {task, id, requests: [{context, continuation}], gold}\n"
    "per line). --limit takes the first N docs of each task. Requests are scored as\n"
    "lm-evaluation-harness does: continuation ids = enc(context + continuation)[len(enc(context)):]\n"
    "(trailing context spaces moved to the continuation; an empty context is <|endoftext|>),\n"
    "loglik = sum of log p(continuation tokens), left-truncated to the model's context.\n"
    "  acc       argmax of loglik == gold;  acc_norm: argmax of loglik / characters\n"
    "  lambada   acc = greedy decode equals the continuation; ppl = exp(-sum loglik / tokens)\n"
    "  mmlu      acc per subject, acc_macro (mean over subjects) and acc_micro (over docs)\n"
    "Main numbers use the --exit selection; per-loop accuracy comes from the same forward\n"
    "(--no-per-loop skips it). Requests sharing a context run it once into a KV cache and\n"
    "their continuations against it; other requests are packed by length.\n"
    "--batch-size: rows per forward (default 32); --max-batch-tokens: padded tokens per forward\n"
    "(default 4096). --dump-requests FILE writes one JSON line per request (ids, loglikelihood,\n"
    "is_greedy, per-loop loglikelihoods).\n";


std::string exit_label(const ForwardOptions& fo, const ExitMode& resolved) {
  return fo.exit ? resolved.to_string() : "default:" + resolved.to_string();
}

void check_positional(const Args& args) {
  if (!args.positional().empty()) throw Error("unexpected argument '" + args.positional()[0] + "'");
}

int eval_ppl(int argc, char** argv) {
  auto flags = kRunFlags;
  flags.insert({"file", "seqlen", "nsamples", "json"});
  Args args(argc, argv, flags, {"no-per-loop"});
  if (args.help()) {
    std::fputs(kPplHelp, stdout);
    return 0;
  }
  check_positional(args);
  const std::string file = args.require("file");
  const std::string model_path = args.require("model");
  int64_t seqlen = args.get_int("seqlen", 2048, 2, int64_t(1) << 30);
  const int64_t nsamples = args.get_int("nsamples", 0, 1, int64_t(1) << 40);
  if (args.has("json")) check_output_path(args.get("json"), "json");
  const std::string text = read_text_file(file);
  if (text.empty()) throw Error(file + ": file is empty");

  OuroModel model = load_model_from_args(args, true);
  ForwardOptions fo = forward_options_from_args(args, model);
  const ExitMode mode = model.resolve_exit_mode(fo);
  auto tokenizer = load_model_tokenizer(model_path);
  check_tokenizer_fits(*tokenizer, model.config());
  const int64_t max_pos = model.config().max_position_embeddings;
  if (seqlen > max_pos) {
    if (args.has("seqlen"))
      std::fprintf(stderr, "loopq eval: warning: --seqlen %lld capped at max_position_embeddings %lld\n",
                   (long long)seqlen, (long long)max_pos);
    seqlen = max_pos;
  }

  std::vector<int64_t> ids;
  {
    std::vector<int32_t> enc = tokenizer->encode(text);
    ids.assign(enc.begin(), enc.end());
  }
  if (int64_t(ids.size()) < seqlen)
    throw Error(file + ": the text has " + std::to_string(ids.size()) +
                " tokens, fewer than one window of --seqlen " + std::to_string(seqlen));
  std::vector<int64_t> byte_cache(tokenizer->vocab_size(), -1);
  auto token_bytes = [&](int64_t id) -> int64_t {
    int64_t& b = byte_cache.at(size_t(id));
    if (b < 0) b = int64_t(tokenizer->token_bytes(int32_t(id), false, false).size());
    return b;
  };

  eval::PerplexityOptions po;
  po.forward = fo;
  po.seqlen = seqlen;
  po.nsamples = nsamples;
  po.per_loop = !args.has("no-per-loop");
  const int64_t total = eval::count_windows(int64_t(ids.size()), seqlen, nsamples);
  Progress progress("ppl", total, "windows", "tok");
  at::NoGradGuard no_grad;
  eval::PerplexityResult r = eval::evaluate_perplexity(
      model, ids, token_bytes, po,
      [&](int64_t done, int64_t) { progress.update(done, double(done * (seqlen - 1))); });
  progress.finish();

  const std::string exit_str = exit_label(fo, mode);
  std::printf("file: %s (%zu tokens)\n", file.c_str(), ids.size());
  std::printf("windows: %lld x %lld tokens; scored %lld tokens = %lld bytes\n", (long long)r.windows,
              (long long)seqlen, (long long)r.tokens, (long long)r.bytes);
  std::printf("%-30s %14s %12s %10s\n", "readout", "ppl", "bits/byte", "top-1 %");
  for (int64_t t = 0; r.has_per_loop() && t < r.loops; ++t)
    std::printf("%-30s %14.4f %12.5f %10.3f\n", ("loop " + std::to_string(t + 1)).c_str(),
                r.ppl(size_t(t)), r.bits_per_byte(size_t(t)), 100 * r.top1_accuracy(size_t(t)));
  std::printf("%-30s %14.4f %12.5f %10.3f\n", ("exit " + exit_str).c_str(), r.ppl(r.exit_readout()),
              r.bits_per_byte(r.exit_readout()), 100 * r.top1_accuracy(r.exit_readout()));
  if (args.has("json")) {
    io::write_file_atomic(args.get("json"),
                          eval::perplexity_json(r, file, model_path, exit_str).dump(2) + "\n");
  }
  return 0;
}

struct LoadedTask {
  std::string name;
  std::vector<eval::TaskDoc> docs;
};

std::string fmt_pct(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.4f", v);
  return buf;
}

int eval_tasks(int argc, char** argv) {
  auto flags = kRunFlags;
  flags.insert({"tasks-dir", "tasks", "limit", "json", "dump-requests", "batch-size", "max-batch-tokens"});
  Args args(argc, argv, flags, {"no-per-loop"});
  if (args.help()) {
    std::fputs(kTasksHelp, stdout);
    return 0;
  }
  check_positional(args);
  const std::string model_path = args.require("model");
  const std::string tasks_dir = args.require("tasks-dir");
  const std::string spec = args.require("tasks");
  const int64_t limit = args.get_int("limit", 0, 1, int64_t(1) << 40);
  eval::ScoreOptions so;
  so.batch_size = args.get_int("batch-size", 32, 1, 1 << 20);
  so.max_batch_tokens = args.get_int("max-batch-tokens", 4096, 1, int64_t(1) << 32);
  so.per_loop = !args.has("no-per-loop");
  if (args.has("json")) check_output_path(args.get("json"), "json");
  if (args.has("dump-requests")) check_output_path(args.get("dump-requests"), "dump-requests");

  // Every task file is validated before the model is loaded.
  std::vector<LoadedTask> tasks;
  for (const auto& name : eval::resolve_task_names(spec, tasks_dir))
    tasks.push_back({name, eval::load_task_file(eval::task_path(tasks_dir, name), limit)});

  OuroModel model = load_model_from_args(args, true);
  so.forward = forward_options_from_args(args, model);
  const ExitMode mode = model.resolve_exit_mode(so.forward);
  const int64_t T = model.resolve_loops(so.forward.loops);
  auto tokenizer = load_model_tokenizer(model_path);
  check_tokenizer_fits(*tokenizer, model.config());
  std::optional<int64_t> prefix_token;
  if (auto id = tokenizer->token_to_id("<|endoftext|>")) prefix_token = *id;
  else if (model.config().bos_token_id) prefix_token = *model.config().bos_token_id;

  nlohmann::json results = nlohmann::json::object();
  // Request lines stream into a temp file that replaces the target only on success.
  std::unique_ptr<io::AtomicFile> dump;
  if (args.has("dump-requests")) dump = std::make_unique<io::AtomicFile>(args.get("dump-requests"));
  struct Row {
    std::string name;
    eval::TaskMetrics main;
    std::vector<eval::TaskMetrics> loops;
  };
  std::vector<Row> table;
  at::NoGradGuard no_grad;

  for (const auto& task : tasks) {
    // Tokenize (lm-eval's _encode_pair); identical strings are encoded once.
    std::unordered_map<std::string, std::vector<int32_t>> cache;
    eval::EncodeFn encode = [&](const std::string& s) -> std::vector<int32_t> {
      auto it = cache.find(s);
      if (it != cache.end()) return it->second;
      return cache.emplace(s, tokenizer->encode(s)).first->second;
    };
    std::vector<eval::TokenizedRequest> requests;
    std::vector<size_t> doc_of;
    for (size_t d = 0; d < task.docs.size(); ++d) {
      const auto& doc = task.docs[d];
      for (size_t i = 0; i < doc.requests.size(); ++i) {
        try {
          requests.push_back(eval::encode_request(doc.requests[i].context,
                                                  doc.requests[i].continuation, encode, prefix_token));
        } catch (const Error& e) {
          throw Error(task.name + " doc " + doc.id + " (line " + std::to_string(doc.line) +
                      ") request " + std::to_string(i) + ": " + e.what());
        }
        doc_of.push_back(d);
      }
    }
    cache.clear();

    // Requests run longest first across the task, so a doc's requests finish at different
    // times: progress counts docs as the scored fraction of requests.
    const int64_t n_docs = int64_t(task.docs.size());
    size_t requests_done = 0;
    Progress progress(task.name, n_docs, "docs", "docs");
    auto scores = eval::score_requests(model, requests, so, [&](const std::vector<size_t>& fin) {
      requests_done += fin.size();
      const int64_t docs = int64_t(double(n_docs) * double(requests_done) / double(requests.size()));
      progress.update(docs, double(docs));
    });
    progress.finish();

    // Metrics for every readout: loops 1..T (unless --no-per-loop), then the exit selection.
    Row row{task.name, {}, {}};
    const int64_t R = eval::num_readouts(model, so.forward, so.per_loop);
    for (int64_t r = 0; r < R; ++r) {
      std::vector<std::vector<eval::RequestOutcome>> outcomes(task.docs.size());
      for (size_t q = 0; q < requests.size(); ++q)
        outcomes[doc_of[q]].push_back(
            {scores[q].loglik[size_t(r)], scores[q].greedy[size_t(r)] != 0, scores[q].tokens});
      auto m = eval::compute_task_metrics(task.name, task.docs, outcomes);
      if (r + 1 < R) row.loops.push_back(m);
      else row.main = m;
    }
    results[task.name] = eval::task_json(row.main, row.loops);
    if (dump) {
      size_t q = 0;
      for (const auto& doc : task.docs)
        for (size_t i = 0; i < doc.requests.size(); ++i, ++q) {
          const std::string line =
              eval::request_dump_line(task.name, doc.id, i, requests[q], scores[q]) + "\n";
          dump->write(line.data(), line.size());
        }
    }
    table.push_back(std::move(row));
  }

  // Table: main numbers from the exit selection, then per-loop accuracy.
  std::printf("exit: %s   loops: %lld\n", exit_label(so.forward, mode).c_str(), (long long)T);
  std::printf("%-16s %6s %8s %8s %9s %10s  %s\n", "task", "docs", "acc", "stderr", "acc_norm", "ppl",
              "acc per loop (1..T)");
  for (const auto& row : table) {
    const auto& m = row.main;
    std::string per_loop;
    for (const auto& l : row.loops) per_loop += fmt_pct(l.acc) + " ";
    char ppl[32] = "-";
    if (m.greedy_task) std::snprintf(ppl, sizeof ppl, "%.3f", m.ppl);
    std::printf("%-16s %6lld %8.4f %8.4f %9s %10s  %s\n", row.name.c_str(), (long long)m.docs, m.acc,
                m.acc_stderr, m.greedy_task ? "-" : fmt_pct(m.acc_norm).c_str(), ppl, per_loop.c_str());
    if (!m.subjects.empty()) {
      std::string macro_loops;
      for (const auto& l : row.loops) macro_loops += fmt_pct(l.acc_macro) + " ";
      std::printf("%-16s %6zu %8.4f %8s %9s %10s  %s\n", (row.name + " (macro)").c_str(),
                  m.subjects.size(), m.acc_macro, "", fmt_pct(m.acc_norm_macro).c_str(), "-",
                  macro_loops.c_str());
    }
  }

  if (dump) dump->commit();
  if (args.has("json")) {
    nlohmann::json j;
    j["tasks"] = results;
    j["model"] = model_path;
    j["loops"] = T;
    j["exit"] = exit_label(so.forward, mode);
    j["limit"] = limit > 0 ? nlohmann::json(limit) : nlohmann::json(nullptr);
    io::write_file_atomic(args.get("json"), j.dump(2) + "\n");
  }
  return 0;
}

}  // namespace

int cmd_eval(int argc, char** argv) {
  if (argc < 1) throw Error("missing subcommand: loopq eval ppl|tasks (see loopq eval --help)");
  const std::string sub = argv[0];
  if (sub == "--help" || sub == "-h" || sub == "help") {
    std::fputs(kEvalHelp, stdout);
    return 0;
  }
  if (sub == "ppl") return eval_ppl(argc - 1, argv + 1);
  if (sub == "tasks") return eval_tasks(argc - 1, argv + 1);
  throw Error("unknown eval subcommand '" + sub + "' (expected ppl or tasks)");
}

}  // namespace loopq::cli
