// Size checks, dispatch and the thread split of the dense (fp32 / bf16) decode matmul.
#include <string>

#include "kernels/cpu/impl.h"
#include "kernels/cpu/kernels.h"
#include "util/thread_pool.h"
#include "util/error.h"

namespace loopq::kernels {

void dense_linear(const DenseWeight& w, const float* x, int64_t rows, int64_t ldx, float* y, int64_t ldy,
                  int threads) {
  if (w.out < 0 || w.in < 1 || (!w.data && w.out > 0))
    throw Error("kernels: dense weight [" + std::to_string(w.out) + ", " + std::to_string(w.in) + "] is invalid");
  if (rows < 0) throw Error("kernels: negative row count");
  if (ldx < w.in) throw Error("kernels: input row stride " + std::to_string(ldx) + " < in " + std::to_string(w.in));
  if (ldy < w.out) throw Error("kernels: output row stride " + std::to_string(ldy) + " < out " + std::to_string(w.out));
  if (threads < 1) throw Error("kernels: thread count must be >= 1");
  if (rows == 0 || w.out == 0) return;
  if (!x || !y) throw Error("kernels: null input or output");
  detail::DenseFn fn = detail::dense_scalar;
  switch (active_path()) {
    case Path::Avx512: fn = detail::dense_avx512; break;
    case Path::Avx2: fn = detail::dense_avx2; break;
    default: break;
  }
  // Blocks of 4 rows; each block's outputs in chunks of 64 weight rows (256 KiB of bf16 at
  // in = 2048), so both threads stream their own contiguous rows.
  constexpr int64_t kChunk = 64;
  const int chunks = int((w.out + kChunk - 1) / kChunk);
  for (int64_t r0 = 0; r0 < rows; r0 += 4) {
    detail::DenseJob job;
    job.w = &w;
    job.x = x + r0 * ldx;
    job.ldx = ldx;
    job.rows = rows - r0 < 4 ? rows - r0 : 4;
    job.y = y + r0 * ldy;
    job.ldy = ldy;
    parallel_for(threads, chunks, [&](int c) {
      const int64_t o0 = c * kChunk, o1 = o0 + kChunk < w.out ? o0 + kChunk : w.out;
      fn(job, o0, o1);
    });
  }
}

}  // namespace loopq::kernels
