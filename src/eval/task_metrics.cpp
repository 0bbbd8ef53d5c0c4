#include "eval/task_metrics.h"

#include <cmath>

#include "util/error.h"

namespace loopq::eval {

int64_t utf8_length(const std::string& text) {
  int64_t n = 0;
  for (unsigned char c : text) n += (c & 0xC0) != 0x80;
  return n;
}

bool is_greedy_task(const std::string& name, const std::vector<TaskDoc>& docs) {
  if (name.rfind("lambada", 0) == 0) return true;
  for (const auto& d : docs)
    if (d.requests.size() != 1) return false;
  return !docs.empty();
}

double mean_stderr(const std::vector<double>& v) {
  const size_t n = v.size();
  if (n < 2) return 0.0;
  double mean = 0;
  for (double x : v) mean += x;
  mean /= double(n);
  double ss = 0;
  for (double x : v) ss += (x - mean) * (x - mean);
  return std::sqrt(ss / double(n - 1)) / std::sqrt(double(n));
}

namespace {

double mean(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return v.empty() ? 0.0 : s / double(v.size());
}

// First index of the maximum (numpy argmax).
size_t argmax(const std::vector<double>& v) {
  size_t best = 0;
  for (size_t i = 1; i < v.size(); ++i)
    if (v[i] > v[best]) best = i;
  return best;
}

}  // namespace

TaskMetrics compute_task_metrics(const std::string& name, const std::vector<TaskDoc>& docs,
                                 const std::vector<std::vector<RequestOutcome>>& outcomes) {
  if (outcomes.size() != docs.size())
    throw Error(name + ": " + std::to_string(outcomes.size()) + " scored docs for " +
                std::to_string(docs.size()) + " docs");
  TaskMetrics m;
  m.greedy_task = is_greedy_task(name, docs);
  m.docs = int64_t(docs.size());
  std::vector<double> acc, acc_norm;
  std::map<std::string, std::pair<std::vector<double>, std::vector<double>>> by_subject;
  double loglik_sum = 0;
  for (size_t d = 0; d < docs.size(); ++d) {
    const TaskDoc& doc = docs[d];
    const auto& out = outcomes[d];
    if (out.size() != doc.requests.size())
      throw Error(name + ": doc " + doc.id + " has " + std::to_string(doc.requests.size()) +
                  " requests but " + std::to_string(out.size()) + " scores");
    if (m.greedy_task) {
      bool all = true;
      for (const auto& o : out) {
        all = all && o.greedy;
        loglik_sum += o.loglik;
        m.continuation_tokens += o.tokens;
      }
      acc.push_back(all ? 1.0 : 0.0);
    } else {
      std::vector<double> ll, ll_norm;
      for (size_t i = 0; i < out.size(); ++i) {
        ll.push_back(out[i].loglik);
        ll_norm.push_back(out[i].loglik / double(utf8_length(doc.requests[i].continuation)));
      }
      acc.push_back(int64_t(argmax(ll)) == doc.gold ? 1.0 : 0.0);
      acc_norm.push_back(int64_t(argmax(ll_norm)) == doc.gold ? 1.0 : 0.0);
      if (!doc.subject.empty()) {
        by_subject[doc.subject].first.push_back(acc.back());
        by_subject[doc.subject].second.push_back(acc_norm.back());
      }
    }
  }
  m.acc = mean(acc);
  m.acc_stderr = mean_stderr(acc);
  if (m.greedy_task) {
    m.ppl = m.continuation_tokens > 0 ? std::exp(-loglik_sum / double(m.continuation_tokens)) : 0.0;
    m.ppl_doc = m.docs > 0 ? std::exp(-loglik_sum / double(m.docs)) : 0.0;
  } else {
    m.acc_norm = mean(acc_norm);
    m.acc_norm_stderr = mean_stderr(acc_norm);
    for (const auto& [subject, v] : by_subject) {
      SubjectMetrics s;
      s.docs = int64_t(v.first.size());
      s.acc = mean(v.first);
      s.acc_norm = mean(v.second);
      m.acc_macro += s.acc;
      m.acc_norm_macro += s.acc_norm;
      m.subjects[subject] = s;
    }
    if (!m.subjects.empty()) {
      m.acc_macro /= double(m.subjects.size());
      m.acc_norm_macro /= double(m.subjects.size());
    }
  }
  return m;
}

}  // namespace loopq::eval
