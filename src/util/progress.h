#pragma once
// A one-line progress display on stderr: "label: 12/340 docs, 5.1 docs/s, ETA 1m04s". It is
// redrawn in place (at most 4 times a second) only when stderr is a terminal, so logs and pipes
// stay clean; finish() always prints one compact summary line. stdout is never touched.
#include <chrono>
#include <cstdint>
#include <string>

namespace loopq {

class Progress {
 public:
  // `unit` names what is counted (e.g. "docs"); `rate_unit` what the throughput counts
  // (e.g. "tok"), measured from the `work` passed to update().
  Progress(std::string label, int64_t total, std::string unit, std::string rate_unit);
  void update(int64_t done, double work);
  void finish();  // summary line; idempotent
  double elapsed_seconds() const;

 private:
  std::string label_, unit_, rate_unit_;
  int64_t total_, done_ = 0;
  double work_ = 0;
  bool tty_, drawn_ = false, finished_ = false;
  std::chrono::steady_clock::time_point start_, last_draw_;
};

// "1h02m", "4m05s", "12s".
std::string format_duration(double seconds);

}  // namespace loopq
