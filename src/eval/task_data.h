#pragma once
// Zero-shot task files (../shared/data/README.md "tasks/"): one JSON document per line,
//   {"task": "...", "id": "...", "requests": [{"context": "...", "continuation": "..."}, ...],
//    "gold": 0, "subject": "..." (MMLU only)}
// Loading validates every field and reports "<file>:<line>: <problem>". Torch-free.
#include <cstdint>
#include <string>
#include <vector>

namespace loopq::eval {

struct TaskRequest {
  std::string context;
  std::string continuation;
};

struct TaskDoc {
  std::string task;
  std::string id;       // string or number in the file, kept as text
  std::string subject;  // empty when the document has none
  std::vector<TaskRequest> requests;
  int64_t gold = 0;
  int64_t line = 0;     // 1-based line in the source file (for messages)
};

// Parses JSONL text. `origin` names the source in messages. Blank lines are skipped; at most
// `limit` documents are read when limit > 0 (the rest of the text is not parsed).
std::vector<TaskDoc> parse_task_jsonl(const std::string& text, const std::string& origin,
                                      int64_t limit = 0);
// Reads and parses a task file; throws loopq::Error when it is missing, unreadable or empty.
std::vector<TaskDoc> load_task_file(const std::string& path, int64_t limit = 0);

// Names (file stems) of every *.jsonl in `dir`, sorted. Throws if `dir` is not a directory.
std::vector<std::string> list_tasks(const std::string& dir);
// "all" or a comma-separated list -> task names, in the given order, without duplicates.
// Unknown names are an error that lists the available tasks.
std::vector<std::string> resolve_task_names(const std::string& spec, const std::string& dir);
// Path of task `name` in `dir`.
std::string task_path(const std::string& dir, const std::string& name);

}  // namespace loopq::eval
