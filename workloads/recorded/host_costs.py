"""What a call a what-if adds to a recorded program costs the host: the program's kind of cost, not the replay engine's.

A what-if adds runtime calls to an eager PyTorch program (event records and waits,
graph launches). They cost what such a call costs *that kind of program*, in this order:

1. the profile's ``[host_costs.pytorch_eager]`` (:meth:`harness.profile.Profile.program_call_cost_us`,
   measured by ``harness calibrate --profiler``), when the profile has them;
2. else the recording's own calls of that kind: their median recorded duration (the
   program pays at least that; recorded under the profiler, as the rest of the recording);
3. else, for an event record or wait, the median of the recording's kernel launches (an
   eager runtime call of this very program);
4. else :data:`FALLBACK_US`.

Never the replay engine's own costs (``[host]``: 22-54 µs a launch, 2-5x an eager program's).
"""

from __future__ import annotations

import statistics

from harness.profile import Profile
from workloads.recorded.program import RecordedProgram

ADDED_KINDS = ("call_record", "call_wait", "call_graph_launch", "call_launch", "call_memcpy", "call_sync_event")
FALLBACK_US = {
    "call_record": 1.2,  # cudaEventRecord / cudaStreamWaitEvent in the bundled decode_async-sync recording (H200)
    "call_wait": 1.2,
    "call_sync_event": 25.0,  # cudaDeviceSynchronize on an idle GPU, bundled decode recordings (H200)
    "call_graph_launch": 140.0,  # cudaGraphLaunch of a 96-kernel graph, bundled decode_graph-sync (H200, profiled)
    "call_launch": 6.0,  # cudaLaunchKernel, bundled decode_inline-sync (H200)
    "call_memcpy": 9.0,  # cudaMemcpyAsync, bundled decode recordings (H200)
}
"""Recorded runtime-call durations of the bundled H200 recordings (``traces/recorded/``, medians)."""
_LIKE_A_LAUNCH = ("call_record", "call_wait")


def added_call_costs_us(program: RecordedProgram, profile: Profile | None) -> dict[str, float]:
    """``{call kind: host µs}`` for calls a what-if adds to ``program`` (see the module docstring)."""
    recorded: dict[str, list[float]] = {}
    for thread in program.threads:
        for call in thread.calls:
            if not call.synthetic and call.duration_us == call.duration_us:
                recorded.setdefault(call.kind, []).append(call.duration_us)
    eager = profile is not None and profile.pytorch_eager_measured
    costs = {}
    for kind in ADDED_KINDS:
        if eager:
            costs[kind] = profile.program_call_cost_us(kind)
        elif recorded.get(kind):
            costs[kind] = statistics.median(recorded[kind])
        elif kind in _LIKE_A_LAUNCH and recorded.get("call_launch"):
            costs[kind] = statistics.median(recorded["call_launch"])
        else:
            costs[kind] = FALLBACK_US[kind]
    return costs
