// Task files, lm-eval request tokenization and task metrics on hand-made documents with fixed
// log-likelihoods (no model involved).
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>

#include <unistd.h>

#include "eval/request_encoding.h"
#include "eval/task_data.h"
#include "eval/task_metrics.h"
#include "util/error.h"

using namespace loopq;
using eval::RequestOutcome;
using eval::TaskDoc;

namespace {

TaskDoc doc(std::vector<std::string> continuations, int64_t gold, std::string subject = "") {
  TaskDoc d;
  d.task = "t";
  d.id = "d";
  d.gold = gold;
  d.subject = std::move(subject);
  for (auto& c : continuations) d.requests.push_back({"ctx", c});
  return d;
}

std::vector<RequestOutcome> lls(std::vector<double> v) {
  std::vector<RequestOutcome> out;
  for (double x : v) out.push_back({x, false, 1});
  return out;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

// Byte-level encoder: one id per byte.
std::vector<int32_t> bytes_encode(const std::string& s) {
  std::vector<int32_t> out;
  for (unsigned char c : s) out.push_back(c);
  return out;
}

// Merges "ab" into id 300: context and continuation tokens can fuse across the boundary.
std::vector<int32_t> merging_encode(const std::string& s) {
  std::vector<int32_t> out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == 'a' && i + 1 < s.size() && s[i + 1] == 'b') {
      out.push_back(300);
      ++i;
    } else {
      out.push_back((unsigned char)s[i]);
    }
  }
  return out;
}

}  // namespace

TEST(EvalMetricsTest, AccAndAccNormUseCodePointLengths) {
  EXPECT_EQ(eval::utf8_length(" \xC3\xA9\xE2\x82\xAC"), 3);  // " é€": 6 bytes, 3 characters
  EXPECT_EQ(eval::utf8_length("\xF0\x9F\x98\x80!"), 2);
  std::vector<TaskDoc> docs = {
      // acc: -2 > -3 picks 0; acc_norm: -2/2 = -1 < -3/5 = -0.6 picks 1.
      doc({" a", " bbbb"}, 1),
      // Multi-byte: " é€" (3 chars, 6 bytes) vs " xxxx" (5 chars). acc_norm by characters:
      // -3/3 = -1 vs -4.5/5 = -0.9 -> 1. By bytes it would be -0.5 vs -0.9 -> 0.
      doc({" \xC3\xA9\xE2\x82\xAC", " xxxx"}, 1),
      // Ties go to the first request (numpy argmax).
      doc({" c", " d"}, 0),
      doc({" c", " d", " e"}, 2),
  };
  std::vector<std::vector<RequestOutcome>> out = {lls({-2, -3}), lls({-3, -4.5}), lls({-1, -1}),
                                                  lls({-5, -1, -2})};
  auto m = eval::compute_task_metrics("arc_easy", docs, out);
  EXPECT_FALSE(m.greedy_task);
  EXPECT_EQ(m.docs, 4);
  EXPECT_DOUBLE_EQ(m.acc, 0.25);       // only doc 2 (tie -> 0 == gold)
  EXPECT_DOUBLE_EQ(m.acc_norm, 0.75);  // docs 0, 1, 2
  // acc values {0, 0, 1, 0}: sample std = 0.5, / sqrt(4) = 0.25.
  EXPECT_DOUBLE_EQ(m.acc_stderr, 0.25);
  EXPECT_DOUBLE_EQ(eval::mean_stderr({1, 0, 1, 1}), 0.25);
  EXPECT_DOUBLE_EQ(eval::mean_stderr({1}), 0.0);
  EXPECT_TRUE(m.subjects.empty());
}

TEST(EvalMetricsTest, MmluPerSubjectMacroAndMicro) {
  std::vector<TaskDoc> docs = {doc({" A", " B"}, 0, "algebra"), doc({" A", " B"}, 1, "algebra"),
                               doc({" A", " B"}, 0, "algebra"), doc({" A", " B"}, 1, "biology")};
  // algebra: right, right, wrong (2/3); biology: wrong (0/1).
  std::vector<std::vector<RequestOutcome>> out = {lls({-1, -2}), lls({-2, -1}), lls({-2, -1}),
                                                  lls({-1, -2})};
  auto m = eval::compute_task_metrics("mmlu", docs, out);
  ASSERT_EQ(m.subjects.size(), 2u);
  EXPECT_EQ(m.subjects["algebra"].docs, 3);
  EXPECT_NEAR(m.subjects["algebra"].acc, 2.0 / 3.0, 1e-12);
  EXPECT_DOUBLE_EQ(m.subjects["biology"].acc, 0.0);
  EXPECT_NEAR(m.acc_macro, 1.0 / 3.0, 1e-12);
  EXPECT_DOUBLE_EQ(m.acc, 0.5);  // micro
}

TEST(EvalMetricsTest, LambadaGreedyAccuracyAndPerplexity) {
  std::vector<TaskDoc> docs = {doc({" signs"}, 0), doc({" docks"}, 0), doc({" x"}, 0)};
  std::vector<std::vector<RequestOutcome>> out = {
      {{-0.5, true, 1}}, {{-3.0, false, 2}}, {{-1.5, true, 3}}};
  auto m = eval::compute_task_metrics("lambada", docs, out);
  EXPECT_TRUE(m.greedy_task);
  EXPECT_NEAR(m.acc, 2.0 / 3.0, 1e-12);
  EXPECT_EQ(m.continuation_tokens, 6);
  EXPECT_NEAR(m.ppl, std::exp(5.0 / 6.0), 1e-12);
  EXPECT_NEAR(m.ppl_doc, std::exp(5.0 / 3.0), 1e-12);
  // A single-request task is greedy-scored whatever its name; multiple choice is not.
  EXPECT_TRUE(eval::is_greedy_task("cloze", docs));
  EXPECT_FALSE(eval::is_greedy_task("piqa", {doc({" a", " b"}, 0)}));
  EXPECT_THROW(eval::compute_task_metrics("lambada", docs, {out[0]}), Error);
}

TEST(EvalTaskDataTest, ParsesDocumentsAndLimit) {
  const std::string text =
      "{\"task\": \"piqa\", \"id\": \"0\", \"requests\": [{\"context\": \"Q\", \"continuation\": \" a\"},"
      " {\"context\": \"Q\", \"continuation\": \" b\"}], \"gold\": 1}\n"
      "\n"
      "{\"task\": \"mmlu\", \"id\": 7, \"subject\": \"law\", \"requests\": [{\"context\": \"\","
      " \"continuation\": \" \\u00e9\"}], \"gold\": 0}\r\n"
      "{\"task\": \"x\", \"id\": \"2\", \"requests\": [{\"context\": \"c\", \"continuation\": \"d\"}], \"gold\": 0}";
  auto docs = eval::parse_task_jsonl(text, "t.jsonl");
  ASSERT_EQ(docs.size(), 3u);
  EXPECT_EQ(docs[0].gold, 1);
  EXPECT_EQ(docs[0].requests[1].continuation, " b");
  EXPECT_EQ(docs[1].id, "7");
  EXPECT_EQ(docs[1].subject, "law");
  EXPECT_EQ(docs[1].line, 3);
  EXPECT_EQ(docs[1].requests[0].continuation, " \xC3\xA9");
  EXPECT_EQ(eval::parse_task_jsonl(text, "t.jsonl", 2).size(), 2u);
}

TEST(EvalTaskDataTest, ErrorsNameFileAndLine) {
  const std::string good =
      "{\"task\": \"a\", \"id\": \"0\", \"requests\": [{\"context\": \"c\", \"continuation\": \" x\"}], \"gold\": 0}\n";
  auto err = [&](const std::string& bad_line) {
    return error_of([&] { eval::parse_task_jsonl(good + "\n" + bad_line + "\n" + good, "tasks/a.jsonl"); });
  };
  EXPECT_NE(err("{\"task\": \"a\", oops").find("tasks/a.jsonl:3: malformed JSON"), std::string::npos);
  EXPECT_NE(err("[1, 2]").find("tasks/a.jsonl:3: expected a JSON object"), std::string::npos);
  EXPECT_NE(err("{\"task\": \"a\", \"id\": \"1\", \"requests\": [], \"gold\": 0}").find(":3: \"requests\""),
            std::string::npos);
  EXPECT_NE(err("{\"task\": \"a\", \"id\": \"1\", \"requests\": [{\"context\": \"c\", \"continuation\": \" x\"}]}")
                .find(":3: missing field \"gold\""),
            std::string::npos);
  EXPECT_NE(err("{\"task\": \"a\", \"id\": \"1\", \"requests\": [{\"context\": \"c\", \"continuation\": \" x\"}], \"gold\": 1}")
                .find(":3: gold 1 out of range"),
            std::string::npos);
  EXPECT_NE(err("{\"task\": \"a\", \"id\": \"1\", \"requests\": [{\"context\": \"c\", \"continuation\": 5}], \"gold\": 0}")
                .find(":3: requests[0].continuation"),
            std::string::npos);
  EXPECT_NE(err("{\"task\": \"a\", \"id\": \"1\", \"requests\": [{\"context\": \"c\", \"continuation\": \"\"}], \"gold\": 0}")
                .find(":3: requests[0].continuation is empty"),
            std::string::npos);
  EXPECT_NE(err("{\"task\": \"a\", \"id\": 1.5, \"requests\": [{\"context\": \"c\", \"continuation\": \"x\"}], \"gold\": 0}")
                .find(":3: field \"id\""),
            std::string::npos);
  EXPECT_NE(error_of([] { eval::parse_task_jsonl("\n\n", "e.jsonl"); }).find("e.jsonl: no documents"),
            std::string::npos);
}

TEST(EvalTaskDataTest, TaskDirectoryNames) {
  namespace fs = std::filesystem;
  fs::path dir = fs::temp_directory_path() / ("loopq_eval_tasks_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  for (const char* n : {"piqa.jsonl", "arc_easy.jsonl", "notes.txt"}) std::ofstream(dir / n) << "\n";
  EXPECT_EQ(eval::list_tasks(dir.string()), (std::vector<std::string>{"arc_easy", "piqa"}));
  EXPECT_EQ(eval::resolve_task_names("all", dir.string()), (std::vector<std::string>{"arc_easy", "piqa"}));
  EXPECT_EQ(eval::resolve_task_names("piqa, arc_easy,piqa", dir.string()),
            (std::vector<std::string>{"piqa", "arc_easy"}));
  std::string e = error_of([&] { eval::resolve_task_names("piqa,hellaswag", dir.string()); });
  EXPECT_NE(e.find("unknown task 'hellaswag'"), std::string::npos) << e;
  EXPECT_NE(e.find("arc_easy, piqa"), std::string::npos) << e;
  EXPECT_NE(error_of([&] { eval::load_task_file((dir / "piqa.jsonl").string()); }).find("no documents"),
            std::string::npos);
  EXPECT_THROW(eval::load_task_file((dir / "missing.jsonl").string()), Error);
  fs::remove_all(dir);
  EXPECT_THROW(eval::list_tasks(dir.string()), Error);
}

TEST(EvalRequestEncodingTest, LmEvalEncodePair) {
  // Trailing spaces of the context move to the continuation.
  auto r = eval::encode_request("Answer: ", "B", bytes_encode, std::nullopt);
  EXPECT_EQ(r.context, (std::vector<int64_t>{'A', 'n', 's', 'w', 'e', 'r', ':'}));
  EXPECT_EQ(r.continuation, (std::vector<int64_t>{' ', 'B'}));
  // Continuation ids are whole[len(ctx):], even when the boundary tokens fuse.
  r = eval::encode_request("xa", "bc", merging_encode, std::nullopt);
  EXPECT_EQ(r.context, (std::vector<int64_t>{'x', 'a'}));  // enc("xa")
  EXPECT_EQ(r.continuation, (std::vector<int64_t>{'c'}));  // enc("xabc") = [x, 300, c] from index 2
  EXPECT_THROW(eval::encode_request("xa", "b", merging_encode, std::nullopt), Error);  // nothing left
  // An empty context is the <|endoftext|> token, and the continuation is encoded alone.
  r = eval::encode_request("", " hi", bytes_encode, 50256);
  EXPECT_EQ(r.context, (std::vector<int64_t>{50256}));
  EXPECT_EQ(r.continuation, (std::vector<int64_t>{' ', 'h', 'i'}));
  EXPECT_THROW(eval::encode_request("", " hi", bytes_encode, std::nullopt), Error);
}
