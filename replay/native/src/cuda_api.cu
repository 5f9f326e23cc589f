// The executor on a CUDA GPU, as a shared library loaded with ctypes (replay/native/library.py).
//
// * Stand-in kernels do replay/timed.py's work (stand_in_work.cuh) until %globaltimer (ns) says their time is up, and
//   stamp their own start (the first block's) and end (the last block's) into device arrays: a kernel step costs one
//   launch.
// * Copies, graph launches and waits are timed by CUDA events around them; a record's own event times it.
// * After the run every time is put on the host's CLOCK_MONOTONIC (Python's perf_counter): globaltimer via a
//   kernel that writes it into mapped host memory while the host watches (before and after the run: drift is
//   interpolated), event times via events recorded around a globaltimer stamp on an idle stream.
#include <cuda.h>  // types only: the driver's cuLaunchKernel is looked up through the runtime, no -lcuda
#include <cudaTypedefs.h>
#include <cuda_runtime.h>
#include <sched.h>
#include <time.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "executor.hpp"
#include "host_thread.hpp"
#include "stand_in_work.cuh"
#include "times.hpp"
#include "worker_pool.hpp"

namespace nx {

inline int64_t host_ns() { return monotonic_ns(); }

inline void cpu_relax() { spin_pause(); }

#define NX_CHECK(call)                                                                                 \
    do {                                                                                               \
        cudaError_t e_ = (call);                                                                       \
        if (e_ != cudaSuccess)                                                                         \
            throw std::runtime_error(std::string(#call) + ": " + cudaGetErrorString(e_));              \
    } while (0)

#define NX_LAUNCH(call)                                                                                \
    do {                                                                                               \
        const int r_ = (call);                                                                         \
        if (r_ != 0) throw std::runtime_error("cuLaunchKernel: CUresult " + std::to_string(r_));       \
        NX_CHECK(cudaGetLastError());                                                                  \
    } while (0)

__device__ __forceinline__ void stamp_start(unsigned long long* starts, int slot, unsigned long long t) {
    if (slot >= 0 && threadIdx.x == 0) atomicMin(starts + slot, t);
}

__device__ __forceinline__ void stamp_end(unsigned long long* ends, int slot) {
    __syncthreads();
    if (slot >= 0 && threadIdx.x == 0) atomicMax(ends + slot, globaltimer_ns());
}

__global__ void nx_compute(long long ns, float* sink, unsigned long long* starts, unsigned long long* ends, int slot) {
    const unsigned long long start = globaltimer_ns();
    stamp_start(starts, slot, start);
    fma_chains_until(start, ns, sink);
    stamp_end(ends, slot);
}

__global__ void nx_memory(long long ns, const float4* src, float4* dst, unsigned long long n, unsigned long long* starts,
                          unsigned long long* ends, int slot) {
    const unsigned long long start = globaltimer_ns();
    stamp_start(starts, slot, start);
    stream_copy_until(start, ns, src, dst, n);
    stamp_end(ends, slot);
}

__global__ void nx_stamp(unsigned long long* where) { *where = globaltimer_ns(); }

__global__ void nx_empty() {}  // the launch floor's kernel: no parameters, no work

__global__ void nx_stamp_mapped(volatile unsigned long long* host) {
    *host = globaltimer_ns();
    __threadfence_system();
}

constexpr int THREADS = 256;
constexpr size_t STREAM_BYTES = size_t(256) << 20;
constexpr int KIND_COMPUTE = 0, KIND_MEMORY = 1, KIND_LATENCY = 2;

// The stand-ins' parameters as the kernels' parameter buffers lay them out (natural alignment, in order), for
// cuLaunchKernel's CU_LAUNCH_PARAM_BUFFER_POINTER: checked against cuFuncGetParamInfo at open.
struct ComputeParams {
    long long ns;
    float* sink;
    unsigned long long *starts, *ends;
    int slot;
};
struct MemoryParams {
    long long ns;
    const float4* src;
    float4* dst;
    unsigned long long n;
    unsigned long long *starts, *ends;
    int slot;
};
constexpr size_t COMPUTE_PARAM_BYTES = offsetof(ComputeParams, slot) + sizeof(int);
constexpr size_t MEMORY_PARAM_BYTES = offsetof(MemoryParams, slot) + sizeof(int);

enum LaunchApi { LAUNCH_RUNTIME = 0, LAUNCH_DRIVER = 1, LAUNCH_PACKED = 2 };

struct Linear {  // host_ns = gt + offset(gt), the offset interpolated between two calibrations
    double gt0 = 0, off0 = 0, slope = 0;
    int64_t operator()(int64_t gt) const { return gt + int64_t(off0 + slope * (double(gt) - gt0)); }
};

struct State {
    int device = 0, sms = 0;
    std::vector<cudaStream_t> streams;      // the executor's own, for a run that gives no handles
    std::vector<cudaStream_t> run_streams;  // the streams of the run in progress
    cudaStream_t own = nullptr;  // calibration and timing
    std::vector<cudaEvent_t> events;
    cudaEvent_t t0 = nullptr, ta = nullptr, tb = nullptr;
    unsigned long long *d_starts = nullptr, *d_ends = nullptr, *d_stamp = nullptr;
    int64_t stamp_cap = 0;
    float* sink = nullptr;
    float4 *src = nullptr, *dst = nullptr;
    unsigned long long *mapped = nullptr, *mapped_dev = nullptr;
    char *pinned = nullptr, *pageable = nullptr, *scratch = nullptr;
    int64_t host_cap = 0, scratch_cap = 0;
    std::vector<cudaGraphExec_t> graphs;
    std::pair<int64_t, int64_t> last_pair{0, 0};  // the latest (host ns, globaltimer ns) calibration
    std::vector<int64_t> last_starts, last_ends;  // the last run's stamps on the host clock (-1: none)
    // the last run's set-up on the host clock (nx_last_setup): entry, stream synced, the run handed to the pool,
    // its first thread started (placed where it was not yet), the first thread's CUDA device set
    int64_t setup_ns[5] = {0, 0, 0, 0, 0};
    nx::WorkerPool pool{500};  // the runs' host threads, kept between runs (destroyed, and joined, first)
    // The driver's launch with the stand-ins' functions looked up once (HARNESS_NATIVE_LAUNCH=runtime: <<<>>>):
    // the runtime's launch looks the function up and checks its module on every call.
    PFN_cuLaunchKernel_v4000 cu_launch = nullptr;
    CUfunction f_compute = nullptr, f_memory = nullptr;
    int launch_api = LAUNCH_RUNTIME;
    std::string launch_note;  // why a launch API asked for is not the one used
    std::atomic<int> placed{0};  // PLACED_PINNED | PLACED_FIFO where every thread of the last run got it
    bool spin_pause = false;     // HARNESS_NATIVE_SPIN, read for each run
    std::atomic<int> error{0};
    std::string error_text;

    void fail(cudaError_t e, const char* what) {
        if (error.exchange(1) == 0) error_text = std::string(what) + ": " + cudaGetErrorString(e);
    }
};

// Launch a stand-in through `api` (a LaunchApi no further than st.launch_api); the driver's result, 0 for <<<>>>.
inline int launch_kernel(State& st, int kind, int grid, long long ns, cudaStream_t s, int slot, int api) {
    if (api == LAUNCH_PACKED) {  // the parameters in one buffer: no per-argument copies by the driver
        if (kind == KIND_MEMORY) {
            MemoryParams p{ns, st.src, st.dst, STREAM_BYTES / 16, st.d_starts, st.d_ends, slot};
            size_t bytes = MEMORY_PARAM_BYTES;
            void* extra[] = {CU_LAUNCH_PARAM_BUFFER_POINTER, &p, CU_LAUNCH_PARAM_BUFFER_SIZE, &bytes,
                             CU_LAUNCH_PARAM_END};
            return int(st.cu_launch(st.f_memory, grid, 1, 1, THREADS, 1, 1, 0, CUstream(s), nullptr, extra));
        }
        ComputeParams p{ns, st.sink, st.d_starts, st.d_ends, slot};
        size_t bytes = COMPUTE_PARAM_BYTES;
        void* extra[] = {CU_LAUNCH_PARAM_BUFFER_POINTER, &p, CU_LAUNCH_PARAM_BUFFER_SIZE, &bytes, CU_LAUNCH_PARAM_END};
        const bool one_warp = kind != KIND_COMPUTE;
        return int(st.cu_launch(st.f_compute, one_warp ? 1 : grid, 1, 1, one_warp ? 32 : THREADS, 1, 1, 0,
                                CUstream(s), nullptr, extra));
    }
    if (api == LAUNCH_DRIVER) {
        if (kind == KIND_MEMORY) {
            const float4* src = st.src;
            float4* dst = st.dst;
            unsigned long long n = STREAM_BYTES / 16;
            void* args[] = {&ns, &src, &dst, &n, &st.d_starts, &st.d_ends, &slot};
            return int(st.cu_launch(st.f_memory, grid, 1, 1, THREADS, 1, 1, 0, CUstream(s), args, nullptr));
        }
        void* args[] = {&ns, &st.sink, &st.d_starts, &st.d_ends, &slot};
        if (kind == KIND_COMPUTE)
            return int(st.cu_launch(st.f_compute, grid, 1, 1, THREADS, 1, 1, 0, CUstream(s), args, nullptr));
        return int(st.cu_launch(st.f_compute, 1, 1, 1, 32, 1, 1, 0, CUstream(s), args, nullptr));
    }
    if (kind == KIND_MEMORY)
        nx_memory<<<grid, THREADS, 0, s>>>(ns, st.src, st.dst, STREAM_BYTES / 16, st.d_starts, st.d_ends, slot);
    else if (kind == KIND_COMPUTE)
        nx_compute<<<grid, THREADS, 0, s>>>(ns, st.sink, st.d_starts, st.d_ends, slot);
    else
        nx_compute<<<1, 32, 0, s>>>(ns, st.sink, st.d_starts, st.d_ends, slot);
    return 0;
}

// Whether `f`'s parameters sit where `offsets` / `sizes` say (cuFuncGetParamInfo, CUDA 12.4+).
inline bool params_match(CUfunction f, const size_t* offsets, const size_t* sizes, int n) {
    using GetParamInfo = CUresult (*)(CUfunction, size_t, size_t*, size_t*);
    void* fn = nullptr;
    cudaDriverEntryPointQueryResult found;
    if (cudaGetDriverEntryPointByVersion("cuFuncGetParamInfo", &fn, 12040, cudaEnableDefault, &found) != cudaSuccess ||
        found != cudaDriverEntryPointSuccess || !fn) {
        cudaGetLastError();
        return false;
    }
    for (int i = 0; i < n; ++i) {
        size_t offset = 0, size = 0;
        if (reinterpret_cast<GetParamInfo>(fn)(f, i, &offset, &size) != CUDA_SUCCESS) return false;
        if (offset != offsets[i] || size != sizes[i]) return false;
    }
    size_t offset = 0, size = 0;  // and no parameter after the last
    return reinterpret_cast<GetParamInfo>(fn)(f, n, &offset, &size) != CUDA_SUCCESS;
}

// The launch API (HARNESS_NATIVE_LAUNCH): "packed" (the default: cuLaunchKernel, the stand-ins looked up once,
// parameters in one buffer), "driver" (cuLaunchKernel with an argument array), "runtime" (<<<>>>, which looks the
// function up and checks its module on every call). Falls back packed -> driver -> runtime, saying why.
inline void choose_launch(State& st) {
    const char* env = std::getenv("HARNESS_NATIVE_LAUNCH");
    const std::string choice = env && *env ? env : "packed";
    if (choice == "runtime") return;
    void* fn = nullptr;
    cudaDriverEntryPointQueryResult found;
    if (cudaGetDriverEntryPointByVersion("cuLaunchKernel", &fn, 12000, cudaEnableDefault, &found) != cudaSuccess ||
        found != cudaDriverEntryPointSuccess || !fn) {
        cudaGetLastError();
        st.launch_note = "cuLaunchKernel not found: runtime launches";
        return;
    }
    cudaFunction_t compute = nullptr, memory = nullptr;
    if (cudaGetFuncBySymbol(&compute, (const void*)nx_compute) != cudaSuccess ||
        cudaGetFuncBySymbol(&memory, (const void*)nx_memory) != cudaSuccess) {
        cudaGetLastError();
        st.launch_note = "the stand-ins' functions not found: runtime launches";
        return;
    }
    st.f_compute = CUfunction(compute);
    st.f_memory = CUfunction(memory);
    st.cu_launch = reinterpret_cast<PFN_cuLaunchKernel_v4000>(fn);
    st.launch_api = LAUNCH_DRIVER;
    if (choice != "packed") return;
    const size_t c_off[] = {offsetof(ComputeParams, ns), offsetof(ComputeParams, sink), offsetof(ComputeParams, starts),
                            offsetof(ComputeParams, ends), offsetof(ComputeParams, slot)};
    const size_t c_size[] = {8, 8, 8, 8, 4};
    const size_t m_off[] = {offsetof(MemoryParams, ns), offsetof(MemoryParams, src), offsetof(MemoryParams, dst),
                            offsetof(MemoryParams, n), offsetof(MemoryParams, starts), offsetof(MemoryParams, ends),
                            offsetof(MemoryParams, slot)};
    const size_t m_size[] = {8, 8, 8, 8, 8, 8, 4};
    if (!params_match(st.f_compute, c_off, c_size, 5) || !params_match(st.f_memory, m_off, m_size, 7)) {
        st.launch_note = "packed parameters not confirmed by cuFuncGetParamInfo: driver launches with arguments";
        return;
    }
    st.launch_api = LAUNCH_PACKED;
}

// One packed launch that must stamp slot 0 and run its 20 µs timer; else back to the argument array.
inline void confirm_packed(State& st) {
    if (st.launch_api != LAUNCH_PACKED) return;
    NX_CHECK(cudaMemsetAsync(st.d_starts, 0xFF, sizeof(unsigned long long), st.own));
    NX_CHECK(cudaMemsetAsync(st.d_ends, 0, sizeof(unsigned long long), st.own));
    const int r = launch_kernel(st, KIND_LATENCY, 1, 20000, st.own, 0, st.launch_api);
    const cudaError_t e = cudaStreamSynchronize(st.own);
    unsigned long long a = 0, b = 0;
    if (r == 0 && e == cudaSuccess) {
        NX_CHECK(cudaMemcpy(&a, st.d_starts, 8, cudaMemcpyDeviceToHost));
        NX_CHECK(cudaMemcpy(&b, st.d_ends, 8, cudaMemcpyDeviceToHost));
    }
    cudaGetLastError();
    if (r != 0 || e != cudaSuccess || a == ~0ULL || b < a + 20000) {
        st.launch_api = LAUNCH_DRIVER;
        st.launch_note = "a packed launch did not run as asked (CUresult " + std::to_string(r) +
                         "): driver launches with arguments";
    }
}

struct CudaThread {
    State& st;
    explicit CudaThread(State& s) : st(s) {}

    int64_t now() const { return host_ns(); }
    void spin_until(int64_t t) {
        if (st.spin_pause)
            while (host_ns() < t) cpu_relax();
        else
            while (host_ns() < t) {
            }
    }
    void relax() {
        if (st.spin_pause) cpu_relax();
    }
    void pause() { sched_yield(); }

    void check(cudaError_t e, const char* what) {
        if (e != cudaSuccess) st.fail(e, what);
    }
    void launch(const Step& s) {
        const int r = launch_kernel(st, s.kind, s.grid, s.timer_ns, st.run_streams[s.stream], s.stamp, st.launch_api);
        if (r != 0 && st.error.exchange(1) == 0) st.error_text = "cuLaunchKernel: CUresult " + std::to_string(r);
    }
    void launch_graph(const Step& s) {
        cudaStream_t q = st.run_streams[s.stream];
        check(cudaEventRecord(st.events[s.ev_a], q), "cudaEventRecord");
        check(cudaGraphLaunch(st.graphs[s.slot], q), "cudaGraphLaunch");
        check(cudaEventRecord(st.events[s.ev_b], q), "cudaEventRecord");
    }
    void copy(const Step& s) {
        cudaStream_t q = st.run_streams[s.stream];
        const size_t n = size_t(s.nbytes);
        char* host = s.memory == PAGEABLE ? st.pageable : st.pinned;
        check(cudaEventRecord(st.events[s.ev_a], q), "cudaEventRecord");
        if (n > 0) {
            if (s.direction == H2D)
                check(cudaMemcpyAsync(st.scratch, host, n, cudaMemcpyHostToDevice, q), "cudaMemcpyAsync");
            else if (s.direction == D2H)
                check(cudaMemcpyAsync(host, st.scratch, n, cudaMemcpyDeviceToHost, q), "cudaMemcpyAsync");
            else
                check(cudaMemcpyAsync(st.scratch + st.scratch_cap / 2, st.scratch, n, cudaMemcpyDeviceToDevice, q),
                      "cudaMemcpyAsync");
        }
        check(cudaEventRecord(st.events[s.ev_b], q), "cudaEventRecord");
    }
    void record(const Step& s) { check(cudaEventRecord(st.events[s.ev_a], st.run_streams[s.stream]), "cudaEventRecord"); }
    void wait(const Step& s, int32_t event) {
        cudaStream_t q = st.run_streams[s.stream];
        check(cudaEventRecord(st.events[s.ev_a], q), "cudaEventRecord");
        check(cudaStreamWaitEvent(q, st.events[event], 0), "cudaStreamWaitEvent");
        check(cudaEventRecord(st.events[s.ev_b], q), "cudaEventRecord");
    }
    bool query_event(int32_t event) {
        const cudaError_t e = cudaEventQuery(st.events[event]);
        if (e == cudaErrorNotReady) return false;
        check(e, "cudaEventQuery");
        return true;
    }
    bool query_stream(int32_t stream) {
        const cudaError_t e = cudaStreamQuery(st.run_streams[stream]);
        if (e == cudaErrorNotReady) return false;
        check(e, "cudaStreamQuery");
        return true;
    }
};

// (host ns, globaltimer ns) of one instant: best of `reps` round trips through mapped memory.
inline std::pair<int64_t, int64_t> host_gt_pair(State& st, int reps = 25) {
    int64_t best_window = INT64_MAX, best_host = 0, best_gt = 0;
    volatile unsigned long long* m = st.mapped;
    for (int r = 0; r < reps; ++r) {
        *m = 0;
        const int64_t h0 = host_ns();
        nx_stamp_mapped<<<1, 1, 0, st.own>>>(st.mapped_dev);
        while (*m == 0) cpu_relax();
        const int64_t h1 = host_ns();
        NX_CHECK(cudaStreamSynchronize(st.own));
        if (h1 - h0 < best_window) {
            best_window = h1 - h0;
            // The write left the GPU between h0 and h1; it takes ~1 µs to reach the host: a quarter window back.
            best_host = h1 - (h1 - h0) / 4;
            best_gt = int64_t(*m);
        }
    }
    return {best_host, best_gt};
}

// globaltimer ns of the event clock's zero (st.t0): events recorded around a stamp on an idle stream.
inline int64_t t0_on_globaltimer(State& st, int reps = 25) {
    float best = 1e30f;
    int64_t best_gt0 = 0;
    for (int r = 0; r < reps; ++r) {
        NX_CHECK(cudaEventRecord(st.ta, st.own));
        nx_stamp<<<1, 1, 0, st.own>>>(st.d_stamp);
        NX_CHECK(cudaEventRecord(st.tb, st.own));
        NX_CHECK(cudaStreamSynchronize(st.own));
        float a = 0, b = 0;
        NX_CHECK(cudaEventElapsedTime(&a, st.t0, st.ta));
        NX_CHECK(cudaEventElapsedTime(&b, st.t0, st.tb));
        unsigned long long gt = 0;
        NX_CHECK(cudaMemcpy(&gt, st.d_stamp, sizeof(gt), cudaMemcpyDeviceToHost));
        if (b - a < best) {
            best = b - a;
            best_gt0 = int64_t(gt) - int64_t(double(a + b) * 0.5e6);  // the stamp ran mid-window, event time
        }
    }
    return best_gt0;
}

void ensure(State& st, int streams, int timing_events, int64_t stamps, int64_t host_bytes, int64_t device_bytes) {
    while (int(st.streams.size()) < streams) {
        cudaStream_t s;
        NX_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
        st.streams.push_back(s);
    }
    while (int(st.events.size()) < timing_events) {
        cudaEvent_t e;
        NX_CHECK(cudaEventCreate(&e));
        st.events.push_back(e);
    }
    if (stamps > st.stamp_cap) {
        if (st.d_starts) cudaFree(st.d_starts), cudaFree(st.d_ends);
        NX_CHECK(cudaMalloc(&st.d_starts, stamps * sizeof(unsigned long long)));
        NX_CHECK(cudaMalloc(&st.d_ends, stamps * sizeof(unsigned long long)));
        st.stamp_cap = stamps;
    }
    if (host_bytes > st.host_cap) {
        if (st.pinned) cudaFreeHost(st.pinned), free(st.pageable);
        NX_CHECK(cudaHostAlloc((void**)&st.pinned, host_bytes, cudaHostAllocDefault));
        st.pageable = static_cast<char*>(malloc(host_bytes));
        if (!st.pageable) throw std::runtime_error("out of host memory for the pageable pool");
        memset(st.pageable, 1, host_bytes);  // touched: no page faults inside the run
        memset(st.pinned, 1, host_bytes);
        st.host_cap = host_bytes;
    }
    if (2 * device_bytes > st.scratch_cap) {
        if (st.scratch) cudaFree(st.scratch);
        NX_CHECK(cudaMalloc(&st.scratch, 2 * device_bytes));
        st.scratch_cap = 2 * device_bytes;
    }
}

}  // namespace nx

using nx::State;

static void put_error(char* err, int errlen, const char* text) {
    if (err && errlen > 0) std::snprintf(err, errlen, "%s", text);
}

extern "C" void* nx_open(int device, char* err, int errlen) {
    State* st = nullptr;
    try {
        NX_CHECK(cudaSetDevice(device));
        st = new State();
        st->device = device;
        NX_CHECK(cudaDeviceGetAttribute(&st->sms, cudaDevAttrMultiProcessorCount, device));
        NX_CHECK(cudaStreamCreateWithFlags(&st->own, cudaStreamNonBlocking));
        NX_CHECK(cudaEventCreate(&st->t0));
        NX_CHECK(cudaEventCreate(&st->ta));
        NX_CHECK(cudaEventCreate(&st->tb));
        NX_CHECK(cudaMalloc(&st->d_stamp, sizeof(unsigned long long)));
        NX_CHECK(cudaMalloc(&st->sink, nx::THREADS * sizeof(float)));
        NX_CHECK(cudaMalloc(&st->src, nx::STREAM_BYTES));
        NX_CHECK(cudaMalloc(&st->dst, nx::STREAM_BYTES));
        NX_CHECK(cudaMemset(st->src, 0, nx::STREAM_BYTES));
        NX_CHECK(cudaHostAlloc((void**)&st->mapped, sizeof(unsigned long long), cudaHostAllocMapped));
        NX_CHECK(cudaHostGetDevicePointer((void**)&st->mapped_dev, st->mapped, 0));
        nx::ensure(*st, 1, 0, 1, 1 << 20, 1 << 20);
        nx::choose_launch(*st);
        nx::confirm_packed(*st);
        NX_CHECK(cudaDeviceSynchronize());
        st->last_pair = nx::host_gt_pair(*st);
        return st;
    } catch (const std::exception& e) {
        put_error(err, errlen, e.what());
        delete st;
        return nullptr;
    }
}

extern "C" int nx_sms(void* h) { return static_cast<State*>(h)->sms; }

// How kernels go out: 2 cuLaunchKernel with packed parameters, 1 cuLaunchKernel with an argument array,
// 0 the runtime's <<<>>>; `note` says why the one asked for was not used ("" when it was).
extern "C" int nx_launch_api(void* h, char* note, int notelen) {
    const State& st = *static_cast<State*>(h);
    put_error(note, notelen, st.launch_note.c_str());
    return st.launch_api;
}

// PLACED_PINNED | PLACED_FIFO: what every thread of the last run was granted (HARNESS_NATIVE_CPUS / _FIFO).
extern "C" int nx_placement(void* h) { return static_cast<State*>(h)->placed.load(); }

// Back-to-back GPU time per kernel (ns) of `reps` stand-ins behind a busy kernel, by events.
extern "C" double nx_time_kernel(void* h, int kind, int grid, long long timer_ns, int reps, char* err, int errlen) {
    State& st = *static_cast<State*>(h);
    try {
        NX_CHECK(cudaSetDevice(st.device));
        const int api = st.launch_api;
        NX_LAUNCH(nx::launch_kernel(st, nx::KIND_LATENCY, 1, 200000, st.own, -1, api));  // keeps the stream busy
        NX_CHECK(cudaEventRecord(st.ta, st.own));
        for (int r = 0; r < reps; ++r) NX_LAUNCH(nx::launch_kernel(st, kind, grid, timer_ns, st.own, -1, api));
        NX_CHECK(cudaEventRecord(st.tb, st.own));
        NX_CHECK(cudaStreamSynchronize(st.own));
        NX_CHECK(cudaGetLastError());
        float ms = 0;
        NX_CHECK(cudaEventElapsedTime(&ms, st.ta, st.tb));
        return double(ms) * 1e6 / reps;
    } catch (const std::exception& e) {
        put_error(err, errlen, e.what());
        return -1.0;
    }
}

// Capture a graph of stand-in kernels (kernel i stamps slot stamp_base + i; stamp_base -1: no stamps); its index.
static int capture_graph(State& st, const int32_t* kinds, const int32_t* grids, const int64_t* timer_ns, int n,
                         int stamp_base) {
    NX_CHECK(cudaSetDevice(st.device));
    cudaStream_t cap;
    NX_CHECK(cudaStreamCreateWithFlags(&cap, cudaStreamNonBlocking));
    cudaGraph_t graph;
    NX_CHECK(cudaStreamBeginCapture(cap, cudaStreamCaptureModeThreadLocal));
    // captured with the argument array: a packed launch gains nothing in a graph
    const int api = std::min(st.launch_api, int(nx::LAUNCH_DRIVER));
    for (int i = 0; i < n; ++i) {
        const int slot = stamp_base < 0 ? -1 : stamp_base + i;
        NX_LAUNCH(nx::launch_kernel(st, kinds[i], grids[i], timer_ns[i], cap, slot, api));
    }
    NX_CHECK(cudaStreamEndCapture(cap, &graph));
    cudaGraphExec_t exec;
    NX_CHECK(cudaGraphInstantiate(&exec, graph, 0));
    NX_CHECK(cudaGraphDestroy(graph));
    NX_CHECK(cudaGraphUpload(exec, cap));
    NX_CHECK(cudaStreamSynchronize(cap));
    NX_CHECK(cudaStreamDestroy(cap));
    st.graphs.push_back(exec);
    return int(st.graphs.size()) - 1;
}

// A diagnostic (tools/graph_diag.py): a graph whose kernel i stamps slot stamp_base + i in the runs that launch it
// (nx_last_stamps reads them); the stamp arrays are first made to hold `capacity` slots, so a run of at most that
// many stamps keeps them where this graph writes. Its index, or -1.
extern "C" int nx_add_graph_stamped(void* h, const int32_t* kinds, const int32_t* grids, const int64_t* timer_ns,
                                    int n, int stamp_base, long long capacity, char* err, int errlen) {
    State& st = *static_cast<State*>(h);
    try {
        NX_CHECK(cudaSetDevice(st.device));
        if (stamp_base < 0 || stamp_base + n > capacity) throw std::runtime_error("stamp slots out of the capacity");
        nx::ensure(st, 1, 0, capacity, 1, 1);
        return capture_graph(st, kinds, grids, timer_ns, n, stamp_base);
    } catch (const std::exception& e) {
        put_error(err, errlen, e.what());
        return -1;
    }
}

// The driver's own launch call on this host, the floor under any launch command: `reps` launches of an empty kernel
// with no parameters, back to back on the executor's own stream through cuLaunchKernel (the runtime's <<<>>> where
// the driver's entry point was not found), each call timed alone on CLOCK_MONOTONIC; the host ns of each into `out`.
// After `reps / 8` discarded warm-up launches; the stream is synced every 512 launches so no queue fills. 0 or -1.
extern "C" int nx_launch_floor(void* h, int reps, int64_t* out, char* err, int errlen) {
    State& st = *static_cast<State*>(h);
    try {
        NX_CHECK(cudaSetDevice(st.device));
        CUfunction f = nullptr;
        if (st.cu_launch) {
            cudaFunction_t g = nullptr;
            NX_CHECK(cudaGetFuncBySymbol(&g, (const void*)nx::nx_empty));
            f = CUfunction(g);
        }
        for (int i = -reps / 8; i < reps; ++i) {
            if (((i + reps) & 511) == 0) NX_CHECK(cudaStreamSynchronize(st.own));
            const int64_t a = nx::monotonic_ns();
            if (f) {
                NX_LAUNCH(int(st.cu_launch(f, 1, 1, 1, 32, 1, 1, 0, CUstream(st.own), nullptr, nullptr)));
            } else {
                nx::nx_empty<<<1, 32, 0, st.own>>>();
            }
            const int64_t b = nx::monotonic_ns();
            if (i >= 0) out[i] = b - a;
        }
        NX_CHECK(cudaStreamSynchronize(st.own));
        NX_CHECK(cudaGetLastError());
        return 0;
    } catch (const std::exception& e) {
        put_error(err, errlen, e.what());
        return -1;
    }
}

// A run is coming: the pool's threads spin from now (HARNESS_NATIVE_LINGER_MS), so the run finds them awake.
extern "C" void nx_wake(void* h) { static_cast<State*>(h)->pool.wake(); }

// How many host threads the pool holds, and how many times one was placed (pinned or unpinned) since nx_open.
extern "C" void nx_pool_stats(void* h, int64_t* out) {
    const State& st = *static_cast<State*>(h);
    out[0] = st.pool.size();
    out[1] = st.pool.placements();
}

// The last run's set-up (host clock ns, 5 values): nx_run entered, its stream synced (memsets, t0 recorded), the
// run handed to the pool, its first thread started (placed on its CPU where it was not yet), its CUDA device set.
extern "C" void nx_last_setup(void* h, int64_t* out) {
    const State& st = *static_cast<State*>(h);
    for (int i = 0; i < 5; ++i) out[i] = st.setup_ns[i];
}

// The last run's stamps on the host clock (ns, -1: not stamped), slots [0, n); how many were copied.
extern "C" long long nx_last_stamps(void* h, int64_t* starts, int64_t* ends, long long n) {
    const State& st = *static_cast<State*>(h);
    const long long m = std::min<long long>(n, (long long)st.last_starts.size());
    for (long long i = 0; i < m; ++i) starts[i] = st.last_starts[i], ends[i] = st.last_ends[i];
    return m;
}

// Capture a graph of stand-in kernels (no stamps); its index, or -1.
extern "C" int nx_add_graph(void* h, const int32_t* kinds, const int32_t* grids, const int64_t* timer_ns, int n,
                            char* err, int errlen) {
    State& st = *static_cast<State*>(h);
    try {
        return capture_graph(st, kinds, grids, timer_ns, n, -1);
    } catch (const std::exception& e) {
        put_error(err, errlen, e.what());
        return -1;
    }
}

// Back-to-back GPU time per launch (ns) of captured graph `index`, behind a busy kernel, by events.
extern "C" double nx_time_graph(void* h, int index, int reps, char* err, int errlen) {
    State& st = *static_cast<State*>(h);
    try {
        NX_CHECK(cudaSetDevice(st.device));
        NX_LAUNCH(nx::launch_kernel(st, nx::KIND_LATENCY, 1, 200000, st.own, -1, st.launch_api));
        NX_CHECK(cudaEventRecord(st.ta, st.own));
        for (int r = 0; r < reps; ++r) NX_CHECK(cudaGraphLaunch(st.graphs.at(index), st.own));
        NX_CHECK(cudaEventRecord(st.tb, st.own));
        NX_CHECK(cudaStreamSynchronize(st.own));
        float ms = 0;
        NX_CHECK(cudaEventElapsedTime(&ms, st.ta, st.tb));
        return double(ms) * 1e6 / reps;
    } catch (const std::exception& e) {
        put_error(err, errlen, e.what());
        return -1.0;
    }
}

// The median host time (ns) from cudaGraphLaunch's return to the stream going idle, of graph `index` launched alone
// on an idle stream, `reps` times: its kernels plus the GPU's own lead-in and tail around them (what a graph that
// the host waits for takes; back to back, nx_time_graph, the lead-in and tail overlap the previous launch).
extern "C" double nx_time_graph_alone(void* h, int index, int reps, char* err, int errlen) {
    State& st = *static_cast<State*>(h);
    try {
        NX_CHECK(cudaSetDevice(st.device));
        cudaGraphExec_t graph = st.graphs.at(index);
        std::vector<int64_t> spans;
        for (int r = 0; r < reps; ++r) {
            NX_CHECK(cudaStreamSynchronize(st.own));
            const int64_t idle = nx::host_ns() + 20000;  // 20 µs idle: the stream's previous work is long done
            while (nx::host_ns() < idle) nx::cpu_relax();
            NX_CHECK(cudaGraphLaunch(graph, st.own));
            const int64_t ret = nx::host_ns();
            cudaError_t e;
            while ((e = cudaStreamQuery(st.own)) == cudaErrorNotReady) nx::cpu_relax();
            NX_CHECK(e);
            spans.push_back(nx::host_ns() - ret);
        }
        std::sort(spans.begin(), spans.end());
        return spans.empty() ? -1.0 : double(spans[spans.size() / 2]);
    } catch (const std::exception& e) {
        put_error(err, errlen, e.what());
        return -1.0;
    }
}

// A diagnostic (tools/graph_diag.py): a graph of these stand-ins captured with each kernel stamping its own start and
// end (slots 0..n-1), launched alone on a stream idle for `idle_ns` before each launch, `reps` times. Per launch, 3 + 2n host-clock ns into `out`:
// the launch call's start, its return, when the host saw the stream idle, then the n kernels' starts and ends.
// Returns 0, or 1 with `err` set. Leaves the stamp slots dirty (a run resets the ones it uses).
extern "C" int nx_trace_graph(void* h, const int32_t* kinds, const int32_t* grids, const int64_t* timer_ns, int n,
                              int reps, long long idle_ns, int64_t* out, char* err, int errlen) {
    State& st = *static_cast<State*>(h);
    cudaGraphExec_t exec = nullptr;
    try {
        NX_CHECK(cudaSetDevice(st.device));
        nx::ensure(st, 1, 0, std::max(1, n), 1, 1);
        cudaStream_t cap;
        NX_CHECK(cudaStreamCreateWithFlags(&cap, cudaStreamNonBlocking));
        cudaGraph_t graph;
        NX_CHECK(cudaStreamBeginCapture(cap, cudaStreamCaptureModeThreadLocal));
        const int api = std::min(st.launch_api, int(nx::LAUNCH_DRIVER));
        for (int i = 0; i < n; ++i) NX_LAUNCH(nx::launch_kernel(st, kinds[i], grids[i], timer_ns[i], cap, i, api));
        NX_CHECK(cudaStreamEndCapture(cap, &graph));
        NX_CHECK(cudaGraphInstantiate(&exec, graph, 0));
        NX_CHECK(cudaGraphDestroy(graph));
        NX_CHECK(cudaGraphUpload(exec, cap));
        NX_CHECK(cudaStreamSynchronize(cap));
        NX_CHECK(cudaStreamDestroy(cap));
        const auto before = nx::host_gt_pair(st);
        std::vector<std::vector<unsigned long long>> gts(reps, std::vector<unsigned long long>(2 * size_t(n)));
        for (int r = 0; r < reps; ++r) {
            int64_t* row = out + size_t(r) * (3 + 2 * size_t(n));
            NX_CHECK(cudaMemsetAsync(st.d_starts, 0xFF, n * sizeof(unsigned long long), st.own));
            NX_CHECK(cudaMemsetAsync(st.d_ends, 0, n * sizeof(unsigned long long), st.own));
            NX_CHECK(cudaStreamSynchronize(st.own));
            const int64_t idle = nx::host_ns() + idle_ns;
            while (nx::host_ns() < idle) nx::cpu_relax();
            row[0] = nx::host_ns();
            NX_CHECK(cudaGraphLaunch(exec, st.own));
            row[1] = nx::host_ns();
            cudaError_t e;
            while ((e = cudaStreamQuery(st.own)) == cudaErrorNotReady) nx::cpu_relax();
            NX_CHECK(e);
            row[2] = nx::host_ns();
            NX_CHECK(cudaMemcpy(gts[r].data(), st.d_starts, n * 8, cudaMemcpyDeviceToHost));
            NX_CHECK(cudaMemcpy(gts[r].data() + n, st.d_ends, n * 8, cudaMemcpyDeviceToHost));
        }
        const auto after = nx::host_gt_pair(st);
        nx::Linear to_host;
        to_host.gt0 = double(before.second);
        to_host.off0 = double(before.first - before.second);
        const double span = double(after.second - before.second);
        if (span > 0) to_host.slope = (double(after.first - after.second) - to_host.off0) / span;
        for (int r = 0; r < reps; ++r) {
            int64_t* row = out + size_t(r) * (3 + 2 * size_t(n));
            for (int i = 0; i < n; ++i) {
                const unsigned long long a = gts[r][i], b = gts[r][n + i];
                row[3 + i] = a == ~0ULL ? -1 : to_host(int64_t(a));
                row[3 + n + i] = b == 0 ? -1 : to_host(int64_t(b));
            }
        }
        NX_CHECK(cudaGraphExecDestroy(exec));
        return 0;
    } catch (const std::exception& e) {
        put_error(err, errlen, e.what());
        if (exec) cudaGraphExecDestroy(exec);
        cudaDeviceSynchronize();
        return 1;
    }
}

// Run the threads' steps, one std::thread each, all starting lead_ns from now; fills outs (host clock ns).
extern "C" int nx_run(void* h, int n_threads, const nx::Step* const* steps, const int64_t* counts,
                      nx::Out* const* outs, int streams, const int32_t* sync_order, const uint64_t* stream_handles,
                      int events, int timing_events, long long stamps,
                      long long host_bytes, long long device_bytes, long long est0_ns, long long lead_ns,
                      long long start_ns, char* err,
                      int errlen) {
    State& st = *static_cast<State*>(h);
    try {
        st.setup_ns[0] = nx::host_ns();
        NX_CHECK(cudaSetDevice(st.device));
        nx::ensure(st, streams, timing_events, std::max(1LL, stamps), std::max(1LL, host_bytes),
                   std::max(1LL, device_bytes));
        st.run_streams.assign(streams, nullptr);
        for (int i = 0; i < streams; ++i)
            st.run_streams[i] = stream_handles && stream_handles[i] ? reinterpret_cast<cudaStream_t>(stream_handles[i])
                                                                    : st.streams[i];
        NX_CHECK(cudaMemsetAsync(st.d_starts, 0xFF, stamps * sizeof(unsigned long long), st.own));
        NX_CHECK(cudaMemsetAsync(st.d_ends, 0, stamps * sizeof(unsigned long long), st.own));
        NX_CHECK(cudaStreamSynchronize(st.own));  // not the device: work queued before the program keeps running
        // The clocks are mapped after the run, not here: what runs before the threads start delays the program
        // (its rows start when its threads do), and each mapping costs ~1 ms. The event clock's zero is recorded
        // now; drift is interpolated from the previous mapping (at open or the previous run's end) to the next.
        NX_CHECK(cudaEventRecord(st.t0, st.own));
        st.setup_ns[1] = nx::host_ns();
        const auto before = st.last_pair;
        st.error = 0;

        nx::Shared shared(events, n_threads, streams, sync_order);
        const std::vector<int> cpus = nx::placement_cpus();
        const bool fifo = nx::fifo_wanted();
        st.spin_pause = nx::spin_pauses();
        st.placed = (cpus.empty() ? 0 : nx::PLACED_PINNED) | (fifo ? nx::PLACED_FIFO : 0);
        // start_ns > 0: the program started then (its command's issue; its first gaps absorb the set-up since)
        const int64_t start = start_ns > 0 ? int64_t(start_ns) : nx::host_ns() + lead_ns;
        st.setup_ns[2] = nx::host_ns();
        // The pool's threads (worker_pool.hpp): made once, placed once, awake since nx_wake or the last run.
        st.pool.run(n_threads, cpus, fifo, [&](int t, int placed) {
            if (t == 0) st.setup_ns[3] = nx::host_ns();
            st.placed.fetch_and(placed | ~(nx::PLACED_PINNED | nx::PLACED_FIFO));
            cudaSetDevice(st.device);
            if (t == 0) st.setup_ns[4] = nx::host_ns();
            nx::CudaThread dev(st);
            nx::run_thread(dev, shared, t, steps[t], counts[t], outs[t], start, est0_ns);
        });
        for (cudaStream_t q : st.run_streams) NX_CHECK(cudaStreamSynchronize(q));  // the program's work is done
        NX_CHECK(cudaStreamSynchronize(st.own));
        NX_CHECK(cudaGetLastError());
        if (st.error) throw std::runtime_error(st.error_text);
        const auto after = nx::host_gt_pair(st);
        const int64_t gt_t0 = nx::t0_on_globaltimer(st);
        st.last_pair = after;

        nx::Linear to_host;
        to_host.gt0 = double(before.second);
        to_host.off0 = double(before.first - before.second);
        const double span = double(after.second - before.second);
        if (span > 0) to_host.slope = (double(after.first - after.second) - to_host.off0) / span;

        std::vector<unsigned long long> starts(stamps), ends(stamps);
        if (stamps > 0) {
            NX_CHECK(cudaMemcpy(starts.data(), st.d_starts, stamps * 8, cudaMemcpyDeviceToHost));
            NX_CHECK(cudaMemcpy(ends.data(), st.d_ends, stamps * 8, cudaMemcpyDeviceToHost));
        }
        std::vector<int64_t> s_host(stamps), e_host(stamps), ev_host(timing_events, -1);
        for (long long i = 0; i < stamps; ++i) {
            s_host[i] = starts[i] == ~0ULL ? -1 : to_host(int64_t(starts[i]));
            e_host[i] = ends[i] == 0 ? -1 : to_host(int64_t(ends[i]));
        }
        for (int t = 0; t < n_threads; ++t)  // only the events this run recorded (a skipped wait recorded none)
            for (int64_t i = 0; i < counts[t]; ++i) {
                const nx::Step& s = steps[t][i];
                if (outs[t][i].status != nx::STATUS_OK) continue;
                for (int32_t e : {s.ev_a, s.ev_b}) {
                    if (e == nx::NO_EVENT) continue;
                    float ms = 0;
                    NX_CHECK(cudaEventElapsedTime(&ms, st.t0, st.events[e]));
                    ev_host[e] = to_host(gt_t0 + int64_t(double(ms) * 1e6));
                }
            }
        for (int t = 0; t < n_threads; ++t)
            nx::fill_device_times(steps[t], counts[t], outs[t], ev_host.data(), s_host.data(), e_host.data());
        st.last_starts = std::move(s_host);
        st.last_ends = std::move(e_host);
        return 0;
    } catch (const std::exception& e) {
        put_error(err, errlen, e.what());
        cudaDeviceSynchronize();
        return 1;
    }
}

extern "C" void nx_close(void* h) {
    State* st = static_cast<State*>(h);
    if (!st) return;
    cudaSetDevice(st->device);
    cudaDeviceSynchronize();
    for (auto g : st->graphs) cudaGraphExecDestroy(g);
    for (auto e : st->events) cudaEventDestroy(e);
    for (auto s : st->streams) cudaStreamDestroy(s);
    cudaFree(st->d_starts), cudaFree(st->d_ends), cudaFree(st->d_stamp), cudaFree(st->sink);
    cudaFree(st->src), cudaFree(st->dst), cudaFree(st->scratch);
    cudaFreeHost(st->pinned), cudaFreeHost(st->mapped);
    free(st->pageable);
    cudaStreamDestroy(st->own);
    delete st;
}
