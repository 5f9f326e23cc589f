// The native executor's state machine: one host thread runs its steps against a Device.
// It mirrors replay/native/twin.py (run_thread) line by line; read that docstring for the rules.
// Device is a template parameter: CudaThread (cuda_api.cu) or FakeThread (fake_device.hpp).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

namespace nx {

// Layouts of replay/native/steps.py STEP_DTYPE and OUT_DTYPE.
struct Step {
    int32_t op, stream, slot, kind, grid, ev_a, ev_b, stamp, memory, direction;
    int64_t nbytes, timer_ns, gap_ns, call_ns;
};
static_assert(sizeof(Step) == 72, "Step must match STEP_DTYPE");

struct Out {
    int64_t target_ns, begin_ns, api_ns, ret_ns, done_ns, gpu_start_ns, gpu_end_ns;
    int32_t status, aux;
};
static_assert(sizeof(Out) == 64, "Out must match OUT_DTYPE");

enum Op : int32_t {
    HOST = 0, KERNEL = 1, GRAPH = 2, COPY = 3, RECORD = 4, WAIT = 5, SYNC_EVENT = 6, SYNC_STREAM = 7, JOIN = 8,
    SYNC_DEVICE = 9
};
enum Dir : int32_t { H2D = 0, D2H = 1, D2D = 2 };
enum Mem : int32_t { PINNED = 0, PAGEABLE = 1 };
constexpr int32_t NO_EVENT = -1;
constexpr int32_t STATUS_OK = 0, STATUS_UNRESOLVED = 1, STATUS_ALL_STREAMS = 2;
constexpr int MASK_STREAMS = 31;
constexpr int EST_SHIFT = 3;
constexpr int64_t CATCH_UP_CAP_NS = 10000;  // a held call's lateness made up from the next gaps, at most
constexpr int N_OPS = 10;

// What the threads of one run share.
struct Shared {
    std::unique_ptr<std::atomic<int32_t>[]> latest;  // symbolic event -> timing event of its latest record
    std::vector<int32_t> sync_order;
    std::unique_ptr<std::atomic<bool>[]> outstanding;  // stream -> has work not synced
    std::unique_ptr<std::atomic<int64_t>[]> end_ns;
    std::unique_ptr<std::atomic<bool>[]> done;
    Shared(int events, int threads, int streams, const int32_t* order)
        : latest(new std::atomic<int32_t>[events > 0 ? events : 1]),
          sync_order(order, order + streams),
          outstanding(new std::atomic<bool>[streams > 0 ? streams : 1]),
          end_ns(new std::atomic<int64_t>[threads]),
          done(new std::atomic<bool>[threads]) {
        for (int i = 0; i < events; ++i) latest[i].store(NO_EVENT);
        for (int i = 0; i < streams; ++i) outstanding[i].store(false);
        for (int i = 0; i < threads; ++i) {
            end_ns[i].store(0);
            done[i].store(false);
        }
    }
};

inline bool is_held(int32_t op) { return op == KERNEL || op == GRAPH || op == COPY || op == RECORD || op == WAIT; }

// Steps that wait for the device or another thread: they clear what a thread is behind (twin.py rule 5).
inline bool waits_out(int32_t op) { return op == SYNC_EVENT || op == SYNC_STREAM || op == SYNC_DEVICE || op == JOIN; }

inline bool is_work(int32_t op) { return op == KERNEL || op == GRAPH || op == COPY; }

inline bool is_pageable(const Step& s) { return s.op == COPY && s.direction != D2D && s.memory == PAGEABLE; }

template <class Device>
void run_thread(Device& dev, Shared& shared, int index, const Step* steps, int64_t n, Out* out, int64_t start_ns,
                int64_t est0_ns) {
    int64_t est[N_OPS];
    for (int k = 0; k < N_OPS; ++k) est[k] = est0_ns;
    int64_t cursor = start_ns;
    int64_t behind = 0;  // how far the thread is behind the recorded timeline (rule 5 of twin.py)
    for (int64_t i = 0; i < n; ++i) {
        const Step& s = steps[i];
        const int32_t op = s.op;
        const int64_t call = s.call_ns;
        const int64_t caught = behind < s.gap_ns ? behind : s.gap_ns;
        behind -= caught;
        const int64_t target = cursor + s.gap_ns - caught;
        dev.spin_until(target);
        const int64_t begin = dev.now();
        int32_t status = STATUS_OK;
        int32_t event = NO_EVENT;
        int32_t aux = 0;
        if (op == WAIT || op == SYNC_EVENT) {
            event = shared.latest[s.slot].load(std::memory_order_acquire);
            aux = event;
            if (event == NO_EVENT) status = op == WAIT ? STATUS_UNRESOLVED : STATUS_ALL_STREAMS;
        }
        const bool held = is_held(op) && status == STATUS_OK;
        if (held && call >= 0) {
            const int64_t hold = begin + call - est[op];
            if (hold > begin) dev.spin_until(hold);
        }
        const int64_t api = dev.now();
        // a release store, not seq_cst (an xchg that drains the store buffer) inside the timed call
        if (is_work(op)) shared.outstanding[s.stream].store(true, std::memory_order_release);
        if (op == SYNC_DEVICE) status = STATUS_ALL_STREAMS;
        if (status == STATUS_ALL_STREAMS) {
            aux = 0;
            for (int32_t k : shared.sync_order) {
                if (shared.outstanding[k].load()) {
                    while (!dev.query_stream(k)) dev.relax();
                    if (k < MASK_STREAMS) aux |= int32_t(1) << k;
                }
            }
            for (int32_t k : shared.sync_order) shared.outstanding[k].store(false);
        } else if (status == STATUS_OK) {
            switch (op) {
                case KERNEL: dev.launch(s); break;
                case GRAPH: dev.launch_graph(s); break;
                case COPY: dev.copy(s); break;
                case RECORD:
                    dev.record(s);
                    shared.latest[s.slot].store(s.ev_a, std::memory_order_release);
                    break;
                case WAIT: dev.wait(s, event); break;
                case SYNC_EVENT:
                    while (!dev.query_event(event)) dev.relax();
                    break;
                case SYNC_STREAM:
                    while (!dev.query_stream(s.stream)) dev.relax();
                    shared.outstanding[s.stream].store(false);
                    break;
                case JOIN:
                    while (!shared.done[s.slot].load(std::memory_order_acquire)) dev.pause();
                    dev.spin_until(shared.end_ns[s.slot].load());
                    break;
                default: break;
            }
        }
        const int64_t ret = dev.now();
        if (held && is_pageable(s)) {
            while (!dev.query_event(s.ev_b)) dev.relax();
        } else if (held) {
            est[op] += (ret - api - est[op]) / (1 << EST_SHIFT);  // C++ division truncates toward zero
        }
        const int64_t end = dev.now();
        int64_t done = end;
        if (held && call >= 0) {
            if (begin + call > done) done = begin + call;
            const int64_t late = done - (target + call);
            behind += late < CATCH_UP_CAP_NS ? late : CATCH_UP_CAP_NS;
        } else if (waits_out(op)) {
            behind = 0;
        }
        out[i] = Out{target, begin, api, end, done, -1, -1, status, aux};
        cursor = done;
    }
    shared.end_ns[index].store(cursor);
    shared.done[index].store(true, std::memory_order_release);
}

}  // namespace nx
