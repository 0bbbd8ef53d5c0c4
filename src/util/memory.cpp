#include "util/memory.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <limits>

#include "util/error.h"

namespace loopq {

uint64_t physical_memory_bytes() {
  const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGESIZE);
  if (pages <= 0 || page <= 0) return 0;
  return static_cast<uint64_t>(pages) * static_cast<uint64_t>(page);
}

uint64_t saturating_product(std::initializer_list<uint64_t> factors) {
  uint64_t p = 1;
  for (uint64_t f : factors)
    if (__builtin_mul_overflow(p, f, &p)) return std::numeric_limits<uint64_t>::max();
  return p;
}

uint64_t memory_budget_bytes() {
  const char* env = std::getenv("LOOPQ_MEMORY_LIMIT");
  if (!env || !*env) return physical_memory_bytes();
  char* end = nullptr;
  const double v = std::strtod(env, &end);
  double scale = 1;
  if (*end == 'K' || *end == 'k') scale = 1024.0, ++end;
  else if (*end == 'M' || *end == 'm') scale = 1048576.0, ++end;
  else if (*end == 'G' || *end == 'g') scale = 1073741824.0, ++end;
  if (end == env || *end != '\0' || !(v > 0) || v * scale > 1.8e19)
    throw Error(std::string("LOOPQ_MEMORY_LIMIT must be a positive size like 8G or 512M, got '") + env + "'");
  return static_cast<uint64_t>(v * scale);
}

void check_fits_in_memory(uint64_t bytes, const std::string& what) {
  const uint64_t budget = memory_budget_bytes();
  if (budget == 0 || bytes <= budget) return;
  const bool env = std::getenv("LOOPQ_MEMORY_LIMIT") && *std::getenv("LOOPQ_MEMORY_LIMIT");
  char buf[200];
  std::snprintf(buf, sizeof buf, " needs %.1f GiB, more than the %.1f GiB %s", bytes / 1073741824.0,
                budget / 1073741824.0,
                env ? "allowed by LOOPQ_MEMORY_LIMIT" : "of memory on this machine");
  throw Error(what + buf);
}

}  // namespace loopq
