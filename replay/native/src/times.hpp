// Each device op's start and end from the events and stamps of a run (fake_api.cpp, cuda_api.cu).
#pragma once

#include "executor.hpp"

namespace nx {

// ev[i], stamp_start[i], stamp_end[i]: times on the host clock (ns); -1 where unknown.
inline void fill_device_times(const Step* steps, int64_t n, Out* out, const int64_t* ev, const int64_t* stamp_start,
                              const int64_t* stamp_end) {
    for (int64_t i = 0; i < n; ++i) {
        const Step& s = steps[i];
        Out& o = out[i];
        o.gpu_start_ns = o.gpu_end_ns = -1;
        if (o.status != STATUS_OK) continue;
        if (s.op == KERNEL) {
            o.gpu_start_ns = stamp_start[s.stamp];
            o.gpu_end_ns = stamp_end[s.stamp];
        } else if (s.op == RECORD) {
            o.gpu_start_ns = o.gpu_end_ns = ev[s.ev_a];
        } else if (s.ev_a != NO_EVENT) {
            o.gpu_start_ns = ev[s.ev_a];
            o.gpu_end_ns = s.ev_b != NO_EVENT ? ev[s.ev_b] : ev[s.ev_a];
        }
    }
}

}  // namespace nx
