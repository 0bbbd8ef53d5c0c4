#include "cli/bench/openblas.h"

#include <dlfcn.h>
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <vector>

namespace loopq::cli {

std::string openblas_core() {
  using Fn = char* (*)();
  const auto fn = reinterpret_cast<Fn>(dlsym(RTLD_DEFAULT, "openblas_get_corename"));
  return fn ? std::string(fn()) : std::string();
}

void set_openblas_threads(int n) {
  if (std::getenv("OPENBLAS_NUM_THREADS")) return;  // the user's choice stands
  using Fn = void (*)(int);
  if (const auto fn = reinterpret_cast<Fn>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"))) fn(n);
}

void fix_openblas_core(int argc, char** argv) {
  const std::string core = openblas_core();
  if (core.empty() || std::getenv("OPENBLAS_CORETYPE")) return;
  const bool generic = core == "Prescott" || core == "Core2" || core == "Nehalem" || core == "Sandybridge" || core == "Penryn";
  const char* better = __builtin_cpu_supports("avx512f") ? "SkylakeX" : __builtin_cpu_supports("avx2") ? "Haswell" : nullptr;
  if (!generic || !better) return;
  // Silent: the benchmark headers name the core in use (openblas_core), and an error of the
  // re-run must stay the only line on stderr.
  setenv("OPENBLAS_CORETYPE", better, 1);
  std::vector<char*> args = {const_cast<char*>("loopq"), const_cast<char*>("bench")};
  for (int i = 0; i < argc; ++i) args.push_back(argv[i]);
  args.push_back(nullptr);
  execv("/proc/self/exe", args.data());  // returns only on failure: carry on with the slow core
}

}  // namespace loopq::cli
