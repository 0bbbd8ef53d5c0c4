#include "model/runtime.h"

#include <ATen/Context.h>
#include <ATen/Parallel.h>

#include <cstdlib>
#include <thread>

#include "util/error.h"

namespace loopq {

int init_threads(int threads) {
  if (threads <= 0) {
    if (const char* env = std::getenv("LOOPQ_THREADS")) threads = std::atoi(env);
  }
  if (threads <= 0) threads = static_cast<int>(std::thread::hardware_concurrency());
  if (threads <= 0) threads = 1;
  at::set_num_threads(threads);
  return at::get_num_threads();
}

at::Device parse_device(const std::string& name) {
  if (name == "cpu") return at::kCPU;
  if (name.rfind("cuda", 0) == 0) {
    if (!at::hasCUDA()) throw Error("--device " + name + ": this build/machine has no CUDA");
    try {
      return at::Device(name);
    } catch (const std::exception&) {
      throw Error("--device: cannot parse '" + name + "'");
    }
  }
  throw Error("--device must be cpu, cuda or cuda:N, got '" + name + "'");
}

}  // namespace loopq
