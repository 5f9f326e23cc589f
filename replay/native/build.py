"""Build the executor's shared libraries from ``src/``, cached by source hash (no torch needed).

Two targets:

* ``fake``: ``src/fake_api.cpp`` with g++ (or ``$CXX``): the executor against the
  fake device, built on any machine with a C++17 compiler (CI's checks);
* ``cuda``: ``src/cuda_api.cu`` with nvcc (``$CUDA_HOME/bin`` or PATH), for the
  GPU the build runs on (``-arch=native``; ``HARNESS_NATIVE_CUDA_ARCH=sm_90`` to
  name one, e.g. to build where no GPU is).

Each build goes through ninja when it is on PATH (a plain compiler call
otherwise) into ``<cache>/<target>-<hash>/``, where the hash covers the sources,
the compiler command and the flags: a library is built once per source change,
and a half-built one is never picked up (built in a temporary folder, then
renamed). The cache is ``$HARNESS_NATIVE_CACHE``, else
``$XDG_CACHE_HOME/gpu-policy-harness/native`` (``~/.cache/...``).

A machine without the compiler gets :class:`NativeUnavailable`, one line saying
what is missing; the interpreted replay does not need any of this.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

SRC = Path(__file__).resolve().parent / "src"
HEADERS = (
    "executor.hpp", "fake_device.hpp", "host_thread.hpp", "stand_in_work.cuh", "times.hpp", "worker_pool.hpp"
)
TARGETS = {"fake": "fake_api.cpp", "cuda": "cuda_api.cu"}


class NativeUnavailable(RuntimeError):
    """The native executor cannot be built or loaded here (no compiler, no GPU); the interpreted replay still runs."""


def cache_dir() -> Path:
    explicit = os.environ.get("HARNESS_NATIVE_CACHE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "gpu-policy-harness" / "native"


def _nvcc() -> str | None:
    cuda_home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    if cuda_home and (Path(cuda_home) / "bin" / "nvcc").is_file():
        return str(Path(cuda_home) / "bin" / "nvcc")
    return shutil.which("nvcc") or ("/usr/local/cuda/bin/nvcc" if Path("/usr/local/cuda/bin/nvcc").is_file() else None)


def compile_command(target: str) -> list[str]:
    """The compiler and flags of ``target`` (without sources and output); NativeUnavailable without a compiler."""
    if target == "fake":
        cxx = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
        if cxx is None:
            raise NativeUnavailable("replay.native: no C++ compiler (g++, c++ or $CXX) on PATH to build the executor")
        return [cxx, "-O2", "-std=c++17", "-shared", "-fPIC", "-pthread", "-Wall"]
    if target == "cuda":
        nvcc = _nvcc()
        if nvcc is None:
            raise NativeUnavailable("replay.native: no nvcc (PATH, $CUDA_HOME/bin) to build the CUDA executor")
        arch = os.environ.get("HARNESS_NATIVE_CUDA_ARCH", "native")
        return [nvcc, "-O3", "-std=c++17", "-shared", "-Xcompiler", "-fPIC,-pthread", f"-arch={arch}"]
    raise ValueError(f"unknown native target {target!r}; known: {sorted(TARGETS)}")


def source_hash(target: str, command: list[str]) -> str:
    digest = hashlib.sha256(" ".join(command).encode())
    for name in (TARGETS[target], *HEADERS):
        digest.update(name.encode() + b"\0" + (SRC / name).read_bytes())
    return digest.hexdigest()[:16]


def library_path(target: str) -> Path:
    """Where ``target``'s library is (or would be) cached for the current sources."""
    command = compile_command(target)
    return cache_dir() / f"{target}-{source_hash(target, command)}" / f"libnx_{target}.so"


def build(target: str, verbose: bool = False) -> Path:
    """The path of ``target``'s library, built first unless the cache has it."""
    command = compile_command(target)
    out = cache_dir() / f"{target}-{source_hash(target, command)}" / f"libnx_{target}.so"
    if out.is_file():
        return out
    out.parent.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{target}-", dir=out.parent.parent))
    try:
        source = SRC / TARGETS[target]
        lib = work / out.name
        ninja = shutil.which("ninja")
        if ninja:
            (work / "build.ninja").write_text(_ninja_file(command, source, lib))
            args = [ninja, "-C", str(work)]
        else:
            args = [*command, "-I", str(SRC), "-o", str(lib), str(source)]
        done = subprocess.run(args, capture_output=True, text=True)
        if done.returncode != 0:
            tail = (done.stdout + done.stderr).strip().splitlines()[-15:]
            raise NativeUnavailable(f"replay.native: building {target} failed:\n" + "\n".join(tail))
        if verbose:
            print((done.stdout + done.stderr).strip())
        final = out.parent
        try:
            work.rename(final)
        except OSError:  # another process built it meanwhile
            if not out.is_file():
                raise
        return out
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)


def _ninja_file(command: list[str], source: Path, lib: Path) -> str:
    def q(s: str) -> str:
        return s.replace("$", "$$").replace(" ", "$ ").replace(":", "$:")

    cmd = " ".join(q(c) for c in command)
    headers = " ".join(q(str(SRC / h)) for h in HEADERS)
    return (
        f"rule cc\n  command = {cmd} -I {q(str(SRC))} -o $out $in\n  description = nx $out\n\n"
        f"build {q(str(lib))}: cc {q(str(source))} | {headers}\n"
    )
