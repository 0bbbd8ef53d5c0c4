#pragma once
// JSON documents written by `loopq eval` (--json, --dump-requests).
#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "eval/loglikelihood.h"
#include "eval/perplexity.h"
#include "eval/task_metrics.h"

namespace loopq::eval {

// {"ppl", "bits_per_byte", "tokens", "bytes", "windows", "seqlen", "file", "model", "loops",
//  "exit", "per_loop": [{"loop": 1, "ppl", "bits_per_byte"}, ...]} (main numbers: exit readout)
nlohmann::json perplexity_json(const PerplexityResult& r, const std::string& file,
                               const std::string& model, const std::string& exit_mode);

// One task: the exit readout's metrics plus "per_loop" (one entry per loop readout).
nlohmann::json task_json(const TaskMetrics& main, const std::vector<TaskMetrics>& per_loop);

// One --dump-requests line (no trailing newline): task, doc_id, request_index, context_ids,
// continuation_ids, loglikelihood and is_greedy (exit readout), loop_loglikelihoods (per loop).
std::string request_dump_line(const std::string& task, const std::string& doc_id,
                              size_t request_index, const TokenizedRequest& request,
                              const RequestScore& score);

}  // namespace loopq::eval
