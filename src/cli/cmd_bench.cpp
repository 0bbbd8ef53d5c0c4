// loopq bench kernels: the packed low-bit CPU kernels against fp32 libtorch and a llama.cpp-style
// Q4_0 x Q8_0 peer, with the machine's measured read bandwidth as the yardstick. ATen appears
// only for the fp32 comparison (no torch/torch.h).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <emmintrin.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "cli/args.h"
#include "cli/bench/q4_0_ref.h"
#include "cli/commands.h"
#include "kernels/cpu/kernels.h"
#include "kernels/cpu/thread_pool.h"
#include "util/error.h"

namespace loopq::cli {
namespace {

namespace k = loopq::kernels;

const char* kBenchHelp =
    "usage: loopq bench kernels [--threads N] [--reps 5] [--cold-mib M] [--shapes 2048x2048,...]\n"
    "                           [--gemm-rows 512] [--path scalar|avx2|avx512]\n"
    "Times the packed kernels (W4A8, W4A4, W8A8; int4/int8 weights with one fp32 scale per row,\n"
    "dynamic per-token activations) on OUTxIN shapes (default 2048x2048, 5632x2048, 2048x5632,\n"
    "4096x4096):\n"
    "  GEMV, 1 row, cold: each call uses the next of enough distinct weight copies (--cold-mib,\n"
    "  default max(256 MiB, 2 x L3)) that none is in cache; GB/s of weight bytes (codes + scales)\n"
    "  and the fraction of the read bandwidth measured here (read-only sum over 1 GiB);\n"
    "  against fp32 libtorch at::linear and a llama.cpp-style Q4_0 x Q8_0 row-by-row kernel.\n"
    "  GEMM, --gemm-rows rows (prefill): GFLOP/s-equivalent (2 x rows x out x in / time) against\n"
    "  fp32 libtorch. Figures are medians of --reps runs; at::set_num_threads gets --threads.\n";

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Median over reps of the time of one call of fn().
double time_median(int reps, const std::function<void()>& fn) {
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    const auto t0 = Clock::now();
    fn();
    t.push_back(seconds_since(t0));
  }
  return median(t);
}

int64_t l3_bytes() {
  std::ifstream f("/sys/devices/system/cpu/cpu0/cache/index3/size");
  std::string s;
  if (f >> s && !s.empty()) {
    int64_t v = std::atoll(s.c_str());
    if (s.back() == 'K') v <<= 10;
    if (s.back() == 'M') v <<= 20;
    if (v > 0) return v;
  }
  const long v = sysconf(_SC_LEVEL3_CACHE_SIZE);
  return v > 0 ? v : (32 << 20);
}

// Read-only sum over 1 GiB, split over the threads: the bandwidth the GEMV can hope for.
double read_bandwidth(int threads, int reps) {
  const int64_t n = (int64_t(1) << 30) / 4;
  std::vector<float> buf(size_t(n), 1.0f);
  std::vector<float> sums(static_cast<size_t>(threads));
  const double t = time_median(reps, [&] {
    k::parallel_for(threads, threads, [&](int i) {
      const int64_t b = n / threads * i, e = i == threads - 1 ? n : b + n / threads;
      __m128 a0 = _mm_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
      const float* p = buf.data();
      int64_t j = b;
      for (; j + 16 <= e; j += 16) {
        a0 = _mm_add_ps(a0, _mm_loadu_ps(p + j));
        a1 = _mm_add_ps(a1, _mm_loadu_ps(p + j + 4));
        a2 = _mm_add_ps(a2, _mm_loadu_ps(p + j + 8));
        a3 = _mm_add_ps(a3, _mm_loadu_ps(p + j + 12));
      }
      float s[4];
      _mm_storeu_ps(s, _mm_add_ps(_mm_add_ps(a0, a1), _mm_add_ps(a2, a3)));
      float tot = s[0] + s[1] + s[2] + s[3];
      for (; j < e; ++j) tot += p[j];
      sums[size_t(i)] = tot;
    });
  });
  float check = 0;
  for (float s : sums) check += s;
  if (check != float(n) && std::fabs(check - float(n)) > 0.01f * float(n)) std::fprintf(stderr, "bandwidth sum off: %g\n", double(check));
  return double(n) * 4 / t;
}

k::PackedWeight clone(const k::PackedWeight& w) {
  k::PackedWeight c;
  c.bits = w.bits;
  c.symmetric = w.symmetric;
  c.out = w.out;
  c.in = w.in;
  c.in_pad = w.in_pad;
  c.group = w.group;
  c.groups = w.groups;
  c.tiles = w.tiles;
  c.codes = k::AlignedBytes::make(w.codes.size);
  std::memcpy(c.codes.data(), w.codes.data(), w.codes.size);
  c.scales = w.scales;
  c.zeros = w.zeros;
  return c;
}

// Symmetric per-row RTN codes of a random weight (the values do not change the timing).
k::LogicalWeight random_weight(int bits, int64_t out, int64_t in, std::mt19937& gen) {
  k::LogicalWeight w;
  w.bits = bits;
  w.out = out;
  w.in = in;
  const int lo = -(1 << (bits - 1)), hi = (1 << (bits - 1)) - 1;
  std::uniform_int_distribution<int> code(lo, hi);
  w.code.resize(size_t(out * in));
  for (auto& c : w.code) c = code(gen);
  w.scale.assign(size_t(out), 0.01f);
  w.zero.assign(size_t(out), 0);
  return w;
}

int64_t copies_for(int64_t bytes_each, int64_t pool_bytes) {
  return std::max<int64_t>(2, (pool_bytes + bytes_each - 1) / bytes_each);
}

struct Shape {
  int64_t out, in;
};

std::vector<Shape> parse_shapes(const std::string& s) {
  std::vector<Shape> out;
  size_t pos = 0;
  while (pos <= s.size()) {
    const size_t comma = std::min(s.find(',', pos), s.size());
    const std::string item = s.substr(pos, comma - pos);
    const size_t x = item.find('x');
    char* end = nullptr;
    Shape sh{0, 0};
    if (x != std::string::npos) {
      sh.out = std::strtoll(item.c_str(), &end, 10);
      const bool ok1 = end == item.c_str() + x;
      sh.in = std::strtoll(item.c_str() + x + 1, &end, 10);
      if (!ok1 || *end != '\0') sh = {0, 0};
    }
    if (sh.out < 1 || sh.in < 32 || sh.in % 32 != 0 || sh.out > 65536 || sh.in > 65536)
      throw Error("--shapes: '" + item + "' is not OUTxIN with IN a multiple of 32 (<= 65536)");
    out.push_back(sh);
    pos = comma + 1;
  }
  return out;
}

struct GemvRow {
  double us = 0, gbs = 0;
};

// Cold GEMV of one packed format: every call runs on the next distinct copy.
GemvRow bench_gemv_packed(const k::PackedWeight& w, const k::ActParams& a, int threads, int reps, int64_t pool,
                          std::mt19937& gen) {
  const int64_t n = copies_for(w.bytes(), pool);
  std::vector<k::PackedWeight> ws;
  ws.reserve(size_t(n));
  for (int64_t i = 0; i < n; ++i) ws.push_back(clone(w));
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> x(size_t(w.in)), y(size_t(w.out));
  for (auto& v : x) v = d(gen);
  k::QuantAct scratch;
  for (auto& wi : ws) k::linear_f32(wi, x.data(), 1, w.in, a, {}, y.data(), w.out, threads, scratch);  // warm-up
  const double t = time_median(reps, [&] {
    for (auto& wi : ws) k::linear_f32(wi, x.data(), 1, w.in, a, {}, y.data(), w.out, threads, scratch);
  }) / double(n);
  return {t * 1e6, double(w.bytes()) / t / 1e9};
}

GemvRow bench_gemv_q40(const Shape& s, int threads, int reps, int64_t pool, std::mt19937& gen) {
  const int64_t nb = s.in / 32, bytes = s.out * nb * int64_t(sizeof(q40::BlockQ4));
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> wf(size_t(s.out * s.in));
  for (auto& v : wf) v = d(gen);
  std::vector<q40::BlockQ4> w0(size_t(s.out * nb));
  for (int64_t o = 0; o < s.out; ++o) q40::quantize_q4_0(wf.data() + o * s.in, s.in, w0.data() + o * nb);
  wf = {};
  const int64_t n = copies_for(bytes, pool);
  std::vector<std::vector<q40::BlockQ4>> ws(size_t(n), w0);
  std::vector<float> x(size_t(s.in)), y(size_t(s.out));
  for (auto& v : x) v = d(gen);
  std::vector<q40::BlockQ8> xq(static_cast<size_t>(nb));
  const int tasks = int(std::min<int64_t>(threads, s.out));
  auto call = [&](const std::vector<q40::BlockQ4>& w) {
    q40::quantize_q8_0(x.data(), s.in, xq.data());  // ggml quantizes the activation per call too
    k::parallel_for(threads, tasks, [&](int i) {
      const int64_t per = (s.out + tasks - 1) / tasks, r0 = std::min(s.out, i * per), r1 = std::min(s.out, r0 + per);
      q40::gemv(w.data(), xq.data(), s.in, y.data(), r0, r1);
    });
  };
  for (auto& w : ws) call(w);
  const double t = time_median(reps, [&] {
    for (auto& w : ws) call(w);
  }) / double(n);
  return {t * 1e6, double(bytes) / t / 1e9};
}

GemvRow bench_gemv_fp32(const Shape& s, int reps, int64_t pool) {
  const int64_t bytes = s.out * s.in * 4, n = copies_for(bytes, pool);
  const at::Tensor w0 = at::randn({s.out, s.in});
  std::vector<at::Tensor> ws;
  for (int64_t i = 0; i < n; ++i) ws.push_back(w0.clone());
  const at::Tensor x = at::randn({1, s.in});
  for (auto& w : ws) at::linear(x, w);
  const double t = time_median(reps, [&] {
    for (auto& w : ws) at::linear(x, w);
  }) / double(n);
  return {t * 1e6, double(bytes) / t / 1e9};
}

double bench_gemm_packed(const k::PackedWeight& w, const k::ActParams& a, int64_t rows, int threads, int reps,
                         std::mt19937& gen) {
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> x(size_t(rows * w.in)), y(size_t(rows * w.out));
  for (auto& v : x) v = d(gen);
  k::QuantAct scratch;
  auto call = [&] { k::linear_f32(w, x.data(), rows, w.in, a, {}, y.data(), w.out, threads, scratch); };
  call();
  return time_median(reps, call);
}

double bench_gemm_fp32(const Shape& s, int64_t rows, int reps) {
  const at::Tensor w = at::randn({s.out, s.in}), x = at::randn({rows, s.in});
  at::linear(x, w);
  return time_median(reps, [&] { at::linear(x, w); });
}

const char* mark(bool ok) { return ok ? "met" : "MISSED"; }

}  // namespace

int cmd_bench(int argc, char** argv) {
  Args args(argc, argv, {"threads", "reps", "cold-mib", "shapes", "gemm-rows", "path"}, {});
  if (args.help()) {
    std::fputs(kBenchHelp, stdout);
    return 0;
  }
  if (args.positional().size() != 1 || args.positional()[0] != "kernels")
    throw Error("expected 'loopq bench kernels' (see loopq bench --help)");
  const int hw = int(std::max(1u, std::thread::hardware_concurrency()));
  const int threads = int(args.get_int("threads", hw, 1, 256));
  const int reps = int(args.get_int("reps", 5, 3, 1000));
  const int64_t l3 = l3_bytes();
  const int64_t pool = args.get_int("cold-mib", std::max<int64_t>(256, 2 * (l3 >> 20)), 1, 1 << 16) << 20;
  const std::vector<Shape> shapes = parse_shapes(args.get("shapes", "2048x2048,5632x2048,2048x5632,4096x4096"));
  const int64_t gemm_rows = args.get_int("gemm-rows", 512, 5, 1 << 16);
  if (args.has("path")) {
    const std::string p = args.get("path");
    if (p == "scalar") k::set_path(k::Path::Scalar);
    else if (p == "avx2") k::set_path(k::Path::Avx2);
    else if (p == "avx512") k::set_path(k::Path::Avx512);
    else throw Error("--path " + p + ": expected scalar, avx2 or avx512");
  }
  const k::Path path = k::active_path();  // LOOPQ_KERNELS errors before any output
  at::set_num_threads(threads);
  std::mt19937 gen(7);

  std::printf("CPU: %s\n", k::cpu_description().c_str());
  std::printf("threads: %d (kernels and at::set_num_threads), kernel path: %s, L3: %lld MiB, cold pool: %lld MiB, reps: %d (medians)\n",
              threads, k::path_name(path), (long long)(l3 >> 20), (long long)(pool >> 20), reps);
  const double bw = read_bandwidth(threads, reps);
  std::printf("read bandwidth (read-only sum over 1 GiB): %.1f GB/s\n\n", bw / 1e9);

  const k::ActParams a8{8, true, 1.0f, 0.0f}, a4{4, true, 1.0f, 0.0f};
  struct Fmt {
    const char* name;
    int wbits;
    k::ActParams act;
  };
  const Fmt fmts[] = {{"W4A8", 4, a8}, {"W4A4", 4, a4}, {"W8A8", 8, a8}};

  std::printf("GEMV, 1 row, cold (weights cycled through %lld MiB of copies)\n", (long long)(pool >> 20));
  std::printf("%-10s %-12s %10s %10s %8s %7s %9s\n", "shape", "kernel", "us/call", "weight MB", "GB/s", "%BW", "xQ4_0");
  bool gemv_bw_ok = true, gemv_q40_ok = true, w4a4_ok = true;
  double worst_frac = 1e9, worst_q40 = 1e9, worst_a4 = 1e9;
  for (const Shape& s : shapes) {
    char shape[32];
    std::snprintf(shape, sizeof(shape), "%lldx%lld", (long long)s.out, (long long)s.in);
    const GemvRow q = bench_gemv_q40(s, threads, reps, pool, gen);
    double w4a8_us = 0;
    for (const Fmt& f : fmts) {
      const k::PackedWeight w = k::pack(random_weight(f.wbits, s.out, s.in, gen));
      const GemvRow r = bench_gemv_packed(w, f.act, threads, reps, pool, gen);
      std::printf("%-10s %-12s %10.1f %10.2f %8.1f %6.1f%% %8.2fx\n", shape, f.name, r.us, w.bytes() / 1e6, r.gbs,
                  100 * r.gbs * 1e9 / bw, q.us / r.us);
      if (std::string(f.name) == "W4A8") {
        w4a8_us = r.us;
        worst_frac = std::min(worst_frac, r.gbs * 1e9 / bw);
        worst_q40 = std::min(worst_q40, q.us / r.us);
      }
      if (std::string(f.name) == "W4A4") worst_a4 = std::min(worst_a4, w4a8_us / r.us);
    }
    std::printf("%-10s %-12s %10.1f %10.2f %8.1f %6.1f%% %8.2fx\n", shape, "Q4_0xQ8_0", q.us,
                double(s.out * s.in / 32 * 18) / 1e6, q.gbs, 100 * q.gbs * 1e9 / bw, 1.0);
    const GemvRow f = bench_gemv_fp32(s, reps, pool);
    std::printf("%-10s %-12s %10.1f %10.2f %8.1f %6.1f%% %8.2fx\n", shape, "fp32 torch", f.us, double(s.out * s.in * 4) / 1e6,
                f.gbs, 100 * f.gbs * 1e9 / bw, q.us / f.us);
    std::fflush(stdout);
  }
  gemv_bw_ok = worst_frac >= 0.9;
  gemv_q40_ok = worst_q40 >= 1.5;

  std::printf("\nGEMM, %lld rows (prefill), GFLOP/s-equivalent = 2 x rows x out x in / time\n", (long long)gemm_rows);
  std::printf("%-10s %-12s %10s %10s %9s\n", "shape", "kernel", "ms", "GFLOP/s", "xfp32");
  double worst_gemm = 1e9, worst_gemm_a4 = 1e9;
  for (const Shape& s : shapes) {
    char shape[32];
    std::snprintf(shape, sizeof(shape), "%lldx%lld", (long long)s.out, (long long)s.in);
    const double flop = 2.0 * double(gemm_rows) * double(s.out) * double(s.in);
    const double tf = bench_gemm_fp32(s, gemm_rows, reps);
    double t48 = 0;
    for (const Fmt& f : fmts) {
      const k::PackedWeight w = k::pack(random_weight(f.wbits, s.out, s.in, gen));
      const double t = bench_gemm_packed(w, f.act, gemm_rows, threads, reps, gen);
      std::printf("%-10s %-12s %10.2f %10.1f %8.2fx\n", shape, f.name, t * 1e3, flop / t / 1e9, tf / t);
      if (std::string(f.name) == "W4A8") t48 = t, worst_gemm = std::min(worst_gemm, tf / t);
      if (std::string(f.name) == "W4A4") worst_gemm_a4 = std::min(worst_gemm_a4, t48 / t);
    }
    std::printf("%-10s %-12s %10.2f %10.1f %8.2fx\n", shape, "fp32 torch", tf * 1e3, flop / tf / 1e9, 1.0);
    std::fflush(stdout);
  }
  w4a4_ok = worst_a4 >= 0.97 && worst_gemm_a4 >= 0.97;  // equal within timing noise

  std::printf("\ntargets (worst shape):\n");
  std::printf("  W4A8 GEMV cold >= 90%% of read bandwidth:    %.1f%%   %s\n", 100 * worst_frac, mark(gemv_bw_ok));
  std::printf("  W4A8 GEMV >= 1.5x Q4_0xQ8_0:                 %.2fx   %s\n", worst_q40, mark(gemv_q40_ok));
  std::printf("  W4A8 GEMM %lld rows >= 1.5x fp32 libtorch:   %.2fx   %s\n", (long long)gemm_rows, worst_gemm, mark(worst_gemm >= 1.5));
  std::printf("  W4A4 at least as fast as W4A8 (GEMV, GEMM):  %.2fx, %.2fx   %s\n", worst_a4, worst_gemm_a4, mark(w4a4_ok));
  return 0;
}

}  // namespace loopq::cli
