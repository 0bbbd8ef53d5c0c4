#include "model/exit_mode.h"

#include <cstdlib>

#include "model/config.h"
#include "util/error.h"

namespace loopq {

std::string ExitMode::to_string() const {
  switch (kind) {
    case Last: return "last";
    case Step: return "step:" + std::to_string(step);
    case Cdf: return "cdf:" + std::to_string(threshold);
    case Expected: return "expected";
  }
  return "?";
}

ExitMode parse_exit_mode(const std::string& text) {
  ExitMode m;
  auto number_after = [&](size_t prefix) {
    std::string rest = text.substr(prefix);
    char* end = nullptr;
    double v = std::strtod(rest.c_str(), &end);
    if (rest.empty() || *end != '\0') throw Error("--exit: bad number in '" + text + "'");
    return v;
  };
  if (text == "last") {
    m.kind = ExitMode::Last;
  } else if (text == "expected") {
    m.kind = ExitMode::Expected;
  } else if (text.rfind("step:", 0) == 0) {
    double v = number_after(5);
    if (v < 0 || v != static_cast<int64_t>(v)) throw Error("--exit step:k needs an integer k >= 0");
    m.kind = ExitMode::Step;
    m.step = static_cast<int64_t>(v);
  } else if (text.rfind("cdf:", 0) == 0) {
    double v = number_after(4);
    if (!(v >= 0 && v <= 1)) throw Error("--exit cdf:q needs 0 <= q <= 1");
    m.kind = ExitMode::Cdf;
    m.threshold = v;
  } else {
    throw Error("--exit must be last, step:k, cdf:q or expected, got '" + text + "'");
  }
  return m;
}

ExitMode default_exit_mode(const LoopLMConfig& cfg, int64_t loops) {
  ExitMode m;
  if (cfg.early_exit_step && *cfg.early_exit_step >= 0 && *cfg.early_exit_step < loops) {
    m.kind = ExitMode::Step;
    m.step = *cfg.early_exit_step;
  } else if (cfg.early_exit_threshold) {
    m.kind = ExitMode::Cdf;
    m.threshold = *cfg.early_exit_threshold;
  }
  return m;
}

}  // namespace loopq
