"""``python3 -m harness`` and the ``harness`` command (``harness = "harness.__main__:main"``)."""

from __future__ import annotations

import gc
import sys


def main() -> None:
    """Run the command line.

    Its modules are imported with the cyclic collector paused, and their objects (hundreds of
    thousands: every module, class and function, alive to the end) are then frozen, so that no later
    collection walks them again: 0.05-0.1 s of a 1.6 s command on the dev box.
    """
    if sys.argv[1:2] == ["sim"]:  # a simulation: the C allocator on huge pages (a new process, see the module)
        from harness.huge_pages import rerun_with_huge_pages

        rerun_with_huge_pages()
    gc.disable()
    try:
        from harness.cli import command_line

        app = command_line(sys.argv[1:])
    finally:
        gc.freeze()
        gc.enable()
    app(prog_name="harness")


if __name__ == "__main__":
    main()
