"""Chunks of runs as Ray tasks (``pip install -e '.[ray]'``).

Each chunk is one task (``run_chunk``, one CPU); Ray retries a task whose worker died (``max_retries``,
system failures only: a run's own error is already caught and tabulated by ``execute_run``). Tasks are
submitted in a window of a few per cluster CPU, so the driver holds few object references however long
the sweep. Workers find the spec by its absolute path: on a cluster every node needs the package and the
spec's files at the same paths (one image and a shared file system, or a Ray ``runtime_env``).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable

from harness.runner import RunTables
from harness.sweep.worker import SpecRef, run_chunk

Finish = Callable[[int, RunTables], None]
GiveUp = Callable[[int, str], None]

IN_FLIGHT_PER_CPU = 2
CANCEL_WAIT_S = 10.0  # how long an interrupted sweep waits for its cancelled tasks to stop


class RayUnavailable(Exception):
    """Ray is not installed, or its cluster cannot be reached (the message says which)."""


def connect(address: str, num_cpus: int | None) -> bool:
    """Join the cluster at ``address`` (``auto``, ``host:port``, ``ray://...``) or start one here (``local``).

    Returns whether this call started or joined it (and so must shut it down); a Ray already initialised in this
    process (a test's local cluster) is used as it is.
    """
    try:
        import ray
    except ImportError:
        raise RayUnavailable("Ray is not installed: pip install -e '.[ray]'") from None
    if ray.is_initialized():
        return False
    kwargs = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.WARNING}
    try:
        if address == "local":
            ray.init(num_cpus=num_cpus, **kwargs)
        else:
            ray.init(address=address, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as err:
        raise RayUnavailable(f"cannot reach the Ray cluster at {address!r}: {err}") from None
    return True


def cluster_cpus() -> int:
    import ray

    return max(1, int(ray.cluster_resources().get("CPU", 1)))


def disconnect(owned: bool) -> None:
    """Shut down the Ray that :func:`connect` started or joined (not one that was running here before)."""
    if owned:
        import ray

        ray.shutdown()


def run_ray(ref: SpecRef, chunks: list[list[int]], finish: Finish, give_up: GiveUp, attempts: int = 3) -> None:
    """Run ``chunks`` as tasks on the connected Ray; each chunk's runs are handed to ``finish`` as its task returns."""
    import ray
    from ray.exceptions import RayError

    task = ray.remote(num_cpus=1, max_retries=attempts - 1, retry_exceptions=False)(run_chunk)
    window = max(2, cluster_cpus() * IN_FLIGHT_PER_CPU)
    todo = iter(chunks)
    in_flight: dict = {}
    try:
        while True:
            while len(in_flight) < window and (chunk := next(todo, None)) is not None:
                in_flight[task.remote(ref, chunk)] = chunk
            if not in_flight:
                return
            ready, _ = ray.wait(list(in_flight), num_returns=1)
            for done in ready:
                chunk = in_flight.pop(done)
                try:
                    outcome = ray.get(done)
                except RayError as err:
                    reason = f"its Ray task failed after {attempts} attempt(s): {type(err).__name__}: {err}"
                    for index in chunk:
                        give_up(index, reason)
                    continue
                for index, tables in outcome:
                    finish(index, tables)
    except BaseException:
        for pending in in_flight:
            ray.cancel(pending, force=True)
        if in_flight:  # cancelling is asynchronous: wait (a while) until the workers have stopped writing
            with contextlib.suppress(Exception):
                ray.wait(list(in_flight), num_returns=len(in_flight), timeout=CANCEL_WAIT_S)
        raise
