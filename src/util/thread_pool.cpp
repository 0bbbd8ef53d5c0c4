#include "util/thread_pool.h"

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

namespace loopq {
namespace {

// How long an idle worker spins before it sleeps: covers the gap between the linears of one
// decode step without keeping a core busy when nothing runs.
constexpr auto kSpin = std::chrono::microseconds(300);

// One parallel_for call. Workers hold it by shared_ptr, so one that wakes late (on a busy machine)
// finds a finished job and leaves it untouched; the caller never waits for a worker to wake.
struct Job {
  const std::function<void(int)>* fn = nullptr;
  int n = 0;
  std::atomic<int> next{0}, done{0};
  void take() {
    for (int i; (i = next.fetch_add(1, std::memory_order_relaxed)) < n;) {
      (*fn)(i);
      done.fetch_add(1, std::memory_order_release);
    }
  }
};

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
    while (int(workers_.size()) < threads - 1) workers_.emplace_back([this] { work(); });
    auto job = std::make_shared<Job>();
    job->fn = &fn;
    job->n = n;
    {
      std::lock_guard<std::mutex> lk(m_);
      job_ = job;
      gen_.fetch_add(1, std::memory_order_release);
    }
    cv_.notify_all();
    job->take();
    // Every task is finished (not merely claimed) before fn goes out of scope.
    for (int spins = 0; job->done.load(std::memory_order_acquire) < n; ++spins)
      if (spins < 4096) LOOPQ_PAUSE();
      else std::this_thread::yield();
    std::lock_guard<std::mutex> lk(m_);
    job_.reset();
  }

 private:
  void work() {
    uint64_t seen = 0;
    for (;;) {
      uint64_t g = gen_.load(std::memory_order_acquire);
      const auto until = std::chrono::steady_clock::now() + kSpin;
      for (int spins = 0; g == seen; ++spins) {
        LOOPQ_PAUSE();
        g = gen_.load(std::memory_order_acquire);
        if ((spins & 63) == 63 && std::chrono::steady_clock::now() > until) break;
      }
      std::shared_ptr<Job> job;
      {
        std::unique_lock<std::mutex> lk(m_);
        if (g == seen) cv_.wait(lk, [&] { return gen_.load() != seen; });
        if (stop_) return;
        seen = gen_.load();
        job = job_;
      }
      if (job) job->take();
    }
  }

  std::mutex run_mutex_, m_;
  std::condition_variable cv_;
  std::vector<std::thread> workers_;
  std::atomic<uint64_t> gen_{0};
  std::shared_ptr<Job> job_;
  bool stop_ = false;  // guarded by m_
};

Pool& pool() {
  static Pool p;
  return p;
}

}  // namespace

void parallel_for(int threads, int n, const std::function<void(int)>& fn) {
  if (n <= 0) return;
  // A parallel_for inside a task (on a pool thread or the caller) runs inline: the pool is busy
  // with the outer call, and waiting for it would deadlock.
  static thread_local bool inside = false;
  if (threads <= 1 || n == 1 || inside) {
    for (int i = 0; i < n; ++i) fn(i);
    return;
  }
  const std::function<void(int)> marked = [&fn](int i) {
    const bool was = inside;
    inside = true;
    fn(i);
    inside = was;
  };
  pool().run(std::min(threads, n), n, marked);
}

}  // namespace loopq
