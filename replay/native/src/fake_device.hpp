// The fake device: a modelled GPU in whole nanoseconds and a virtual clock per host thread.
// The same numbers and rules as FakeGpu / FakeThread in replay/native/twin.py.
#pragma once

#include <sched.h>

#include <algorithm>
#include <mutex>
#include <vector>

#include "executor.hpp"

namespace nx {

struct FakeCosts {
    int64_t launch = 2000, graph = 2500, copy = 3000, record = 600, wait = 600;
    int64_t latency = 1000, kernel_overhead = 1000, copy_fixed = 1000, copy_bytes_per_us = 20000, poll = 100;
};

struct FakeGpu {
    FakeCosts c;
    std::vector<int64_t> ready, ev, stamp_start, stamp_end, graph_ns;
    std::mutex lock;
    FakeGpu(int streams, int timing_events, int stamps, const int64_t* graphs, int n_graphs)
        : ready(streams, 0), ev(timing_events, -1), stamp_start(stamps, -1), stamp_end(stamps, -1),
          graph_ns(graphs, graphs + n_graphs) {}
};

struct FakeThread {
    FakeGpu& gpu;
    int64_t t = 0;
    explicit FakeThread(FakeGpu& g) : gpu(g) {}

    int64_t now() const { return t; }
    void spin_until(int64_t t_ns) { t = std::max(t, t_ns); }
    void relax() { t += gpu.c.poll; }
    void pause() { sched_yield(); }

    int64_t issue(int64_t cost, int32_t stream) {
        const int64_t api = t;
        t += cost;
        return std::max(api + gpu.c.latency, gpu.ready[stream]);
    }
    void launch(const Step& s) {
        std::lock_guard<std::mutex> g(gpu.lock);
        const int64_t start = issue(gpu.c.launch, s.stream);
        const int64_t end = start + s.timer_ns + gpu.c.kernel_overhead;
        gpu.ready[s.stream] = end;
        gpu.stamp_start[s.stamp] = start;
        gpu.stamp_end[s.stamp] = end;
    }
    void launch_graph(const Step& s) {
        std::lock_guard<std::mutex> g(gpu.lock);
        const int64_t a = issue(gpu.c.graph, s.stream);
        const int64_t b = a + gpu.graph_ns[s.slot];
        gpu.ready[s.stream] = b;
        gpu.ev[s.ev_a] = a;
        gpu.ev[s.ev_b] = b;
    }
    void copy(const Step& s) {
        std::lock_guard<std::mutex> g(gpu.lock);
        const int64_t a = issue(gpu.c.copy, s.stream);
        const int64_t b = a + gpu.c.copy_fixed + s.nbytes * 1000 / gpu.c.copy_bytes_per_us;
        gpu.ready[s.stream] = b;
        gpu.ev[s.ev_a] = a;
        gpu.ev[s.ev_b] = b;
    }
    void record(const Step& s) {
        std::lock_guard<std::mutex> g(gpu.lock);
        gpu.ev[s.ev_a] = issue(gpu.c.record, s.stream);
    }
    void wait(const Step& s, int32_t event) {
        std::lock_guard<std::mutex> g(gpu.lock);
        const int64_t a = issue(gpu.c.wait, s.stream);
        const int64_t b = std::max(a, gpu.ev[event]);
        gpu.ready[s.stream] = b;
        gpu.ev[s.ev_a] = a;
        gpu.ev[s.ev_b] = b;
    }
    bool query_event(int32_t event) {
        std::lock_guard<std::mutex> g(gpu.lock);
        return gpu.ev[event] >= 0 && gpu.ev[event] <= t;
    }
    bool query_stream(int32_t stream) {
        std::lock_guard<std::mutex> g(gpu.lock);
        return gpu.ready[stream] <= t;
    }
};

}  // namespace nx
