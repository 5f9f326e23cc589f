"""The corpus catalogue (``traces/recorded/corpus/corpus.toml``): programs, the processes that time and record
them, and the what-if pairs. Plain Python (no torch, no harness): the device run and the tabulation both read it.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

CORPUS_DIR = Path(__file__).resolve().parent.parent / "traces" / "recorded" / "corpus"
CATALOGUE = CORPUS_DIR / "corpus.toml"
MODES = ("sync", "nosync", "cudaonly")
MODE_TEXT = {
    "sync": "CPU+CUDA activities with CUDA sync events",
    "nosync": "CPU+CUDA activities",
    "cudaonly": "CUDA activities only",
}


class CatalogueError(ValueError):
    """A catalogue that cannot be used; the message names the file and the entry."""


@dataclass(frozen=True)
class ProgramEntry:
    id: str
    file: str  # in programs/
    options: dict
    steps: int
    job: str


@dataclass(frozen=True)
class JobEntry:
    id: str
    modes: tuple[str, ...]
    rounds: int
    records: str  # the job whose programs this process times and records (itself unless given)
    extra: bool  # run only while the time budget allows


@dataclass(frozen=True)
class PairEntry:
    id: str
    base: str
    changed: str
    spec: str  # relative to the catalogue's folder
    change: str
    expect: str


@dataclass(frozen=True)
class Catalogue:
    path: Path
    programs: dict[str, ProgramEntry]
    jobs: dict[str, JobEntry]
    pairs: dict[str, PairEntry]

    def programs_of(self, job: JobEntry) -> list[ProgramEntry]:
        return [p for p in self.programs.values() if p.job == job.records]

    def program_file(self, program: ProgramEntry) -> Path:
        return self.path.parent / "programs" / program.file

    def pairs_of(self, program_id: str) -> list[str]:
        return [p.id for p in self.pairs.values() if program_id in (p.base, p.changed)]


def recording_name(program_id: str, mode: str) -> str:
    return f"{program_id}-{mode}.json.gz"


def _need(path: Path, where: str, entry: dict, key: str, kind: type):
    if key not in entry:
        raise CatalogueError(f"{path}: {where}: missing key {key!r}")
    value = entry[key]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise CatalogueError(f"{path}: {where}: {key!r} must be a {kind.__name__}, got {value!r}")
    return value


def load_catalogue(path: Path = CATALOGUE) -> Catalogue:
    try:
        raw = tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise CatalogueError(f"{path}: cannot read the catalogue: {err}") from None
    jobs: dict[str, JobEntry] = {}
    for i, entry in enumerate(raw.get("job", [])):
        where = f"job[{i}]"
        job_id = _need(path, where, entry, "id", str)
        modes = tuple(_need(path, where, entry, "modes", list))
        if not modes or any(m not in MODES for m in modes):
            raise CatalogueError(f"{path}: {where} ({job_id}): modes must be some of {', '.join(MODES)}, got {modes}")
        rounds = _need(path, where, entry, "rounds", int)
        if rounds < 1:
            raise CatalogueError(f"{path}: {where} ({job_id}): rounds must be >= 1")
        jobs[job_id] = JobEntry(job_id, modes, rounds, entry.get("records", job_id), bool(entry.get("extra", False)))
    programs: dict[str, ProgramEntry] = {}
    for i, entry in enumerate(raw.get("program", [])):
        where = f"program[{i}]"
        pid = _need(path, where, entry, "id", str)
        if pid in programs:
            raise CatalogueError(f"{path}: {where}: program id {pid!r} used twice")
        job = _need(path, where, entry, "job", str)
        if job not in jobs:
            raise CatalogueError(f"{path}: {where} ({pid}): unknown job {job!r}")
        file = _need(path, where, entry, "file", str)
        if not (Path(path).parent / "programs" / file).is_file():
            raise CatalogueError(f"{path}: {where} ({pid}): no program file programs/{file}")
        steps = _need(path, where, entry, "steps", int)
        programs[pid] = ProgramEntry(pid, file, dict(entry.get("options", {})), steps, job)
    for job in jobs.values():
        if job.records not in jobs:
            raise CatalogueError(f"{path}: job {job.id}: 'records' names unknown job {job.records!r}")
    pairs: dict[str, PairEntry] = {}
    for i, entry in enumerate(raw.get("pair", [])):
        where = f"pair[{i}]"
        values = {k: _need(path, where, entry, k, str) for k in ("id", "base", "changed", "spec", "change", "expect")}
        for side in ("base", "changed"):
            if values[side] not in programs:
                raise CatalogueError(f"{path}: {where} ({values['id']}): unknown {side} program {values[side]!r}")
        if values["expect"] not in ("pays", "does_not_pay"):
            raise CatalogueError(f"{path}: {where} ({values['id']}): expect must be 'pays' or 'does_not_pay'")
        pairs[values["id"]] = PairEntry(**values)
    return Catalogue(Path(path), programs, jobs, pairs)
