#include "kernels/cpu/thread_pool.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define LOOPQ_PAUSE() _mm_pause()
#else
#define LOOPQ_PAUSE() std::this_thread::yield()
#endif

namespace loopq::kernels {
namespace {

// How long an idle worker spins before it sleeps: covers the gap between the linears of one
// decode step without keeping a core busy when nothing runs.
constexpr auto kSpin = std::chrono::microseconds(300);

class Pool {
 public:
  ~Pool() {
    {
      std::lock_guard<std::mutex> lk(m_);
      stop_ = true;
      gen_.fetch_add(1);
    }
    cv_.notify_all();
    for (auto& t : workers_) t.join();
  }

  void run(int threads, int n, const std::function<void(int)>& fn) {
    std::lock_guard<std::mutex> serial(run_mutex_);
    while (int(workers_.size()) < threads - 1) {
      const int id = int(workers_.size());
      workers_.emplace_back([this, id] { work(id); });
    }
    fn_ = &fn;
    n_ = n;
    active_ = threads - 1;
    next_.store(0);
    finished_.store(0);
    {
      std::lock_guard<std::mutex> lk(m_);
      gen_.fetch_add(1, std::memory_order_release);
    }
    cv_.notify_all();
    take(fn, n);
    // Every active worker has left the task loop of this job before fn_ can change again.
    while (finished_.load(std::memory_order_acquire) < active_) LOOPQ_PAUSE();
  }

 private:
  void take(const std::function<void(int)>& fn, int n) {
    for (int i; (i = next_.fetch_add(1, std::memory_order_relaxed)) < n;) fn(i);
  }

  void work(int id) {
    uint64_t seen = 0;
    for (;;) {
      uint64_t g = gen_.load(std::memory_order_acquire);
      const auto until = std::chrono::steady_clock::now() + kSpin;
      for (int spins = 0; g == seen; ++spins) {
        LOOPQ_PAUSE();
        g = gen_.load(std::memory_order_acquire);
        if ((spins & 63) == 63 && std::chrono::steady_clock::now() > until) break;
      }
      if (g == seen) {
        std::unique_lock<std::mutex> lk(m_);
        cv_.wait(lk, [&] { return gen_.load() != seen; });
        g = gen_.load();
      }
      if (stop_) return;
      seen = g;
      if (id < active_) {
        take(*fn_, n_);
        finished_.fetch_add(1, std::memory_order_release);
      }
    }
  }

  std::mutex run_mutex_, m_;
  std::condition_variable cv_;
  std::vector<std::thread> workers_;
  std::atomic<uint64_t> gen_{0};
  std::atomic<int> next_{0}, finished_{0};
  const std::function<void(int)>* fn_ = nullptr;
  int n_ = 0, active_ = 0;
  std::atomic<bool> stop_{false};
};

Pool& pool() {
  static Pool p;
  return p;
}

}  // namespace

void parallel_for(int threads, int n, const std::function<void(int)>& fn) {
  if (n <= 0) return;
  if (threads <= 1 || n == 1) {
    for (int i = 0; i < n; ++i) fn(i);
    return;
  }
  pool().run(std::min(threads, n), n, fn);
}

}  // namespace loopq::kernels
