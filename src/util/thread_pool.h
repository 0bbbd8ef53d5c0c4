#pragma once
// A small persistent worker pool, shared by the kernels, the decode step and the bench. A decode
// GEMV takes tens of microseconds, so starting std::threads per call (or waking sleeping ones
// through the OS every time) would cost as much as the work: workers spin briefly after each
// job, then sleep on a condition variable.
#include <functional>

namespace loopq {

// Runs fn(i) for every i in [0, n) on up to `threads` threads (the caller is one of them) and
// returns when all are done. Concurrent calls are serialized; a call made inside fn runs inline.
void parallel_for(int threads, int n, const std::function<void(int)>& fn);

}  // namespace loopq
