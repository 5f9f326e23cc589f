// The executor's host threads, kept from one run to the next (fake_api.cpp and cuda_api.cu both use it).
//
// A run used to spawn one std::thread per recorded host thread and pin it: on the lent H100/H200 hosts the first
// thread reached its first step 160-180 µs after it was spawned (placement onto an idle CPU), more than a decode
// program's first host gap. The pool makes its threads once, places each on its CPU when a run first asks for it
// (and again only when HARNESS_NATIVE_CPUS / HARNESS_NATIVE_FIFO change), and keeps them spinning on the clock for
// HARNESS_NATIVE_LINGER_MS (default 500 on the GPU) after each run and after wake(), so a run that follows soon
// finds its threads awake on warm CPUs; after that they sleep on a condition variable and cost nothing.
#pragma once

#include <pthread.h>
#include <sched.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "host_thread.hpp"

namespace nx {

// HARNESS_NATIVE_LINGER_MS: how long the pool's threads spin after a run or a wake (0: they sleep at once);
// `default_ms` where it is unset or not a whole number of milliseconds.
inline int64_t linger_ns(int64_t default_ms) {
    const char* env = std::getenv("HARNESS_NATIVE_LINGER_MS");
    if (!env || !*env) return default_ms * 1000000LL;
    char* end = nullptr;
    const long long ms = std::strtoll(env, &end, 10);
    if (end == env || *end || ms < 0) return default_ms * 1000000LL;
    return ms * 1000000LL;
}

class WorkerPool {
  public:
    // body(index, placed): run thread `index` of a run; `placed` is what its placement was granted
    // (PLACED_PINNED | PLACED_FIFO).
    using Body = std::function<void(int, int)>;

    // default_linger_ms: the spin after a run or a wake where HARNESS_NATIVE_LINGER_MS is unset (the GPU executor:
    // 500; the fake device's CI runs: 0, no spinning threads beside the tests).
    explicit WorkerPool(int64_t default_linger_ms) : default_linger_ms_(default_linger_ms) {}
    WorkerPool(const WorkerPool&) = delete;
    WorkerPool& operator=(const WorkerPool&) = delete;
    ~WorkerPool() { shut_down(); }

    // Keep the threads awake (spinning) for the linger time from now: a run issued soon starts without waking
    // a sleeping thread. Cheap; call it when a run is coming.
    void wake() {
        extend_spin(monotonic_ns() + linger_ns(default_linger_ms_));
        { std::lock_guard<std::mutex> lock(mutex_); }
        wakeup_.notify_all();
    }

    // Run body(t, placed) for t in [0, n) on the pool's threads 0..n-1, thread t on cpus[t] (-1 or past the list:
    // not pinned), under SCHED_FIFO with `fifo`; returns when all n are done and rethrows the first exception a
    // body threw.
    void run(int n, const std::vector<int>& cpus, bool fifo, const Body& body) {
        if (n <= 0) return;
        while (int(workers_.size()) < n) add_worker();
        {
            std::lock_guard<std::mutex> lock(mutex_);
            job_ = Job{n, &cpus, fifo, &body};
            remaining_ = n;
            error_ = nullptr;
            generation_.fetch_add(1, std::memory_order_release);
        }
        wakeup_.notify_all();
        std::unique_lock<std::mutex> lock(mutex_);
        done_.wait(lock, [&] { return remaining_ == 0; });
        job_ = Job{};
        if (error_) std::rethrow_exception(error_);
    }

    int size() const { return int(workers_.size()); }

    // How many times a pool thread has been placed (pinned / unpinned, FIFO or not) since the pool was made.
    int64_t placements() const { return placements_.load(std::memory_order_relaxed); }

    void shut_down() {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            stopping_.store(true, std::memory_order_release);
        }
        wakeup_.notify_all();
        for (auto& w : workers_)
            if (w->thread.joinable()) w->thread.join();
        workers_.clear();
    }

  private:
    struct Job {
        int n = 0;
        const std::vector<int>* cpus = nullptr;
        bool fifo = false;
        const Body* body = nullptr;
    };
    struct Worker {
        std::thread thread;
        int cpu = -1;  // the CPU it is pinned to (-1: not pinned)
        bool fifo = false;
        int placed = -1;  // what its placement was granted; -1: not placed yet
        cpu_set_t original;  // the affinity it was made with: restored when a run asks for no pinning
    };

    void extend_spin(int64_t until_ns) {
        int64_t now = spin_until_ns_.load(std::memory_order_relaxed);
        while (now < until_ns && !spin_until_ns_.compare_exchange_weak(now, until_ns, std::memory_order_relaxed)) {
        }
    }

    void add_worker() {
        auto w = std::make_unique<Worker>();
        const int index = int(workers_.size());
        uint64_t seen;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            seen = generation_.load(std::memory_order_relaxed);
        }
        Worker* raw = w.get();
        CPU_ZERO(&raw->original);
        sched_getaffinity(0, sizeof(raw->original), &raw->original);
        workers_.push_back(std::move(w));
        raw->thread = std::thread([this, raw, index, seen] { loop(*raw, index, seen); });
    }

    // Put this thread where the run wants it, if it is not there already: undo what the last placement set that
    // this one does not ask for, then place it as a fresh run thread is placed.
    void place(Worker& w, int cpu, bool fifo) {
        if (cpu == w.cpu && fifo == w.fifo && w.placed != -1) return;
        if (cpu < 0 && w.cpu >= 0) pthread_setaffinity_np(pthread_self(), sizeof(w.original), &w.original);
        if (!fifo && w.fifo) {
            sched_param p{};
            p.sched_priority = 0;
            pthread_setschedparam(pthread_self(), SCHED_OTHER, &p);
        }
        w.cpu = cpu, w.fifo = fifo, w.placed = place_this_thread(cpu, fifo);
        placements_.fetch_add(1, std::memory_order_relaxed);
    }

    void loop(Worker& w, int index, uint64_t seen) {
        for (;;) {
            // Wait for the next run: spin while the pool is meant to be awake, else sleep.
            while (generation_.load(std::memory_order_acquire) == seen) {
                if (stopping_.load(std::memory_order_acquire)) return;
                if (monotonic_ns() < spin_until_ns_.load(std::memory_order_relaxed)) continue;
                std::unique_lock<std::mutex> lock(mutex_);
                wakeup_.wait(lock, [&] {
                    return stopping_.load(std::memory_order_relaxed) ||
                           generation_.load(std::memory_order_relaxed) != seen ||
                           monotonic_ns() < spin_until_ns_.load(std::memory_order_relaxed);
                });
            }
            Job job;
            {
                std::lock_guard<std::mutex> lock(mutex_);
                if (stopping_.load(std::memory_order_relaxed)) return;
                seen = generation_.load(std::memory_order_relaxed);
                job = job_;
            }
            if (index >= job.n) continue;  // a run of fewer threads: this one sits it out
            try {
                place(w, index < int(job.cpus->size()) ? (*job.cpus)[index] : -1, job.fifo);
                (*job.body)(index, w.placed);
            } catch (...) {
                std::lock_guard<std::mutex> lock(mutex_);
                if (!error_) error_ = std::current_exception();
            }
            // the next run of a replay usually follows soon: stay awake for it
            extend_spin(monotonic_ns() + linger_ns(default_linger_ms_));
            bool last;
            {
                std::lock_guard<std::mutex> lock(mutex_);
                last = --remaining_ == 0;
            }
            if (last) done_.notify_all();
        }
    }

    const int64_t default_linger_ms_;
    std::vector<std::unique_ptr<Worker>> workers_;
    std::mutex mutex_;
    std::condition_variable wakeup_, done_;
    std::atomic<uint64_t> generation_{0};
    std::atomic<bool> stopping_{false};
    std::atomic<int64_t> spin_until_ns_{0};
    std::atomic<int64_t> placements_{0};
    Job job_;
    int remaining_ = 0;
    std::exception_ptr error_;
};

}  // namespace nx
