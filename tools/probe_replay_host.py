"""Where the replay's host time goes, per runtime command, in each fidelity shape (needs a CUDA GPU).

Runs every policy of every traces/specs/fidelity_*.toml on the replay backend
(after its usual warm-up) and prints, per shape and policy, the median µs per
command kind over three runs, next to the profile's host costs.

It times at the boundary the runtime interface itself exposes: a policy is a
generator that yields commands and is resumed with their results, so the probe
wraps the policy (and every thread it spawns) in a generator that reads the
host clock when a command is yielded and when the backend resumes it. A
command's figure is that span: the engine's handler plus its dispatch (a dict
look-up and a ``send``, under a microsecond); ``(policy)`` is the span from a
resume to the next yield, the policy's own Python. Commands that leave no ops
row (alloc, free, queues) are timed too; the ops table alone only gives the gap
from one issue to the next, which sums handler, dispatch and policy time.

Usage (from the repository root): python3 tools/probe_replay_host.py [PROFILE]
(PROFILE: a profile name or .toml path used instead of each spec's). Prints; writes nothing.
"""

from __future__ import annotations

import dataclasses
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

from harness.profile import load_profile
from harness.runtime import Command, Runtime, Spawn
from harness.spec import load_spec
from replay.engine import ReplayBackend, ReplayContext

SPECS = sorted(Path("traces/specs").glob("fidelity_*.toml"))
TIMED_RUNS = 3
POLICY_KEY = "(policy)"
NOT_SHOWN = ("Now", "CreateStream")

PolicyMain = Callable[..., Generator[Command, Any, Any]]


def timed_policy(main: PolicyMain, samples_us: dict[str, list[float]]) -> PolicyMain:
    """``main``, adding the host µs of each command it yields (keyed by command type) and of its own code
    to ``samples_us``."""

    def wrapped(rt: Runtime, *args: Any) -> Generator[Command, Any, Any]:
        gen = main(rt, *args)
        value: Any = None
        try:
            while True:
                resumed = time.perf_counter()
                try:
                    cmd = gen.send(value)
                except StopIteration as stop:
                    return stop.value
                if isinstance(cmd, Spawn):
                    cmd = dataclasses.replace(cmd, fn=timed_policy(cmd.fn, samples_us))
                yielded = time.perf_counter()
                samples_us[POLICY_KEY].append((yielded - resumed) * 1e6)
                value = yield cmd
                samples_us[type(cmd).__name__].append((time.perf_counter() - yielded) * 1e6)
        finally:
            gen.close()

    return wrapped


def main() -> None:
    context = ReplayContext(1)
    override = load_profile(sys.argv[1]) if len(sys.argv) > 1 else None
    profile = override
    for spec_path in SPECS:
        loaded = load_spec(spec_path)
        profile = override or loaded.profile
        inputs = loaded.workload.prepare(dataclasses.replace(loaded.prepare_context(), profile=profile))
        for policy in loaded.policies:
            samples_us: dict[str, list[float]] = defaultdict(list)
            policy_main = timed_policy(policy.policy.main, samples_us)
            backend = ReplayBackend(context, profile, loaded.device_memory_bytes)
            backend.run(policy_main, inputs, policy.params)  # warm-up runs (and kernel tuning), then one run
            samples_us.clear()
            for _ in range(TIMED_RUNS):
                backend.run(policy_main, inputs, policy.params)
            row = ", ".join(
                f"{k}={statistics.median(v):.1f}" for k, v in sorted(samples_us.items()) if k not in NOT_SHOWN
            )
            print(f"{loaded.spec.name:28} {policy.label:9} {row}", flush=True)
    h = profile.host
    print(
        f"profile {profile.name}: launch {h.launch_us}, copy_launch {h.copy_launch_us}, "
        f"record {h.record_us}, wait {h.wait_us}, alloc {h.alloc_us}, free {h.free_us}, sync_wake {h.sync_wake_us}"
    )


if __name__ == "__main__":
    main()
