#include "eval/results_json.h"

using nlohmann::json;

namespace loopq::eval {

json perplexity_json(const PerplexityResult& r, const std::string& file, const std::string& model,
                     const std::string& exit_mode) {
  json j;
  const size_t e = r.exit_readout();
  j["ppl"] = r.ppl(e);
  j["bits_per_byte"] = r.bits_per_byte(e);
  j["top1"] = r.top1_accuracy(e);
  j["nll_sum"] = r.nll[e];
  j["tokens"] = r.tokens;
  j["bytes"] = r.bytes;
  j["windows"] = r.windows;
  j["seqlen"] = r.seqlen;
  j["file"] = file;
  j["model"] = model;
  j["loops"] = r.loops;
  j["exit"] = exit_mode;
  j["per_loop"] = json::array();
  for (int64_t t = 0; r.has_per_loop() && t < r.loops; ++t)
    j["per_loop"].push_back({{"loop", t + 1},
                             {"ppl", r.ppl(size_t(t))},
                             {"bits_per_byte", r.bits_per_byte(size_t(t))},
                             {"top1", r.top1_accuracy(size_t(t))}});
  return j;
}

namespace {

json metrics_fields(const TaskMetrics& m) {
  json j;
  j["acc"] = m.acc;
  j["acc_stderr"] = m.acc_stderr;
  if (m.greedy_task) {
    j["ppl"] = m.ppl;
    j["ppl_doc"] = m.ppl_doc;
  } else {
    j["acc_norm"] = m.acc_norm;
    j["acc_norm_stderr"] = m.acc_norm_stderr;
  }
  if (!m.subjects.empty()) {
    j["acc_macro"] = m.acc_macro;
    j["acc_micro"] = m.acc;
    j["acc_norm_macro"] = m.acc_norm_macro;
  }
  return j;
}

}  // namespace

json task_json(const TaskMetrics& main, const std::vector<TaskMetrics>& per_loop) {
  json j = metrics_fields(main);
  j["docs"] = main.docs;
  if (main.greedy_task) j["continuation_tokens"] = main.continuation_tokens;
  if (!main.subjects.empty()) {
    json s = json::object();
    for (const auto& [name, sm] : main.subjects)
      s[name] = {{"docs", sm.docs}, {"acc", sm.acc}, {"acc_norm", sm.acc_norm}};
    j["subjects"] = s;
  }
  j["per_loop"] = json::array();
  for (size_t t = 0; t < per_loop.size(); ++t) {
    json l = metrics_fields(per_loop[t]);
    l.erase("acc_stderr");
    l.erase("acc_norm_stderr");
    l.erase("ppl_doc");
    json entry = {{"loop", t + 1}};
    entry.update(l);
    j["per_loop"].push_back(entry);
  }
  return j;
}

std::string request_dump_line(const std::string& task, const std::string& doc_id,
                              size_t request_index, const TokenizedRequest& request,
                              const RequestScore& score) {
  json j;
  j["task"] = task;
  j["doc_id"] = doc_id;
  j["request_index"] = request_index;
  j["context_ids"] = request.context;
  j["continuation_ids"] = request.continuation;
  j["loglikelihood"] = score.loglik.back();
  j["is_greedy"] = bool(score.greedy.back());
  j["scored_tokens"] = score.tokens;
  json loops = json::array();
  for (size_t t = 0; t + 1 < score.loglik.size(); ++t) loops.push_back(score.loglik[t]);
  j["loop_loglikelihoods"] = loops;
  return j.dump();
}

}  // namespace loopq::eval
