"""Errors raised for bad input, each naming the file and the field or row at fault."""

from __future__ import annotations

from pathlib import Path

import pydantic

SPEC_WORKLOAD = "[workload]"
"""Source a workload's ``prepare`` gives for a problem in the spec's own [workload]
values (not in a file it reads); the runner re-homes it to the spec file."""


class InputError(Exception):
    """Bad input: a spec, trace or profile that cannot be used as given.

    The CLI prints ``str(error)`` and exits non-zero; nothing is written.
    """

    def __init__(self, source: str | Path, where: str, message: str) -> None:
        self.source = str(source)
        self.where = where
        self.message = message
        super().__init__(f"{self.source}: {where}: {message}" if where else f"{self.source}: {message}")


def from_validation_error(source: str | Path, err: pydantic.ValidationError, prefix: str = "") -> InputError:
    """Turn pydantic's report into one InputError naming the first bad field."""
    first = err.errors()[0]
    loc = ".".join(str(part) for part in first["loc"])
    where = f"{prefix}.{loc}" if prefix and loc else (prefix or loc)
    more = len(err.errors()) - 1
    message = first["msg"].removeprefix("Value error, ")
    message += f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    return InputError(source, f"field '{where}'" if where else "", message)
