"""The server's request channel, built from the runtime's primitives.

The engine's scheduler reads its request channel three ways: a blocking receive
(wait for the first request), a non-blocking ``try_recv`` (drain what is queued,
join requests mid-batch) and a receive with a deadline (wait a few ms for
stragglers). The runtime offers only a blocking ``get``, so the channel is:

* the requests themselves in a FIFO (``collections.deque``) in host memory that
  the sending and receiving host threads share: ``append`` and ``popleft`` are
  atomic in CPython, so this holds under the replay's real threads as under
  the simulator;
* a runtime queue, the *doorbell*, that carries one wake-up per send and one
  per expired deadline, so that a receiver with nothing to take blocks in the
  runtime (``rt.get``) rather than spinning;
* a deadline is a short-lived host thread that waits (``rt.host_work``) until
  the deadline and then rings the doorbell with its own number; a receiver
  ignores wake-ups that are stale (for an item it already took, or a timer it no
  longer waits on).

``try_recv`` yields nothing: taking from a shared FIFO costs no modelled time,
as the engine's ``try_recv`` costs next to none. An item with a ``sent_seq``
attribute gets its place in the channel's order (1, 2, ...) when it is sent.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

from harness.runtime import PolicyGen, Queue, Runtime, Thread

_WAKE = 0  # doorbell token of a send; deadlines ring with their own number (>= 1)


def _deadline_timer(rt: Runtime, doorbell: Queue, wait_us: float, number: int) -> PolicyGen:
    yield rt.host_work(wait_us, "batch_window")
    yield rt.put(doorbell, number)


class RequestChannel:
    """A FIFO of requests between host threads, with blocking, non-blocking and deadline receives."""

    def __init__(self, doorbell: Queue) -> None:
        self.items: deque[Any] = deque()
        self.doorbell = doorbell
        self._timers = 0
        self.timer_threads: list[Thread] = []
        self.sent = 0
        self._send_lock = threading.Lock()  # senders may be real threads (replay)

    def send(self, rt: Runtime, item: Any) -> PolicyGen:
        with self._send_lock:
            self.sent += 1
            if hasattr(item, "sent_seq"):
                item.sent_seq = self.sent
            self.items.append(item)
        yield rt.put(self.doorbell, _WAKE)

    def try_recv(self) -> Any | None:
        return self.items.popleft() if self.items else None

    def has_items(self) -> bool:
        """Whether an item is queued (a ``try_recv`` now would return one); takes nothing."""
        return bool(self.items)

    def recv(self, rt: Runtime) -> PolicyGen:
        """Block until an item is queued; return it."""
        while not self.items:
            yield rt.get(self.doorbell)
        return self.items.popleft()

    def recv_until(self, rt: Runtime, deadline_us: float) -> PolicyGen:
        """The next item, or None once ``deadline_us`` has passed with none queued."""
        if self.items:
            return self.items.popleft()
        now = yield rt.now()
        if now >= deadline_us:
            return None
        self._timers += 1
        number = self._timers
        timer = yield rt.spawn(_deadline_timer, self.doorbell, deadline_us - now, number, name=f"deadline{number}")
        self.timer_threads.append(timer)
        while not self.items:
            token = yield rt.get(self.doorbell)
            if token == number:
                return None
        return self.items.popleft()

    def join_timers(self, rt: Runtime) -> PolicyGen:
        """Wait for every deadline thread (each ends within its window) so that none outlives the run."""
        for thread in self.timer_threads:
            yield rt.join(thread)
        self.timer_threads.clear()
