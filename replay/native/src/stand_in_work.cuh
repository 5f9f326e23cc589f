// The stand-in kernels' work, written once for both kernel sets: replay/timed.py's (CuPy compiles this file's
// text ahead of its kernels) and the native executor's (src/cuda_api.cu includes it). Each runs the work of its
// kind until %globaltimer (ns, independent of the SM clock) says `duration_ns` has passed since `start`.
// `Ns` is the duration's type in the calling kernel's signature, and the elapsed time is compared as that type:
// timed.py's kernels take unsigned long long, the native ones long long (a negative duration runs no rounds).
#ifndef STAND_IN_WORK_CUH
#define STAND_IN_WORK_CUH

__device__ __forceinline__ unsigned long long globaltimer_ns() {
    unsigned long long t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    return t;
}

// COMPUTE (and LATENCY, on one warp): four chains of FMAs, 64 rounds between timer reads.
template <typename Ns>
__device__ __forceinline__ void fma_chains_until(unsigned long long start, Ns duration_ns, float* sink) {
    float a = threadIdx.x * 1e-3f, b = 0.5f + blockIdx.x * 1e-6f, c = 1.0f - threadIdx.x * 1e-7f, d = 0.25f;
    while (Ns(globaltimer_ns() - start) < duration_ns) {
#pragma unroll
        for (int i = 0; i < 64; ++i) {
            a = fmaf(a, 0.999f, b);
            b = fmaf(b, 1.001f, c);
            c = fmaf(c, 0.998f, d);
            d = fmaf(d, 1.002f, a);
        }
    }
    if (a + b + c + d == 1234.5f) sink[threadIdx.x] = a;  // never true in practice; keeps the FMAs alive
}

// MEMORY: the grid streams `n` float4s of `src` into `dst` (wrapping around), 8 per thread between timer reads.
template <typename Ns>
__device__ __forceinline__ void stream_copy_until(unsigned long long start, Ns duration_ns, const float4* src,
                                                  float4* dst, unsigned long long n) {
    unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x;
    const unsigned long long stride = gridDim.x * (unsigned long long)blockDim.x;
    while (Ns(globaltimer_ns() - start) < duration_ns) {
#pragma unroll
        for (int k = 0; k < 8; ++k) {
            dst[i] = src[i];
            i += stride;
            if (i >= n) i -= n;
        }
    }
}

#endif  // STAND_IN_WORK_CUH
