#pragma once
// Per-task metrics from per-request log-likelihoods, as lm-evaluation-harness computes them.
// Torch-free.
//
// Multiple choice (ARC, PIQA, HellaSwag, WinoGrande, BoolQ, OBQA, MMLU):
//   acc      = mean over docs of [argmax_i loglik_i == gold]
//   acc_norm = mean over docs of [argmax_i loglik_i / chars(continuation_i) == gold], chars =
//              Unicode code points of the continuation string as given in the task file (Python's
//              len()). Ties go to the first request, as numpy's argmax does.
//   *_stderr = sample standard deviation (n - 1) / sqrt(n); 0 for fewer than two docs.
//   Docs with a "subject" (MMLU) also get acc per subject, acc_macro (mean over subjects) and
//   acc_micro (= acc, the mean over docs).
// Greedy tasks (LAMBADA: the name starts with "lambada", or every doc has one request):
//   acc = fraction of docs whose continuation is the greedy decode (is_greedy);
//   ppl = exp(-sum loglik / total continuation tokens) (token-level);
//   ppl_doc = exp(-mean over docs of loglik) (lm-eval's "perplexity" aggregation).
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "eval/task_data.h"

namespace loopq::eval {

struct RequestOutcome {
  double loglik = 0;   // summed log-probability of the continuation tokens
  bool greedy = false;
  int64_t tokens = 0;  // continuation tokens scored
};

struct SubjectMetrics {
  int64_t docs = 0;
  double acc = 0, acc_norm = 0;
};

struct TaskMetrics {
  bool greedy_task = false;
  int64_t docs = 0;
  double acc = 0, acc_stderr = 0;
  double acc_norm = 0, acc_norm_stderr = 0;  // multiple choice only
  double ppl = 0, ppl_doc = 0;                // greedy tasks only
  int64_t continuation_tokens = 0;
  std::map<std::string, SubjectMetrics> subjects;  // empty unless docs carry a subject
  double acc_macro = 0, acc_norm_macro = 0;
};

// Code points of a UTF-8 string (bytes that are not continuation bytes).
int64_t utf8_length(const std::string& text);
// Whether a task is scored by greedy match + perplexity rather than argmax over requests.
bool is_greedy_task(const std::string& name, const std::vector<TaskDoc>& docs);
// outcomes[d][i]: request i of doc d. Throws loopq::Error if the shapes disagree.
TaskMetrics compute_task_metrics(const std::string& name, const std::vector<TaskDoc>& docs,
                                 const std::vector<std::vector<RequestOutcome>>& outcomes);
// lm-eval's mean_stderr: sample std / sqrt(n) for 0/1 values.
double mean_stderr(const std::vector<double>& values);

}  // namespace loopq::eval
