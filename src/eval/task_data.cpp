#include "eval/task_data.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "util/error.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace loopq::eval {
namespace {

[[noreturn]] void fail(const std::string& origin, int64_t line, const std::string& what) {
  throw Error(origin + ":" + std::to_string(line) + ": " + what);
}

std::string string_field(const json& obj, const char* key, const std::string& origin, int64_t line,
                         bool required) {
  auto it = obj.find(key);
  if (it == obj.end()) {
    if (required) fail(origin, line, std::string("missing field \"") + key + "\"");
    return "";
  }
  if (!it->is_string()) fail(origin, line, std::string("field \"") + key + "\" must be a string");
  return it->get<std::string>();
}

TaskDoc parse_doc(const std::string& text, const std::string& origin, int64_t line) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    std::string msg = e.what();
    auto nl = msg.find('\n');
    if (nl != std::string::npos) msg = msg.substr(0, nl);
    fail(origin, line, "malformed JSON (" + msg + ")");
  }
  if (!j.is_object()) fail(origin, line, "expected a JSON object");
  TaskDoc d;
  d.line = line;
  d.task = string_field(j, "task", origin, line, true);
  d.subject = string_field(j, "subject", origin, line, false);
  auto id = j.find("id");
  if (id == j.end()) fail(origin, line, "missing field \"id\"");
  if (id->is_string()) d.id = id->get<std::string>();
  else if (id->is_number_integer()) d.id = std::to_string(id->get<int64_t>());
  else fail(origin, line, "field \"id\" must be a string or an integer");

  auto reqs = j.find("requests");
  if (reqs == j.end()) fail(origin, line, "missing field \"requests\"");
  if (!reqs->is_array() || reqs->empty()) fail(origin, line, "\"requests\" must be a non-empty array");
  for (size_t i = 0; i < reqs->size(); ++i) {
    const json& r = (*reqs)[i];
    const std::string where = "requests[" + std::to_string(i) + "]";
    if (!r.is_object()) fail(origin, line, where + " must be an object");
    auto ctx = r.find("context"), cont = r.find("continuation");
    if (ctx == r.end() || !ctx->is_string())
      fail(origin, line, where + ".context missing or not a string");
    if (cont == r.end() || !cont->is_string())
      fail(origin, line, where + ".continuation missing or not a string");
    TaskRequest q{ctx->get<std::string>(), cont->get<std::string>()};
    if (q.continuation.empty()) fail(origin, line, where + ".continuation is empty");
    d.requests.push_back(std::move(q));
  }

  auto gold = j.find("gold");
  if (gold == j.end()) fail(origin, line, "missing field \"gold\"");
  if (!gold->is_number_integer()) fail(origin, line, "field \"gold\" must be an integer");
  d.gold = gold->get<int64_t>();
  if (d.gold < 0 || d.gold >= int64_t(d.requests.size()))
    fail(origin, line, "gold " + std::to_string(d.gold) + " out of range for " +
                           std::to_string(d.requests.size()) + " requests");
  return d;
}

}  // namespace

std::vector<TaskDoc> parse_task_jsonl(const std::string& text, const std::string& origin,
                                      int64_t limit) {
  std::vector<TaskDoc> docs;
  size_t pos = 0;
  int64_t line = 0;
  while (pos < text.size() && (limit <= 0 || int64_t(docs.size()) < limit)) {
    size_t nl = text.find('\n', pos);
    size_t end = nl == std::string::npos ? text.size() : nl;
    ++line;
    std::string row = text.substr(pos, end - pos);
    pos = end + 1;
    if (!row.empty() && row.back() == '\r') row.pop_back();
    if (row.find_first_not_of(" \t") == std::string::npos) continue;
    docs.push_back(parse_doc(row, origin, line));
  }
  if (docs.empty()) throw Error(origin + ": no documents");
  return docs;
}

std::vector<TaskDoc> load_task_file(const std::string& path, int64_t limit) {
  if (fs::is_directory(path)) throw Error(path + ": is a directory, expected a .jsonl file");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path + ": cannot open file");
  std::stringstream ss;
  ss << in.rdbuf();
  if (in.bad()) throw Error(path + ": read error");
  const std::string text = ss.str();
  if (text.empty()) throw Error(path + ": file is empty");
  return parse_task_jsonl(text, path, limit);
}

std::vector<std::string> list_tasks(const std::string& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) throw Error(dir + ": not a directory (--tasks-dir)");
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    if (e.path().extension() == ".jsonl" && !fs::is_directory(e.path()))
      names.push_back(e.path().stem().string());
  }
  if (ec) throw Error(dir + ": cannot list directory (" + ec.message() + ")");
  std::sort(names.begin(), names.end());
  return names;
}

std::string task_path(const std::string& dir, const std::string& name) {
  return (fs::path(dir) / (name + ".jsonl")).string();
}

std::vector<std::string> resolve_task_names(const std::string& spec, const std::string& dir) {
  const std::vector<std::string> available = list_tasks(dir);
  auto listing = [&] {
    std::string s;
    for (const auto& n : available) s += (s.empty() ? "" : ", ") + n;
    return s.empty() ? std::string("none") : s;
  };
  if (spec == "all") {
    if (available.empty()) throw Error(dir + ": no *.jsonl task files");
    return available;
  }
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos <= spec.size()) {
    size_t comma = spec.find(',', pos);
    std::string name = spec.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    while (!name.empty() && name.front() == ' ') name.erase(name.begin());
    while (!name.empty() && name.back() == ' ') name.pop_back();
    if (name.empty()) throw Error("--tasks: empty task name in '" + spec + "'");
    if (!std::binary_search(available.begin(), available.end(), name))
      throw Error("unknown task '" + name + "' in " + dir + " (available: " + listing() + ")");
    if (std::find(out.begin(), out.end(), name) == out.end()) out.push_back(name);
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  return out;
}

}  // namespace loopq::eval
