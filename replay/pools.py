"""Buffers the replay's copies move bytes between, allocated before the timed region.

Host buffers come in the two kinds the runtime names: pinned (page-locked,
``pin_memory``) and pageable (ordinary memory, touched once so its pages exist
before any copy). Device scratch serves copies that name no buffer. Each pool
keeps one buffer per kind and grows it (to the next 64 MiB) when a copy needs
more; the replay's warm-up run makes every buffer its timed runs need, since
pinning is slow and blocks the host.
"""

from __future__ import annotations

from typing import Any

from harness.runtime import HostMemory

_GRAIN = 64 << 20


def _rounded(nbytes: int) -> int:
    return max(_GRAIN, -(-nbytes // _GRAIN) * _GRAIN)


class HostPools:
    def __init__(self, torch: Any) -> None:
        self.torch = torch
        self._buffers: dict[HostMemory, Any] = {}

    def get(self, memory: HostMemory, nbytes: int) -> Any:
        """A host uint8 tensor of at least ``nbytes`` of the given kind."""
        buf = self._buffers.get(memory)
        if buf is None or buf.numel() < nbytes:
            torch = self.torch
            size = _rounded(nbytes)
            self._buffers.pop(memory, None)
            buf = torch.empty(size, dtype=torch.uint8, pin_memory=memory is HostMemory.PINNED)
            buf.fill_(1)  # fault every page in now, not during a timed copy
            self._buffers[memory] = buf
        return buf


class DeviceScratch:
    """One device buffer per device for copies that name none (grown on demand)."""

    def __init__(self, torch: Any) -> None:
        self.torch = torch
        self._buffers: dict[int, Any] = {}

    def get(self, device: int, nbytes: int) -> Any:
        buf = self._buffers.get(device)
        if buf is None or buf.numel() < nbytes:
            self._buffers.pop(device, None)
            buf = self.torch.empty(_rounded(nbytes), dtype=self.torch.uint8, device=f"cuda:{device}")
            self._buffers[device] = buf
        return buf

    def bytes(self) -> int:
        return sum(b.numel() for b in self._buffers.values())
