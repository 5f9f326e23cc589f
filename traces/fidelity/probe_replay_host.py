"""Where the replay's host time goes, per runtime command, in each fidelity shape (needs a CUDA GPU).

Runs the ``sync`` and ``prefetch`` policies of every traces/specs/fidelity_*.toml
on the replay backend (after its usual warm-up), timing each command handler on
the host clock and the driver's own time between handlers (the policy generator
and the dispatch). Prints the median µs per command kind, per shape and policy,
next to the calibrated profile's figure. Usage: python3 traces/fidelity/probe_replay_host.py [PROFILE]
"""

from __future__ import annotations

import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

from harness.spec import load_spec
from replay.engine import ReplayBackend, ReplayContext, _Run

SPECS = sorted(Path("traces/specs").glob("fidelity_*.toml"))


def instrumented(samples: dict[str, list[float]]):
    original = _Run.__init__

    def init(self, backend):
        original(self, backend)
        last_end = [None]
        for kind, handler in list(self._handlers.items()):
            def timed(cmd, thread, handler=handler, name=kind.__name__):
                t0 = time.perf_counter()
                if last_end[0] is not None:
                    samples["(between)"].append((t0 - last_end[0]) * 1e6)
                try:
                    return handler(cmd, thread)
                finally:
                    t1 = time.perf_counter()
                    samples[name].append((t1 - t0) * 1e6)
                    last_end[0] = t1
            self._handlers[kind] = timed

    _Run.__init__ = init
    return original


def main() -> None:
    context = ReplayContext(1)
    profile_arg = sys.argv[1] if len(sys.argv) > 1 else None
    for spec_path in SPECS:
        loaded = load_spec(spec_path)
        profile = loaded.profile
        if profile_arg:
            from harness.profile import load_profile
            profile = load_profile(profile_arg)
        inputs = loaded.workload.prepare(loaded.workload_params, loaded.path.parent, profile, loaded.device_memory_bytes, loaded.spec.seed)
        for policy in loaded.policies:
            backend = ReplayBackend(context, profile, loaded.device_memory_bytes)
            backend.run(policy.policy.main, inputs, policy.params)  # warm-up (and tuning)
            samples: dict[str, list[float]] = defaultdict(list)
            original = instrumented(samples)
            try:
                for _ in range(3):
                    backend.run(policy.policy.main, inputs, policy.params)
            finally:
                _Run.__init__ = original
            row = ", ".join(f"{k}={statistics.median(v):.1f}" for k, v in sorted(samples.items()) if k not in ("Now", "CreateStream"))
            print(f"{loaded.spec.name:28} {policy.label:9} {row}", flush=True)
    h = profile.host
    print(f"profile {profile.name}: launch {h.launch_us}, copy_launch {h.copy_launch_us}, record {h.record_us}, wait {h.wait_us}, "
          f"alloc {h.alloc_us}, free {h.free_us}, sync_wake {h.sync_wake_us}")


if __name__ == "__main__":
    main()
