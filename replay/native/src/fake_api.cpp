// The executor against the fake device, as a shared library (built with g++ on any machine): CI checks
// that it does what the Python twin (replay/native/twin.py) does, to the nanosecond.
#include <cstdio>
#include <exception>
#include <thread>
#include <vector>

#include "executor.hpp"
#include "fake_device.hpp"
#include "host_thread.hpp"  // nx_host_cpus, nx_host_jitter, nx_place_check: no GPU needed
#include "times.hpp"
#include "worker_pool.hpp"

namespace {
// The threaded runs' host threads, kept between runs as the GPU executor keeps them (no spinning between runs
// unless HARNESS_NATIVE_LINGER_MS asks for it).
nx::WorkerPool& fake_pool() {
    static nx::WorkerPool pool{0};
    return pool;
}
}  // namespace

extern "C" int nx_fake_run(int n_threads, const nx::Step* const* steps, const int64_t* counts, nx::Out* const* outs,
                           int streams, const int32_t* sync_order, int events, int timing_events, int stamps,
                           const int64_t* graph_ns, int n_graphs, int64_t est0_ns, int threaded, char* err,
                           int errlen) {
    try {
        nx::FakeGpu gpu(streams, timing_events, stamps, graph_ns, n_graphs);
        nx::Shared shared(events, n_threads, streams, sync_order);
        auto body = [&](int t) {
            nx::FakeThread dev(gpu);
            nx::run_thread(dev, shared, t, steps[t], counts[t], outs[t], 0, est0_ns);
        };
        if (threaded) {  // on the pool's threads, placed as the GPU executor places them
            fake_pool().run(n_threads, nx::placement_cpus(), nx::fifo_wanted(), [&](int t, int) { body(t); });
        } else {  // one after another, the last thread first (twin.run_fake does the same)
            for (int t = n_threads - 1; t >= 0; --t) body(t);
        }
        for (int t = 0; t < n_threads; ++t)
            nx::fill_device_times(steps[t], counts[t], outs[t], gpu.ev.data(), gpu.stamp_start.data(),
                                  gpu.stamp_end.data());
        return 0;
    } catch (const std::exception& e) {
        std::snprintf(err, errlen, "%s", e.what());
        return 1;
    }
}

// The fake runs' pool: out[0] its threads, out[1] how many times one was placed since the library was loaded.
extern "C" void nx_fake_pool_stats(int64_t* out) {
    out[0] = fake_pool().size();
    out[1] = fake_pool().placements();
}
