// loopq bench kernels: the packed low-bit CPU kernels against fp32 libtorch and a llama.cpp-style
// Q4_0 x Q8_0 peer, with the machine's measured read bandwidth as the yardstick. ATen appears
// only for the fp32 comparison (no torch/torch.h).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <dlfcn.h>
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
#include "cli/bench/bandwidth.h"
#include "cli/bench/openblas.h"
#include "cli/bench/timing.h"
#include "cli/bench/q4_0_ref.h"
#include "cli/commands.h"
#include "kernels/cpu/fwht.h"
#include "kernels/cpu/kernels.h"
#include "util/thread_pool.h"
#include "quant/hadamard.h"
#include "util/error.h"

namespace loopq::cli {
namespace {

namespace k = loopq::kernels;

const char* kBenchHelp =
    "usage: loopq bench kernels [--threads N] [--reps 5] [--cold-mib M] [--shapes 2048x2048,...]\n"
    "                           [--gemm-rows 512] [--path scalar|avx2|avx512]\n"
    "Times the packed kernels (W4A8, W4A4, W8A8; int4/int8 weights with one fp32 scale per row,\n"
    "and W4A8 with a scale per group of 128;\n"
    "dynamic per-token activations) on OUTxIN shapes (default 2048x2048, 5632x2048, 2048x5632,\n"
    "4096x4096):\n"
    "  GEMV, 1 row (and W4A8 with 4 rows), cold: each call uses the next of enough distinct weight copies (--cold-mib,\n"
    "  default max(256 MiB, 2 x L3)) that none is in cache; GB/s of weight bytes (codes + scales)\n"
    "  and the fraction of the read bandwidth measured here (read-only sum over 1 GiB);\n"
    "  against fp32 libtorch (at::linear on a [1, in] row, at::mv on a vector) and a llama.cpp-style\n"
    "  Q4_0 x Q8_0 row-by-row kernel.\n"
    "  GEMM, --gemm-rows rows (prefill): GFLOP/s-equivalent (2 x rows x out x in / time) against\n"
    "  fp32 libtorch.\n"
    "  Online rotation (what W4A4 adds): the fast Walsh-Hadamard transform against the same\n"
    "  Kronecker factors as libtorch GEMMs, n = 2048 and 5632, 1 and --gemm-rows rows.\n"
    "Figures are medians of --reps runs; at::set_num_threads gets --threads.\n"
    "If OpenBLAS falls back to generic (SSE3) kernels on this CPU, the run restarts itself with\n"
    "OPENBLAS_CORETYPE=SkylakeX (AVX-512) or Haswell (AVX2) so the fp32 baseline is not handicapped.\n";

using bench::Clock;
using bench::median;
using bench::seconds_since;

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

// Named passes timed round-robin, rep by rep, so every kernel (and the bandwidth probe) sees the
// same machine conditions; a busy machine then shifts them together. Odd reps run in reverse
// order, so no pass always follows the same neighbour. Returns every pass's times per rep.
struct Pass {
  std::string name;
  std::function<void()> run;
};
std::vector<std::vector<double>> interleaved(const std::vector<Pass>& passes, int reps) {
  for (const Pass& p : passes) p.run();  // warm-up: page faults, pool threads, code
  std::vector<std::vector<double>> t(passes.size());
  for (int r = 0; r < reps; ++r)
    for (size_t j = 0; j < passes.size(); ++j) {
      const size_t i = r % 2 ? passes.size() - 1 - j : j;
      const auto t0 = Clock::now();
      passes[i].run();
      t[i].push_back(seconds_since(t0));
    }
  return t;
}

std::vector<double> medians(const std::vector<std::vector<double>>& t) {
  std::vector<double> m;
  for (const auto& v : t) m.push_back(median(v));
  return m;
}

// Median over reps of a[r] / b[r]: ratios of passes timed next to each other.
double median_ratio(const std::vector<double>& a, const std::vector<double>& b) {
  std::vector<double> r;
  for (size_t i = 0; i < a.size(); ++i) r.push_back(a[i] / b[i]);
  return median(r);
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
k::LogicalWeight random_weight(int bits, int64_t out, int64_t in, std::mt19937& gen, int64_t group = 0) {
  k::LogicalWeight w;
  w.bits = bits;
  w.out = out;
  w.in = in;
  w.group_size = group;
  const int lo = -(1 << (bits - 1)), hi = (1 << (bits - 1)) - 1;
  std::uniform_int_distribution<int> code(lo, hi);
  w.code.resize(size_t(out * in));
  for (auto& c : w.code) c = code(gen);
  w.scale.assign(size_t(out * w.groups()), 0.01f);
  w.zero.assign(size_t(out * w.groups()), 0);
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
    if (sh.out < 1 || sh.in < 128 || sh.in % 128 != 0 || sh.out > 65536 || sh.in > 65536)
      throw Error("--shapes: '" + item + "' is not OUTxIN with IN a multiple of 128 (<= 65536)");
    out.push_back(sh);
    pos = comma + 1;
  }
  return out;
}

// Cold GEMV passes: each pass calls the kernel once on every one of n distinct weight copies.
struct PackedPool {
  std::vector<k::PackedWeight> ws;
  std::vector<float> x, y;
  k::QuantAct scratch;
  PackedPool(const k::PackedWeight& w, int64_t pool, std::mt19937& gen) {
    const int64_t n = copies_for(w.bytes(), pool);
    for (int64_t i = 0; i < n; ++i) ws.push_back(clone(w));
    std::normal_distribution<float> d(0.0f, 1.0f);
    x.resize(size_t(4 * w.in));
    y.resize(size_t(4 * w.out));
    for (auto& v : x) v = d(gen);
  }
  void pass(const k::ActParams& a, int threads, int64_t rows = 1) {
    for (auto& w : ws) k::linear_f32(w, x.data(), rows, w.in, a, {}, y.data(), w.out, threads, scratch);
  }
};

struct Q40Pool {
  int64_t out, in, nb;
  std::vector<std::vector<q40::BlockQ4>> ws;
  std::vector<float> x, y;
  std::vector<q40::BlockQ8> xq;
  Q40Pool(const Shape& s, int64_t pool, std::mt19937& gen) : out(s.out), in(s.in), nb(s.in / 32) {
    std::normal_distribution<float> d(0.0f, 1.0f);
    std::vector<float> wf(size_t(s.out * s.in));
    for (auto& v : wf) v = d(gen);
    std::vector<q40::BlockQ4> w0(size_t(s.out * nb));
    for (int64_t o = 0; o < s.out; ++o) q40::quantize_q4_0(wf.data() + o * s.in, s.in, w0.data() + o * nb);
    ws.assign(size_t(copies_for(bytes(), pool)), w0);
    x.resize(size_t(s.in));
    y.resize(size_t(s.out));
    xq.resize(size_t(nb));
    for (auto& v : x) v = d(gen);
  }
  int64_t bytes() const { return out * nb * int64_t(sizeof(q40::BlockQ4)); }
  void pass(int threads) {
    // Rows split in 128-row tasks over the same pool as the packed kernels.
    const int tasks = int((out + 127) / 128);
    for (auto& w : ws) {
      q40::quantize_q8_0(x.data(), in, xq.data());  // ggml quantizes the activation per call too
      parallel_for(threads, tasks, [&](int i) {
        q40::gemv(w.data(), xq.data(), in, y.data(), i * 128, std::min<int64_t>(out, (i + 1) * 128));
      });
    }
  }
};

// fp32 libtorch on the same cold schedule: at::linear on a [1, in] row (what DenseLinear calls;
// BLAS sgemm with M = 1) and at::mv on a vector (BLAS sgemv, libtorch's fastest fp32 GEMV).
struct Fp32Pool {
  std::vector<at::Tensor> ws;
  at::Tensor x, xv;
  Fp32Pool(const Shape& s, int64_t pool) {
    const at::Tensor w0 = at::randn({s.out, s.in});
    for (int64_t i = 0, n = copies_for(s.out * s.in * 4, pool); i < n; ++i) ws.push_back(w0.clone());
    x = at::randn({1, s.in});
    xv = x.reshape({s.in});
  }
  void pass_linear() {
    for (auto& w : ws) at::linear(x, w);
  }
  void pass_mv() {
    for (auto& w : ws) at::mv(w, xv);
  }
};

// oneDNN's s8 GEMM, through the libdnnl.so.2 that libtorch already loads (Debian ships no
// headers without libdnnl-dev, so the C entry point is looked up by name). Row-major
// C[M][N] (int32) = A[M][K] (u8) x B (s8), here B = W [N][K] transposed: the integer product
// of W8A8 without unpacking, scales or epilogue, i.e. a floor for any int8 GEMM here.
struct Dnnl {
  using Gemm = int (*)(char, char, char, int64_t, int64_t, int64_t, float, const uint8_t*, int64_t, uint8_t,
                       const int8_t*, int64_t, int8_t, float, int32_t*, int64_t, const int32_t*);
  Gemm gemm = nullptr;
  std::string version;
  Dnnl() {
    void* h = dlopen("libdnnl.so.2", RTLD_NOW | RTLD_NOLOAD);
    if (!h) h = dlopen("libdnnl.so.2", RTLD_NOW);
    if (!h) return;
    gemm = reinterpret_cast<Gemm>(dlsym(h, "dnnl_gemm_u8s8s32"));
    struct V {
      int major, minor, patch;
      const char* hash;
      unsigned cpu_runtime, gpu_runtime;
    };
    using VersionFn = const V* (*)();
    if (const auto vf = reinterpret_cast<VersionFn>(dlsym(h, "dnnl_version"))) {
      const V* v = vf();
      version = std::to_string(v->major) + "." + std::to_string(v->minor) + "." + std::to_string(v->patch);
    }
  }
};

const char* mark(bool ok) { return ok ? "met" : "MISSED"; }

}  // namespace

int cmd_bench(int argc, char** argv) {
  fix_openblas_core(argc, argv);  // for both: the fp32 baseline should be libtorch at its best
  if (argc >= 1 && std::string(argv[0]) == "model") return bench_model(argc - 1, argv + 1);
  Args args(argc, argv, {"threads", "reps", "cold-mib", "shapes", "gemm-rows", "path"}, {});
  if (args.help()) {
    std::fputs(kBenchHelp, stdout);
    return 0;
  }
  if (args.positional().size() != 1 || args.positional()[0] != "kernels")
    throw Error("expected 'loopq bench kernels' or 'loopq bench model' (see loopq bench --help)");
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
  set_openblas_threads(threads);
  std::mt19937 gen(7);

  std::printf("CPU: %s\n", k::cpu_description().c_str());
  const char* forced = std::getenv("OPENBLAS_CORETYPE");
  std::printf("fp32 baseline: libtorch at::linear, OpenBLAS core %s%s%s\n", openblas_core().empty() ? "(not OpenBLAS)" : openblas_core().c_str(),
              forced ? ", OPENBLAS_CORETYPE=" : "", forced ? forced : "");
  std::printf("threads: %d (kernels and at::set_num_threads), kernel path: %s, L3: %lld MiB, cold pool: %lld MiB, reps: %d (medians)",
              threads, k::path_name(path), (long long)(l3 >> 20), (long long)(pool >> 20), reps);
  BandwidthProbe probe(threads);
  std::printf("\n");

  const k::ActParams a8{8, true, 1.0f, 0.0f}, a4{4, true, 1.0f, 0.0f};
  std::printf("GEMV, 1 row, cold (each kernel cycles through %lld MiB of weight copies); read BW = read-only\n"
              "sum over 1 GiB timed in the same rounds; %%BW = median over rounds of weight GB/s / read BW;\n"
              "xQ4_0 = speed-up over Q4_0xQ8_0\n",
              (long long)(pool >> 20));
  std::printf("%-10s %-11s %9s %9s %7s %8s %7s %7s\n", "shape", "kernel", "us/call", "weight MB", "GB/s", "read BW", "%BW",
              "xQ4_0");
  double worst_frac = 1e9, worst_q40 = 1e9, worst_a4 = 1e9;
  for (const Shape& s : shapes) {
    char shape[32];
    std::snprintf(shape, sizeof(shape), "%lldx%lld", (long long)s.out, (long long)s.in);
    const k::PackedWeight w4 = k::pack(random_weight(4, s.out, s.in, gen));
    const k::PackedWeight w8 = k::pack(random_weight(8, s.out, s.in, gen));
    const k::PackedWeight w4g = k::pack(random_weight(4, s.out, s.in, gen, 128));
    PackedPool p4(w4, pool, gen), p8(w8, pool, gen), p4g(w4g, pool, gen);
    Q40Pool q(s, pool, gen);
    Fp32Pool f(s, pool);
    const std::vector<Pass> passes = {{"bw", [&] { probe.pass(); }},
                                      {"W4A8", [&] { p4.pass(a8, threads); }},
                                      {"W4A4", [&] { p4.pass(a4, threads); }},
                                      {"W8A8", [&] { p8.pass(a8, threads); }},
                                      {"Q4_0xQ8_0", [&] { q.pass(threads); }},
                                      {"fp32 linear", [&] { f.pass_linear(); }},
                                      {"W4A8 4rows", [&] { p4.pass(a8, threads, 4); }},
                                      {"fp32 mv", [&] { f.pass_mv(); }},
                                      {"W4A8 g128", [&] { p4g.pass(a8, threads); }}};
    const std::vector<std::vector<double>> times = interleaved(passes, reps);
    const std::vector<double> t = medians(times);
    const double bw = double(probe.read_bytes()) / t[0];
    const double calls[] = {1, double(p4.ws.size()), double(p4.ws.size()), double(p8.ws.size()), double(q.ws.size()),
                            double(f.ws.size()), double(p4.ws.size()), double(f.ws.size()), double(p4g.ws.size())};
    const double bytes[] = {0, double(w4.bytes()), double(w4.bytes()), double(w8.bytes()), double(q.bytes()),
                            double(s.out * s.in * 4), double(w4.bytes()), double(s.out * s.in * 4), double(w4g.bytes())};
    const double q_us = t[4] / calls[4] * 1e6;
    // %BW: median over reps of (weight bytes / pass time) / (probe bytes / probe time) of the same rep.
    auto frac = [&](size_t i) {
      return median_ratio(times[0], times[i]) * bytes[i] * calls[i] / double(probe.read_bytes());
    };
    for (size_t i = 1; i < passes.size(); ++i) {
      const double us = t[i] / calls[i] * 1e6, gbs = bytes[i] / (us * 1e-6) / 1e9;
      std::printf("%-10s %-11s %9.1f %9.2f %7.1f %8.1f %6.1f%% %6.2fx\n", shape, passes[i].name.c_str(), us, bytes[i] / 1e6,
                  gbs, bw / 1e9, 100 * frac(i), q_us / us);
    }
    worst_frac = std::min(worst_frac, frac(1));
    worst_q40 = std::min(worst_q40, median_ratio(times[4], times[1]) * calls[1] / calls[4]);
    worst_a4 = std::min(worst_a4, median_ratio(times[1], times[2]));
    std::fflush(stdout);
  }
  const bool gemv_bw_ok = worst_frac >= 0.9, gemv_q40_ok = worst_q40 >= 1.5;

  const Dnnl dnnl;
  std::printf("\nGEMM, %lld rows (prefill, activations quantized per token inside the timing),\n"
              "GFLOP/s-equivalent = 2 x rows x out x in / time%s%s\n", (long long)gemm_rows,
              dnnl.gemm ? "; oneDNN u8s8 = dnnl_gemm_u8s8s32 of oneDNN " : "", dnnl.gemm ? dnnl.version.c_str() : "");
  std::printf("%-10s %-11s %9s %9s %7s\n", "shape", "kernel", "ms", "GFLOP/s", "xfp32");
  double worst_gemm = 1e9, worst_gemm_a4 = 1e9;
  for (const Shape& s : shapes) {
    char shape[32];
    std::snprintf(shape, sizeof(shape), "%lldx%lld", (long long)s.out, (long long)s.in);
    const double flop = 2.0 * double(gemm_rows) * double(s.out) * double(s.in);
    const k::PackedWeight w4 = k::pack(random_weight(4, s.out, s.in, gen));
    const k::PackedWeight w8 = k::pack(random_weight(8, s.out, s.in, gen));
    std::normal_distribution<float> d(0.0f, 1.0f);
    std::vector<float> x(size_t(gemm_rows * s.in)), y(size_t(gemm_rows * s.out));
    for (auto& v : x) v = d(gen);
    k::QuantAct scratch;
    const at::Tensor wf = at::randn({s.out, s.in}), xf = at::randn({gemm_rows, s.in});
    auto packed = [&](const k::PackedWeight& w, const k::ActParams& a) {
      return [&, a] { k::linear_f32(w, x.data(), gemm_rows, s.in, a, {}, y.data(), s.out, threads, scratch); };
    };
    const k::PackedWeight w4g = k::pack(random_weight(4, s.out, s.in, gen, 128));
    std::vector<Pass> passes = {{"W4A8", packed(w4, a8)},
                                {"W4A4", packed(w4, a4)},
                                {"W8A8", packed(w8, a8)},
                                {"fp32 linear", [&] { at::linear(xf, wf); }},
                                {"W4A8 g128", packed(w4g, a8)}};
    std::vector<uint8_t> au8(size_t(gemm_rows * s.in), 100);
    std::vector<int8_t> bs8(size_t(s.out * s.in), 3);
    std::vector<int32_t> c32(size_t(gemm_rows * s.out));
    if (dnnl.gemm)
      passes.push_back({"oneDNN u8s8", [&] {
                          const int32_t co = 0;
                          if (dnnl.gemm('N', 'T', 'F', gemm_rows, s.out, s.in, 1.0f, au8.data(), s.in, 0, bs8.data(), s.in, 0,
                                        0.0f, c32.data(), s.out, &co) != 0)
                            throw Error("bench: dnnl_gemm_u8s8s32 failed");
                        }});
    const std::vector<std::vector<double>> times = interleaved(passes, reps);
    const std::vector<double> t = medians(times);
    for (size_t i = 0; i < passes.size(); ++i)
      std::printf("%-10s %-11s %9.2f %9.1f %6.2fx\n", shape, passes[i].name.c_str(), t[i] * 1e3, flop / t[i] / 1e9,
                  t[3] / t[i]);
    worst_gemm = std::min(worst_gemm, median_ratio(times[3], times[0]));
    worst_gemm_a4 = std::min(worst_gemm_a4, median_ratio(times[0], times[1]));
    std::fflush(stdout);
  }
  // Same kernel and weight bytes: "at least as fast" within 3% timing noise.
  const bool w4a4_ok = worst_a4 >= 0.97 && worst_gemm_a4 >= 0.97;

  // What W4A4 adds to a linear: the online rotation of its input (QuaRot's down_proj input is a
  // full Hadamard of the intermediate size, o_proj's one across heads).
  std::printf("\nOnline rotation (x -> (x * s) H / sqrt(n)): fwht = the fast Walsh-Hadamard kernel (one thread) on a copy of\n"
              "the rows; factored GEMM = the same Kronecker factors as libtorch GEMMs; * = what\n"
              "HadamardTransform::apply runs at this size (fwht for 2^m, the GEMMs with a Paley core)\n");
  std::printf("%-6s %6s %-15s %11s\n", "n", "rows", "method", "us/call");
  for (const int64_t n : {int64_t(2048), int64_t(5632)}) {
    const quant::HadamardTransform h(n, quant::random_signs(n, 1));
    std::vector<at::Tensor> factors;
    for (const int64_t f : h.factor_sizes()) factors.push_back(quant::hadamard_matrix(f).to(at::kFloat));
    const std::vector<int64_t> fs = h.factor_sizes();
    const int64_t core = !fs.empty() && (fs[0] & (fs[0] - 1)) != 0 ? fs[0] : 1;
    const at::Tensor core_matrix = quant::hadamard_matrix(core).to(at::kFloat).contiguous();
    const at::Tensor signs = h.signs().contiguous();
    for (const int64_t rows : {int64_t(1), gemm_rows}) {
      const at::Tensor x = at::randn({rows, n});
      auto factored = [&] {
        at::Tensor y = x * h.signs();
        for (auto it = factors.rbegin(); it != factors.rend(); ++it) {
          const int64_t f = it->size(0);
          y = at::matmul(y.reshape({rows * (n / f), f}), *it).view({rows, n / f, f}).transpose(1, 2);
        }
        return y.reshape({rows, n}) * (1.0 / std::sqrt(double(n)));
      };
      auto fwht = [&] {
        at::Tensor y = x.clone();
        k::fwht(y.data_ptr<float>(), rows, n, n, core > 1 ? core_matrix.data_ptr<float>() : nullptr, core,
                signs.data_ptr<float>());
        return y;
      };
      if (!factored().allclose(fwht(), 1e-4, 1e-5)) throw Error("bench: the factored rotation disagrees with fwht");
      const int calls = rows == 1 ? 200 : 4;
      const std::vector<Pass> passes = {{core == 1 ? "fwht *" : "fwht", [&] { for (int c = 0; c < calls; ++c) fwht(); }},
                                        {core == 1 ? "factored GEMM" : "factored GEMM *",
                                         [&] { for (int c = 0; c < calls; ++c) factored(); }}};
      const std::vector<double> t = medians(interleaved(passes, reps));
      for (size_t i = 0; i < passes.size(); ++i)
        std::printf("%-6lld %6lld %-15s %11.1f\n", (long long)n, (long long)rows, passes[i].name.c_str(), t[i] / calls * 1e6);
    }
    std::fflush(stdout);
  }

  std::printf("\ntargets (worst shape):\n");
  std::printf("  W4A8 GEMV cold >= 90%% of read bandwidth:    %.1f%%   %s\n", 100 * worst_frac, mark(gemv_bw_ok));
  std::printf("  W4A8 GEMV >= 1.5x Q4_0xQ8_0:                 %.2fx   %s\n", worst_q40, mark(gemv_q40_ok));
  std::printf("  W4A8 GEMM %lld rows >= 1.5x fp32 libtorch:   %.2fx   %s\n", (long long)gemm_rows, worst_gemm, mark(worst_gemm >= 1.5));
  std::printf("  W4A4 at least as fast as W4A8 (GEMV, GEMM):  %.2fx, %.2fx   %s\n", worst_a4, worst_gemm_a4, mark(w4a4_ok));
  return 0;
}

}  // namespace loopq::cli
