// Where the executor's host threads run, and how quiet a CPU is (fake_api.cpp and cuda_api.cu both export these).
//
// * Placement: HARNESS_NATIVE_CPUS = "auto" (default: one CPU per physical core, highest first, never CPU 0's
//   core while another is allowed), "off" (the scheduler places them), or a list "5,7,9-11" (thread i runs on
//   the i-th, in order; threads beyond the list are not pinned). HARNESS_NATIVE_FIFO=1 asks for SCHED_FIFO
//   (priority 1) as well, where the process may have it (CAP_SYS_NICE): a thread that is not granted it goes on
//   under its normal policy. Both are read for each run.
// * Jitter: a thread pinned to one CPU spins on CLOCK_MONOTONIC for a while and notes every stretch the clock
//   jumped by more than a threshold (an interrupt, a preemption, the hypervisor taking the CPU): how often, how
//   long. It needs no GPU; replay/native/jitter.py runs it on every allowed CPU.
#pragma once

#include <pthread.h>
#include <sched.h>
#include <time.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace nx {

constexpr int PLACED_PINNED = 1, PLACED_FIFO = 2;

inline int64_t monotonic_ns() {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return int64_t(ts.tv_sec) * 1000000000LL + ts.tv_nsec;
}

inline void spin_pause() {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

inline std::vector<int> allowed_cpus() {
    cpu_set_t set;
    CPU_ZERO(&set);
    std::vector<int> cpus;
    if (sched_getaffinity(0, sizeof(set), &set) != 0) return cpus;
    for (int c = 0; c < CPU_SETSIZE; ++c)
        if (CPU_ISSET(c, &set)) cpus.push_back(c);
    return cpus;
}

// The physical core of `cpu` (package << 16 | core id); the cpu itself where sysfs does not say.
inline int core_of(int cpu) {
    auto read_int = [](const std::string& path, int fallback) {
        FILE* f = std::fopen(path.c_str(), "r");
        if (!f) return fallback;
        int v = fallback;
        if (std::fscanf(f, "%d", &v) != 1) v = fallback;
        std::fclose(f);
        return v;
    };
    const std::string base = "/sys/devices/system/cpu/cpu" + std::to_string(cpu) + "/topology/";
    const int core = read_int(base + "core_id", -1);
    const int package = read_int(base + "physical_package_id", 0);
    return core < 0 ? (1 << 30) + cpu : (package << 16) + core;
}

// "auto": one CPU per physical core, the highest-numbered first, CPU 0's core last (it takes most of the
// machine's interrupts and housekeeping). Read from sysfs once per process: ~10 µs a file, and a run reads its
// placement after its clock has started.
inline std::vector<int> read_auto_cpus() {
    const std::vector<int> allowed = allowed_cpus();
    if (allowed.size() < 2) return {};
    const int core0 = core_of(allowed.front());
    std::set<int> seen;
    std::vector<int> picked, last;
    for (auto it = allowed.rbegin(); it != allowed.rend(); ++it) {
        const int core = core_of(*it);
        if (!seen.insert(core).second) continue;
        (core == core0 ? last : picked).push_back(*it);
    }
    picked.insert(picked.end(), last.begin(), last.end());
    return picked;
}

inline const std::vector<int>& auto_cpus() {
    static const std::vector<int> cpus = read_auto_cpus();
    return cpus;
}

// "5,7,9-11" -> {5, 7, 9, 10, 11}; an empty list for text that is not such a list.
inline std::vector<int> parse_cpu_list(const char* text) {
    std::vector<int> cpus;
    const char* p = text;
    while (*p) {
        char* end = nullptr;
        const long a = std::strtol(p, &end, 10);
        if (end == p || a < 0) return {};
        long b = a;
        p = end;
        if (*p == '-') {
            b = std::strtol(p + 1, &end, 10);
            if (end == p + 1 || b < a) return {};
            p = end;
        }
        for (long c = a; c <= b && c < CPU_SETSIZE; ++c) cpus.push_back(int(c));
        if (*p == ',') ++p;
        else if (*p) return {};
    }
    return cpus;
}

// The CPUs the run's threads go on, in thread order (empty: not pinned), from HARNESS_NATIVE_CPUS.
inline std::vector<int> placement_cpus() {
    const char* env = std::getenv("HARNESS_NATIVE_CPUS");
    const std::string choice = env ? env : "auto";
    if (choice == "off" || choice == "0" || choice == "none") return {};
    if (choice.empty() || choice == "auto") return auto_cpus();
    return parse_cpu_list(choice.c_str());
}

// HARNESS_NATIVE_SPIN: "busy" (default: no pause between clock reads) or "pause" (a pause instruction between
// them). Under a hypervisor, a loop of pauses can trip pause-loop exiting (the vCPU leaves for the hypervisor,
// taken for a lock spinner); busy avoids it at the cost of the core's sibling thread. On two H100 instances
// (2026-12-07) pacing lateness p99 at 10 and 15 µs gaps was 0.08-2.63 µs busy against 3.28-5.77 µs with pauses.
inline bool spin_pauses() {
    const char* env = std::getenv("HARNESS_NATIVE_SPIN");
    return env && std::string(env) == "pause";
}

inline bool fifo_wanted() {
    const char* env = std::getenv("HARNESS_NATIVE_FIFO");
    return env && (std::string(env) == "1" || std::string(env) == "on");
}

// Put the calling thread on `cpu` (-1: leave it) and, with `fifo`, under SCHED_FIFO; what was granted
// (PLACED_PINNED | PLACED_FIFO).
inline int place_this_thread(int cpu, bool fifo) {
    int placed = 0;
    if (cpu >= 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(cpu, &set);
        if (pthread_setaffinity_np(pthread_self(), sizeof(set), &set) == 0) {
            placed |= PLACED_PINNED;
            sched_yield();  // move now, not at the next tick
        }
    }
    if (fifo) {
        sched_param p{};
        p.sched_priority = 1;
        if (pthread_setschedparam(pthread_self(), SCHED_FIFO, &p) == 0) placed |= PLACED_FIFO;
    }
    return placed;
}

// Spin on `cpu` for `duration_ns` (with SCHED_FIFO where `fifo` and granted; a pause between reads where
// `pauses`); every time the clock moved by more
// than `threshold_ns` between two reads, (when since the start, how long) goes to `gaps` (2 int64 each, at most
// `cap`). stats: [0] clock reads, [1] gaps seen (all, even past cap), [2] ns in gaps, [3] the longest gap,
// [4] what was placed, [5] the CPU the spin ended on.
inline void host_jitter(int cpu, bool fifo, bool pauses, int64_t duration_ns, int64_t threshold_ns, int64_t* gaps,
                        int64_t cap, int64_t* stats) {
    std::thread worker([=] {
        const int64_t placed = place_this_thread(cpu, fifo);
        int64_t reads = 0, n = 0, lost = 0, longest = 0;
        const int64_t t0 = monotonic_ns();
        int64_t prev = t0;
        while (prev - t0 < duration_ns) {
            if (pauses) spin_pause();  // as the executor spins (HARNESS_NATIVE_SPIN)
            const int64_t t = monotonic_ns();
            ++reads;
            const int64_t d = t - prev;
            if (d > threshold_ns) {
                if (n < cap) {
                    gaps[2 * n] = prev - t0;
                    gaps[2 * n + 1] = d;
                }
                ++n;
                lost += d;
                longest = std::max(longest, d);
            }
            prev = t;
        }
        stats[0] = reads, stats[1] = n, stats[2] = lost, stats[3] = longest, stats[4] = placed;
        stats[5] = sched_getcpu();
    });
    worker.join();
}

}  // namespace nx

// Both libraries export these (one definition per library: this header is included once in each).
extern "C" int nx_host_cpus(int32_t* cpus, int cap) {
    const std::vector<int> picked = nx::placement_cpus();
    const int n = std::min<int>(cap, int(picked.size()));
    for (int i = 0; i < n; ++i) cpus[i] = picked[i];
    return int(picked.size());
}

extern "C" void nx_host_jitter(int cpu, int fifo, int pauses, int64_t duration_ns, int64_t threshold_ns,
                               int64_t* gaps, int64_t cap, int64_t* stats) {
    nx::host_jitter(cpu, fifo != 0, pauses != 0, duration_ns, threshold_ns, gaps, cap, stats);
}

// Place a fresh thread as a run's thread `index` would be; (what was placed, the CPU it ran on) into out[0..1].
extern "C" void nx_place_check(int index, int32_t* out) {
    const std::vector<int> cpus = nx::placement_cpus();
    const int cpu = index < int(cpus.size()) ? cpus[index] : -1;
    const bool fifo = nx::fifo_wanted();
    std::thread worker([=] {
        out[0] = nx::place_this_thread(cpu, fifo);
        out[1] = sched_getcpu();
    });
    worker.join();
}
