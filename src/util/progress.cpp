#include "util/progress.h"

#include <unistd.h>

#include <cmath>
#include <cstdio>

namespace loopq {

std::string format_duration(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  const long long t = (long long)std::llround(s);
  char buf[32];
  if (t >= 3600) std::snprintf(buf, sizeof buf, "%lldh%02lldm", t / 3600, (t / 60) % 60);
  else if (t >= 60) std::snprintf(buf, sizeof buf, "%lldm%02llds", t / 60, t % 60);
  else std::snprintf(buf, sizeof buf, "%llds", t);
  return buf;
}

Progress::Progress(std::string label, int64_t total, std::string unit, std::string rate_unit)
    : label_(std::move(label)), unit_(std::move(unit)), rate_unit_(std::move(rate_unit)),
      total_(total), tty_(isatty(fileno(stderr)) == 1),
      start_(std::chrono::steady_clock::now()), last_draw_(start_) {}

double Progress::elapsed_seconds() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

void Progress::update(int64_t done, double work) {
  done_ = done;
  work_ = work;
  if (!tty_ || finished_) return;
  const auto now = std::chrono::steady_clock::now();
  if (done < total_ && drawn_ && now - last_draw_ < std::chrono::milliseconds(250)) return;
  last_draw_ = now;
  const double el = elapsed_seconds();
  const double eta = done > 0 ? el * double(total_ - done) / double(done) : NAN;
  std::fprintf(stderr, "\r\033[K%s: %lld/%lld %s, %.1f %s/s, ETA %s", label_.c_str(),
               (long long)done, (long long)total_, unit_.c_str(), el > 0 ? work / el : 0.0,
               rate_unit_.c_str(), format_duration(eta).c_str());
  std::fflush(stderr);
  drawn_ = true;
}

void Progress::finish() {
  if (finished_) return;
  finished_ = true;
  const double el = elapsed_seconds();
  if (drawn_) std::fprintf(stderr, "\r\033[K");
  std::fprintf(stderr, "%s: %lld %s in %s (%.2f s, %.1f %s/s)\n", label_.c_str(), (long long)done_,
               unit_.c_str(), format_duration(el).c_str(), el, el > 0 ? work_ / el : 0.0,
               rate_unit_.c_str());
  std::fflush(stderr);
}

}  // namespace loopq
