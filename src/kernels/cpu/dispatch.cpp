// Runtime selection of the kernel path (cpuid, or LOOPQ_KERNELS), size checks of the public API,
// and the split of a matmul over threads.
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#include "kernels/cpu/impl.h"
#include "kernels/cpu/kernels.h"
#include "util/thread_pool.h"
#include "util/error.h"

namespace loopq::kernels {
namespace {

bool cpu_has_avx512() {
  // libgcc's cpu model also checks that the OS saves the zmm state (XCR0).
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
}
bool cpu_has_avx2() { return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"); }

Path parse_env() { return path_from_setting(std::getenv("LOOPQ_KERNELS")); }

std::atomic<int> g_path{-1};


struct Fns {
  detail::KernelFn gemv, gemm;
};
Fns fns(Path p) {
  switch (p) {
    case Path::Avx512: return {detail::gemv_avx512, detail::gemm_avx512};
    case Path::Avx2: return {detail::gemv_avx2, detail::gemm_avx2};
    default: return {detail::gemv_scalar, detail::gemv_scalar};
  }
}

// Tiles per GEMM task: about 256 KiB of weights, so a task's weights stay in L2 while every
// block of rows sweeps them.
int64_t gemm_task_tiles(const PackedWeight& w) {
  return std::max<int64_t>(2, (256 << 10) / std::max<int64_t>(1, w.tile_bytes())) / 2 * 2;
}

}  // namespace

const char* path_name(Path p) {
  switch (p) {
    case Path::Scalar: return "scalar";
    case Path::Avx2: return "avx2";
    case Path::Avx512: return "avx512";
  }
  return "?";
}

bool path_supported(Path p) {
  switch (p) {
    case Path::Scalar: return true;
    case Path::Avx2: return cpu_has_avx2();
    case Path::Avx512: return cpu_has_avx512();
  }
  return false;
}

Path path_from_setting(const char* value) {
  if (!value || !*value) return cpu_has_avx512() ? Path::Avx512 : cpu_has_avx2() ? Path::Avx2 : Path::Scalar;
  const std::string v = value;
  Path p;
  if (v == "scalar") p = Path::Scalar;
  else if (v == "avx2") p = Path::Avx2;
  else if (v == "avx512") p = Path::Avx512;
  else throw Error("LOOPQ_KERNELS='" + v + "': expected scalar, avx2 or avx512");
  if (!path_supported(p)) throw Error("LOOPQ_KERNELS=" + v + ": this CPU does not support it (" + cpu_description() + ")");
  return p;
}

Path active_path() {
  int p = g_path.load();
  if (p < 0) {
    static std::once_flag once;
    static Path env_path;
    std::call_once(once, [] { env_path = parse_env(); });
    int expected = -1;
    g_path.compare_exchange_strong(expected, int(env_path));
    p = g_path.load();
  }
  return Path(p);
}

void set_path(Path p) {
  if (!path_supported(p)) throw Error(std::string("kernels: path ") + path_name(p) + " is not supported by this CPU");
  g_path.store(int(p));
}

std::string cpu_description() {
  std::string model = "unknown CPU";
  if (FILE* f = std::fopen("/proc/cpuinfo", "r")) {
    char line[512];
    while (std::fgets(line, sizeof(line), f))
      if (std::strncmp(line, "model name", 10) == 0) {
        const char* c = std::strchr(line, ':');
        model = c ? std::string(c + 2) : std::string(line);
        if (!model.empty() && model.back() == '\n') model.pop_back();
        break;
      }
    std::fclose(f);
  }
  std::string flags;
  auto add = [&](bool has, const char* n) {
    if (has) flags += std::string(flags.empty() ? "" : " ") + n;
  };
  add(__builtin_cpu_supports("avx2"), "avx2");
  add(__builtin_cpu_supports("fma"), "fma");
  add(__builtin_cpu_supports("avx512f"), "avx512f");
  add(__builtin_cpu_supports("avx512bw"), "avx512bw");
  add(__builtin_cpu_supports("avx512vl"), "avx512vl");
  add(__builtin_cpu_supports("avx512vnni"), "avx512vnni");
  add(__builtin_cpu_supports("avx512bf16"), "avx512bf16");
  return model + " [" + flags + "]";
}

void linear(const PackedWeight& w, const QuantAct& x, const Epilogue& ep, float* y, int64_t ldy, int threads) {
  if (x.in != w.in || x.in_pad != w.in_pad)
    throw Error("kernels: activations [" + std::to_string(x.rows) + ", " + std::to_string(x.in) +
                "] do not match weight in " + std::to_string(w.in) + " (padded " + std::to_string(w.in_pad) + ")");
  if (ldy < w.out) throw Error("kernels: output row stride " + std::to_string(ldy) + " < out " + std::to_string(w.out));
  if (threads < 1) throw Error("kernels: thread count must be >= 1");
  if (!y && x.rows > 0) throw Error("kernels: null output");
  if (x.rows == 0) return;
  // Group sums of the activation codes for the zero-point correction (z * sum x).
  std::vector<int32_t> xsum(size_t(x.rows * w.groups));
  const int64_t per = 32;
  parallel_for(x.rows > 4 ? threads : 1, int((x.rows + per - 1) / per), [&](int i) {
    for (int64_t r = i * per; r < std::min(x.rows, (i + 1) * per); ++r) {
      const int8_t* q = x.row(r);
      for (int64_t g = 0; g < w.groups; ++g) {
        int32_t s = 0;
        for (int64_t k = g * w.group; k < (g + 1) * w.group; ++k) s += q[k];
        xsum[size_t(r * w.groups + g)] = s;
      }
    }
  });
  detail::Job job;
  job.w = &w;
  job.x = x.q.data();
  job.ldx = x.in_pad;
  job.rows = x.rows;
  job.xscale = x.scale.data();
  job.xsum = xsum.data();
  job.ep = &ep;
  job.y = y;
  job.ldy = ldy;
  const Fns f = fns(active_path());
  if (x.rows <= 4) {
    // Decode: each thread walks its own contiguous span of 4-tile steps front to back, so its
    // memory streams (and the kernel's prefetch, which runs on into the next step) stay
    // sequential. A thread that runs out steals steps from the back of the fullest span, so one
    // the OS delays on a busy machine does not hold up the call.
    const int64_t per = 4, steps = (w.tiles + per - 1) / per;
    const int n = int(std::min<int64_t>(threads, steps));
    std::vector<std::atomic<uint64_t>> spans(static_cast<size_t>(n));  // front | back << 32
    for (int i = 0; i < n; ++i) spans[size_t(i)] = uint64_t(steps * i / n) | (uint64_t(steps * (i + 1) / n) << 32);
    auto run = [&](int64_t step) { f.gemv(job, 0, x.rows, step * per, std::min(w.tiles, (step + 1) * per)); };
    parallel_for(n, n, [&](int i) {
      for (;;) {  // own span, from the front
        uint64_t v = spans[size_t(i)].load();
        const uint32_t front = uint32_t(v), back = uint32_t(v >> 32);
        if (front >= back) break;
        if (spans[size_t(i)].compare_exchange_weak(v, uint64_t(front + 1) | (uint64_t(back) << 32))) run(front);
      }
      for (;;) {  // steal from the back of the fullest span
        int best = -1;
        uint32_t most = 0;
        for (int s2 = 0; s2 < n; ++s2) {
          const uint64_t v = spans[size_t(s2)].load();
          const uint32_t left = uint32_t(v >> 32) > uint32_t(v) ? uint32_t(v >> 32) - uint32_t(v) : 0;
          if (left > most) most = left, best = s2;
        }
        if (best < 0) break;
        uint64_t v = spans[size_t(best)].load();
        const uint32_t front = uint32_t(v), back = uint32_t(v >> 32);
        if (front < back && spans[size_t(best)].compare_exchange_weak(v, uint64_t(front) | (uint64_t(back - 1) << 32)))
          run(back - 1);
      }
    });
  } else {
    const int64_t chunk = gemm_task_tiles(w);
    const int tasks = int((w.tiles + chunk - 1) / chunk);
    parallel_for(threads, tasks, [&](int i) {
      const int64_t t0 = i * chunk, t1 = std::min(w.tiles, t0 + chunk);
      f.gemm(job, 0, x.rows, t0, t1);
    });
  }
}

void linear_f32(const PackedWeight& w, const float* x, int64_t rows, int64_t ldx, const ActParams& a,
                const Epilogue& ep, float* y, int64_t ldy, int threads, QuantAct& scratch) {
  if (rows > 0 && !x) throw Error("kernels: null input");
  quantize_act(x, rows, w.in, ldx, a, w.in_pad, scratch, rows > 4 ? threads : 1);
  linear(w, scratch, ep, y, ldy, threads);
}

}  // namespace loopq::kernels
