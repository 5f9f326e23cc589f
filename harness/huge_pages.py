"""Huge pages for the C allocator of a long simulation: ``harness sim`` re-runs itself with glibc's
``glibc.malloc.hugetlb=1`` tunable when the system offers transparent huge pages.

A 1 M-op simulation allocates and frees hundreds of MB of arrays phase after phase
(:mod:`harness.memory_release` hands them back between phases); each fresh 4 KiB page costs a
fault, ~210,000 of them (~1.2 s of system time on the 2-core dev box, and TLB misses in user
time besides). With the tunable, glibc's malloc asks the kernel for transparent huge pages
(``madvise(MADV_HUGEPAGE)``) on the memory it maps: ~46,000 faults, the same peak memory.
A tunable is read when the process starts, so it takes a new process: :func:`rerun_with_huge_pages`
replaces the process (``exec``, same pid, arguments and descriptors) by the same command with the
tunable added to ``GLIBC_TUNABLES``, once, before anything heavy is imported. Nothing changes where
it would not help: another C library or a glibc before 2.35 (no such tunable), transparent huge
pages off (``never``), the tunable already set (by the user, or by the first run), or
``HARNESS_HUGE_PAGES=0``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

TUNABLE = "glibc.malloc.hugetlb"
ENV_SWITCH = "HARNESS_HUGE_PAGES"  # "0": never re-run
THP_SETTING = "/sys/kernel/mm/transparent_hugepage/enabled"


def huge_page_environment(
    environ: Mapping[str, str], thp_mode: str | None, glibc: tuple[int, int] | None
) -> dict[str, str] | None:
    """The environment to re-run with (``environ`` with the tunable added), None where a re-run would not help."""
    if environ.get(ENV_SWITCH) == "0" or glibc is None or glibc < (2, 35) or thp_mode not in ("always", "madvise"):
        return None
    tunables = environ.get("GLIBC_TUNABLES", "")
    if any(item.split("=", 1)[0] == TUNABLE for item in tunables.split(":")):
        return None  # set already: the user's choice, or this is the re-run
    return {**environ, "GLIBC_TUNABLES": f"{tunables}:{TUNABLE}=1" if tunables else f"{TUNABLE}=1"}


def thp_mode() -> str | None:
    """The system's transparent huge page mode (``always``, ``madvise``, ``never``; None where it cannot say)."""
    try:
        with open(THP_SETTING) as setting:
            text = setting.read()
    except OSError:
        return None
    start, end = text.find("["), text.find("]")
    return text[start + 1 : end] if 0 <= start < end else None


def glibc_version() -> tuple[int, int] | None:
    """(major, minor) of the glibc this process runs on, None on another C library or system."""
    try:
        name, _, version = os.confstr("CS_GNU_LIBC_VERSION").partition(" ")  # "glibc 2.36"
        major, minor = version.split(".")[:2]
        return (int(major), int(minor)) if name == "glibc" else None
    except (AttributeError, ValueError, OSError, TypeError):  # no confstr, no such name, an odd version
        return None


def rerun_with_huge_pages() -> None:
    """Replace this process by the same command with the tunable set (see the module docstring); return where
    that would not help or cannot be done."""
    argv = getattr(sys, "orig_argv", None)
    if not argv or not sys.executable:
        return
    environ = huge_page_environment(os.environ, thp_mode(), glibc_version())
    if environ is None:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(sys.executable, [sys.executable, *argv[1:]], environ)
    except OSError:  # cannot exec (a sandbox, say): run on as this process
        return
