#pragma once
// Output selection over loops (docs/ouro-architecture.md §5.2). Torch-free.
#include <cstdint>
#include <string>

namespace loopq {

struct LoopLMConfig;

struct ExitMode {
  enum Kind { Last, Step, Cdf, Expected } kind = Last;
  int64_t step = 0;        // 0-based loop for Step
  double threshold = 1.0;  // q for Cdf
  std::string to_string() const;
};

// Parses "last", "step:k", "cdf:q" or "expected". Throws loopq::Error.
ExitMode parse_exit_mode(const std::string& text);
// The reference's default: config early_exit_step if in range, else cdf on
// early_exit_threshold if set, else last.
ExitMode default_exit_mode(const LoopLMConfig& cfg, int64_t loops);

}  // namespace loopq
