"""Hand memory a finished phase freed back to the system, so that the next phase does not stack on top of it.

A big recording is simulated in phases (read the trace, build the program, run it,
tabulate the ops): each frees hundreds of MB of frames and Arrow buffers when it ends.
Arrow's allocator (mimalloc) and glibc's malloc keep freed pages for reuse rather than
return them, so the process's resident memory after a phase stays at that phase's
high-water mark: 700 MB after building the program of a 1 M-op recording whose live
arrays are 80 MB. :func:`release_freed_memory` asks both to return what they hold unused
(a few ms); the run's peak is then the largest phase's, not their sum of leftovers.
"""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Callable
from functools import cache


@cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim`` (None elsewhere: another C library, another system)."""
    try:
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError, TypeError):  # TypeError: a system whose ctypes cannot open the process itself
        return None


def release_freed_memory() -> None:
    """Return the freed memory Arrow's pool and the C allocator keep to the system (only what is unused)."""
    pyarrow = sys.modules.get("pyarrow")  # nothing of Arrow's to release when it was never imported
    if pyarrow is not None:
        pyarrow.default_memory_pool().release_unused()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
