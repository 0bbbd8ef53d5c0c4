#pragma once
// Checks a requested buffer size against the machine before allocating it, so an oversized
// flag or config fails at once with a one-line error instead of thrashing or being OOM-killed.
#include <cstdint>
#include <initializer_list>
#include <string>

namespace loopq {

// Physical memory of this machine in bytes (sysconf), or 0 if unknown.
uint64_t physical_memory_bytes();
// The budget for the checks below: $LOOPQ_MEMORY_LIMIT (bytes, or with a K/M/G suffix) when
// set, else physical memory (0 if unknown). Throws loopq::Error on a malformed value.
uint64_t memory_budget_bytes();
// Throws loopq::Error "<what> needs N GiB, more than the M GiB ..." when `bytes` exceeds the
// budget. No-op when the budget is unknown.
void check_fits_in_memory(uint64_t bytes, const std::string& what);
// a * b * ..., saturating at UINT64_MAX instead of overflowing (sizes from flags and configs).
uint64_t saturating_product(std::initializer_list<uint64_t> factors);

}  // namespace loopq
