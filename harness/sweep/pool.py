"""The local pool: N worker processes of the standard library's ``multiprocessing``, one chunk of runs each.

Each worker has its own pipe, so the driver knows which runs a worker holds: a worker sends each run's
tables as the run ends, and when it dies (killed, out of memory, a crash in native code) the runs of its
chunk that had not come back are queued again, on a new worker, up to ``attempts`` times in all; after
that they are given up with the reason. Workers are forked where the platform allows it and no Ray is
running in this process (they then inherit the prepared spec); else spawned, and prepare it themselves.
"""

from __future__ import annotations

import multiprocessing as mp
import signal
import sys
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait

from harness.runner import RunTables, execute_run
from harness.sweep.worker import SpecRef, prepared_for

Finish = Callable[[int, RunTables], None]
GiveUp = Callable[[int, str], None]


def _serve(conn: Connection, ref: SpecRef) -> None:
    """A worker: runs each chunk it is sent, run by run, until it is sent None."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle: it stops the workers
    while True:
        try:
            indices = conn.recv()
        except EOFError:  # the driver is gone
            return
        if indices is None:
            return
        try:
            prepared, make_backend = prepared_for(ref)
        except Exception as err:  # the spec cannot be prepared here: every run of the chunk fails with it
            conn.send(("error", f"{type(err).__name__}: {err}"))
            continue
        for index in indices:
            conn.send(("run", index, execute_run(prepared, index, make_backend)))
        conn.send(("done",))


@dataclass
class _Worker:
    process: mp.process.BaseProcess
    conn: Connection
    runs: list[int] = field(default_factory=list)  # the runs of its chunk not yet back
    attempt: int = 0
    busy: bool = False


def _context() -> mp.context.BaseContext:
    ray = sys.modules.get("ray")
    ray_running = ray is not None and getattr(ray, "is_initialized", lambda: False)()
    if "fork" in mp.get_all_start_methods() and not ray_running:
        return mp.get_context("fork")
    return mp.get_context("spawn")


def run_local(
    ref: SpecRef, chunks: list[list[int]], workers: int, finish: Finish, give_up: GiveUp, attempts: int = 3
) -> int:
    """Run ``chunks`` on ``workers`` processes; returns how many times a chunk was started again after a death."""
    ctx = _context()
    queue: deque[tuple[list[int], int]] = deque((chunk, 1) for chunk in chunks if chunk)
    pool: list[_Worker] = []
    restarts = 0

    def start() -> _Worker:
        parent, child = ctx.Pipe()
        process = ctx.Process(target=_serve, args=(child, ref), daemon=True, name="harness-sweep-worker")
        process.start()
        child.close()
        return _Worker(process, parent)

    def receive(worker: _Worker) -> None:
        while True:
            try:
                if not worker.conn.poll():
                    return
                message = worker.conn.recv()
            except (EOFError, OSError):
                return
            if message[0] == "run":
                worker.runs.remove(message[1])
                finish(message[1], message[2])
            elif message[0] == "error":
                for index in worker.runs:
                    give_up(index, message[1])
                worker.runs, worker.busy = [], False
            else:  # "done"
                worker.busy = False

    try:
        while queue or any(w.busy for w in pool):
            for worker in pool:
                if not worker.busy and queue:
                    runs, worker.attempt = queue.popleft()
                    worker.runs, worker.busy = list(runs), True
                    try:
                        worker.conn.send(worker.runs)
                    except OSError:
                        pass  # it died: its sentinel says so below, and the chunk is queued again
            if queue and len(pool) < workers:
                pool.extend(start() for _ in range(min(len(queue), workers - len(pool))))
                continue
            busy = [w for w in pool if w.busy]
            if not busy:
                continue
            wait([w.conn for w in busy] + [w.process.sentinel for w in busy])
            for worker in busy:
                receive(worker)
                if worker.process.is_alive() or not worker.busy:
                    continue
                receive(worker)  # what it sent before it died
                worker.process.join()
                pool.remove(worker)
                if worker.runs and worker.attempt < attempts:
                    queue.appendleft((worker.runs, worker.attempt + 1))
                    restarts += 1
                else:
                    reason = f"its worker process died (exit status {worker.process.exitcode}) {attempts} times"
                    for index in worker.runs:
                        give_up(index, reason)
            for worker in list(pool):
                if not worker.busy and not worker.process.is_alive():  # died idle: nothing to retry
                    worker.process.join()
                    pool.remove(worker)
    finally:
        _stop(pool)
    return restarts


def _stop(pool: list[_Worker]) -> None:
    """Tell idle workers to stop; terminate the rest (an interrupted sweep); reap them all."""
    for worker in pool:
        try:
            if worker.busy:
                worker.process.terminate()
            else:
                worker.conn.send(None)
        except OSError:
            pass
    for worker in pool:
        worker.process.join(timeout=5)
        if worker.process.is_alive():
            worker.process.kill()
            worker.process.join()
        worker.conn.close()
