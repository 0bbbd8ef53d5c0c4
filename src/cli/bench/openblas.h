#pragma once
// OpenBLAS, libtorch's fp32 BLAS on Debian, seen from the benchmarks: its kernel choice and its
// own thread pool, so the fp32 baseline runs at libtorch's best on --threads threads.
#include <string>

namespace loopq::cli {

// The kernel family OpenBLAS chose ("SkylakeX", ...), empty when the BLAS is not OpenBLAS.
std::string openblas_core();

// On a VM that reports a generic CPU model OpenBLAS falls back to "Prescott" (SSE3) kernels, 5x
// slower than its SkylakeX ones here (19 vs 104 GFLOP/s, 512x2048x2048, one core). Then this
// re-runs `loopq bench ARGS...` with OPENBLAS_CORETYPE set (OpenBLAS reads it once, at load),
// silently; otherwise it returns.
void fix_openblas_core(int argc, char** argv);
// at::set_num_threads sets libtorch's OpenMP pool only; OpenBLAS keeps its own pthreads (all
// cores by default). Gives it `n`, unless $OPENBLAS_NUM_THREADS says otherwise.
void set_openblas_threads(int n);

}  // namespace loopq::cli
