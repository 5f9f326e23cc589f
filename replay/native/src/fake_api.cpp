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
        if (threaded) {
            std::vector<std::thread> workers;
            for (int t = 0; t < n_threads; ++t) workers.emplace_back(body, t);
            for (auto& w : workers) w.join();
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
