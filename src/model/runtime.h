#pragma once
// Process-wide runtime set-up: thread count and device selection.
#include <ATen/ATen.h>

#include <string>

namespace loopq {

// Sets ATen's intra-op threads: `threads` if > 0, else $LOOPQ_THREADS, else all cores
// (libtorch defaults to 1). Returns the count in effect.
int init_threads(int threads = 0);
// "cpu", "cuda", "cuda:N"; throws loopq::Error when CUDA is requested but unavailable.
at::Device parse_device(const std::string& name);

}  // namespace loopq
