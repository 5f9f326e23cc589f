"""Hardware profiles: the measured figures the simulator runs on.

A profile is a TOML file under ``traces/profiles/<name>.toml`` (format version 1,
documented in ``traces/README.md``). It holds *measurements*, not model
parameters: each host-link table lists ``[size_bytes, time_us]`` samples of one
copy, plus a fixed ``latency_us``. The copy model derived from them is

    time_us(N) = latency_us + N / bandwidth(N)

where each sample fixes the bandwidth at its size, ``bw_k = size_k /
(time_k - latency_us)``; between samples the transfer time ``N / bandwidth(N)``
is interpolated linearly in log-log space (so bandwidth follows a power law per
size bucket and time always grows with size), and beyond the first and last
sample the bandwidth is held at that sample's. The model reproduces every
sample exactly.

**GPU defaults.** ``traces/profiles/gpu-defaults.toml`` names, for each GPU the
project has measured, the profile the simulator uses for it by default: a spec
that says ``profile = "h100"`` gets the profile ``harness calibrate`` measured on
the H100, while a spec that names a profile file gets exactly that file.
"""

from __future__ import annotations

import bisect
import math
import statistics
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pydantic

from harness.collective_profile import CollectiveCurve, TopologyFigures, check_curves_unique
from harness.errors import InputError, from_validation_error
from harness.paths import GPU_DEFAULTS_FILE, PROFILES_DIR
from harness.runtime import Direction, HostMemory

PROFILE_FORMAT_VERSION = 1

QUOTED_PROFILE = "h100-sxm-pcie5"
"""The H100 profile built from quoted figures: what benchmarks, tools and generated traces use when
they need a fixed profile, so that their figures do not move when a GPU's default is recalibrated."""


class _Strict(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Provenance(_Strict):
    source: str
    gpu: str
    date: str
    driver: str = ""
    torch: str = ""
    method: str = ""
    notes: str = ""


class DeviceFigures(_Strict):
    gpu_name: str
    memory_bytes: int = pydantic.Field(gt=0)
    d2d_latency_us: float = pydantic.Field(ge=0)
    d2d_gbps: float = pydantic.Field(gt=0)
    # GPU time between two kernels of one CUDA graph (the device's own launch of the next node).
    # Optional: a profile without it runs a graph's kernels back to back.
    graph_kernel_gap_us: float = pydantic.Field(default=0.0, ge=0)
    # GPU time from a host-link copy's end to the start of a kernel queued behind it on the same stream
    # (the device hands the stream from its copy engine back to compute), and from an awaited event's
    # completion to the start of a kernel queued behind that wait (another stream's work released it).
    # Measured by ``harness calibrate`` as the kernel's end after the copy's (or event's) against its end
    # after a kernel. Optional: a profile without them starts such a kernel the instant it is released.
    kernel_after_copy_us: float = pydantic.Field(default=0.0, ge=0)
    kernel_after_event_us: float = pydantic.Field(default=0.0, ge=0)
    # What recordings of CUDA graphs on this device show around a graph's kernels (the recorded workload's
    # timing of the graphs a what-if adds, where the recording has none of its own): the first kernel's start
    # after its ``cudaGraphLaunch`` returned onto an idle stream (the launch's latency), and the gap from the end
    # of one graph's last kernel to the next graph's first when they are queued back to back. Optional.
    graph_lead_in_us: float | None = pydantic.Field(default=None, ge=0)
    graph_queued_gap_us: float | None = pydantic.Field(default=None, ge=0)


class HostCosts(_Strict):
    """Host-thread time each runtime call costs, µs (one kind of host: see ``HOST_COST_KINDS``)."""

    launch_us: float = pydantic.Field(ge=0)
    copy_launch_us: float = pydantic.Field(ge=0)
    record_us: float = pydantic.Field(ge=0)
    wait_us: float = pydantic.Field(ge=0)
    sync_wake_us: float = pydantic.Field(ge=0)
    # A thread blocked on another host thread (a queue get or put, a join) resumes this long after
    # the item, the space or the thread's end is there. Optional: profiles older than the field
    # model the hand-off as free.
    thread_wake_us: float = pydantic.Field(default=0.0, ge=0)
    alloc_us: float = pydantic.Field(ge=0)
    free_us: float = pydantic.Field(ge=0)
    # One CUDA-graph launch (``launch_graph``), whatever the graph holds. Optional: a profile without
    # it charges a graph launch what one kernel launch costs.
    graph_launch_us: float | None = pydantic.Field(default=None, ge=0)
    # Handing work to a side stream and back, beyond the runtime calls it makes (two event records, two
    # waits): the Python an eager program runs for it (``torch.cuda.Event()`` twice, entering and leaving
    # ``torch.cuda.stream(side)``). Optional ([host_costs.pytorch_eager], ``harness calibrate --profiler``):
    # what async_d2h charges each batch it hands over; a profile without it: the recorded workload's fallback.
    stream_handoff_us: float | None = pydantic.Field(default=None, ge=0)

    @property
    def graph_launch_cost_us(self) -> float:
        return self.launch_us if self.graph_launch_us is None else self.graph_launch_us


HOST_COST_KINDS = ("replay_engine", "pytorch_eager")
"""The two kinds of host a profile's host costs describe. ``replay_engine``: what the replay engine's own
commands cost (``[host]``, or ``[host_costs.replay_engine]``; what the simulator charges a policy's commands
by default). ``pytorch_eager``: what a plain eager PyTorch program pays per call (``[host_costs.pytorch_eager]``,
optional, measured by ``harness calibrate --profiler``): what a recorded program's added calls cost."""

PROFILER_MODES = ("cpu_cuda", "cpu_cuda_sync", "cuda", "cuda_sync")
"""torch.profiler recording modes: activities CPU+CUDA (the default), the same with CUDA sync events
(``_ExperimentalConfig(enable_cuda_sync_events=True)``), CUDA only, CUDA only with sync events."""

PROFILER_EVENT_KINDS = ("aten_op", "runtime_call", "range", "graph_launch", "graph_kernel")
"""Profiler events whose host overhead a calibration measures: an aten op (``cpu_op``), a CUDA runtime call,
a ``record_function`` range (``user_annotation``, ``ProfilerStep#N`` included), a CUDA-graph launch, and each
kernel inside a launched graph."""

PROFILER_CALL_KINDS = ("gemm_launch",)
"""Profiler overheads of a kind of call over a plain runtime call, fitted from a shape's residual rather than
counted in the trace: ``gemm_launch``, the extra cost of a GEMM's launch (cuBLAS's ``cuLaunchKernelEx``) over the
``runtime_call`` figure, from the calibration's ``composite`` shape (estimator ``isolated_share_gemm``); optional."""

PROFILER_IDIOM_KINDS = ("stream_handoff",)
"""Profiler overheads of an idiom, timed whole under the profiler and without it (not fitted per event):
``stream_handoff``, handing work to a side stream and back (``HostCosts.stream_handoff_us``)."""


class Spread(_Strict):
    """A calibrated figure: the median over rounds and its spread (half the interquartile range), µs."""

    median_us: float
    spread_us: float = pydantic.Field(ge=0)


SCALED_EVENT_KINDS = ("aten_op", "runtime_call", "range", "gemm_launch")
"""The event kinds whose overhead ``program_scale`` multiplies (an eager program's; a graph's kernels are not)."""


class ProgramScale(_Strict):
    """``[profiler.<mode>.program_scale]``: what the profiler adds to a program shaped like a real one, over what
    the tight-loop overheads predict from its events (median over rounds, half-IQR spread); ``source`` says which
    program (the calibration's ``block`` shape, or the user's ``--script``)."""

    median: float = pydantic.Field(gt=0)
    spread: float = pydantic.Field(ge=0)
    source: str = ""


class ProfilerCalibration(_Strict):
    """``[profiler.<mode>]``: what torch.profiler in one mode adds to a recording (``harness calibrate --profiler``).

    ``overhead``: host time each recorded event of a kind adds (per event, median over rounds of a
    least-squares fit); ``floor_us``: the unprofiled host time below which a call of a kind is never
    compensated (an eager op launching one kernel, a graph replay), per ``call_*`` kind;
    ``program_scale`` (optional): the factor a real program's aten-op, runtime-call and range
    overheads take over the fitted ones (:meth:`compensation_us` applies it).
    """

    torch: str
    date: str
    rounds: int = pydantic.Field(ge=1)
    overhead: dict[str, Spread]
    floor_us: dict[str, float]
    method: str = ""
    notes: str = ""
    program_scale: ProgramScale | None = None
    # GPU time the profiler adds to a CUDA graph's replay, per replay ("graph_launch") and per kernel in it
    # ("graph_kernel"): CUDA-event timings of the calibration's graph shapes, profiled vs unprofiled
    gpu_overhead: dict[str, Spread] = pydantic.Field(default_factory=dict)
    # how gpu_overhead's replays were timed: "queued" (behind held GPU work: the replay's GPU time alone), "idle"
    # (the GPU idle at the launch: the interval holds the profiled cudaGraphLaunch's host time too, 0.7-1 µs a
    # kernel under CUPTI), "" (unknown: calibrations before 2026-12-07 evening, which timed them idle)
    gpu_timing: Literal["", "idle", "queued"] = ""

    @pydantic.field_validator("overhead")
    @classmethod
    def _known_kinds(cls, overhead: dict[str, Spread]) -> dict[str, Spread]:
        known = PROFILER_EVENT_KINDS + PROFILER_CALL_KINDS + PROFILER_IDIOM_KINDS
        unknown = sorted(set(overhead) - set(known))
        if unknown:
            raise ValueError(f"unknown profiler event kind(s) {unknown}; expected {list(known)}")
        return overhead

    @pydantic.field_validator("floor_us")
    @classmethod
    def _floors(cls, floors: dict[str, float]) -> dict[str, float]:
        for kind, us in floors.items():
            if not kind.startswith("call_") or not us >= 0:
                raise ValueError(f"floor_us: {kind!r} = {us}: keys are call kinds (call_launch, ...), values >= 0")
        return floors

    def overhead_us(self, kind: str) -> float:
        """Median overhead of one event of ``kind`` (0 when not calibrated), never negative."""
        figure = self.overhead.get(kind)
        return max(figure.median_us, 0.0) if figure else 0.0

    def compensation_us(self, kind: str) -> float:
        """What compensation takes out per event of ``kind``: the fitted overhead, times ``program_scale`` for an
        eager program's kinds (:data:`SCALED_EVENT_KINDS`) when the calibration has one."""
        scale = self.program_scale.median if self.program_scale and kind in SCALED_EVENT_KINDS else 1.0
        return self.overhead_us(kind) * scale


class LinkTable(_Strict):
    """One direction and host-memory kind of the host link."""

    latency_us: float = pydantic.Field(ge=0)
    samples: list[tuple[int, float]] = pydantic.Field(min_length=1)
    # Optional: each sample's spread over the calibration's rounds (half the interquartile range, µs),
    # [size, spread] for sizes among the samples'. The simulator does not read it; the fidelity report does.
    spread_us: list[tuple[int, float]] = pydantic.Field(default_factory=list)
    # Optional: the same copies issued on an idle stream (events from before the host's call to the end),
    # [size, µs] median; the simulator does not read it (replay.copy_calibration.idle_adjusted can).
    idle_us: list[tuple[int, float]] = pydantic.Field(default_factory=list)

    @pydantic.field_validator("samples")
    @classmethod
    def _sorted_and_slower_than_latency(cls, samples: list[tuple[int, float]]) -> list[tuple[int, float]]:
        sizes = [s for s, _ in samples]
        if sizes != sorted(set(sizes)) or sizes[0] <= 0:
            raise ValueError("sample sizes must be positive and strictly increasing")
        return samples

    @pydantic.model_validator(mode="after")
    def _times_exceed_latency(self) -> LinkTable:
        for size, time_us in self.samples:
            if not time_us > self.latency_us:
                raise ValueError(f"sample [{size}, {time_us}] is not slower than latency_us={self.latency_us}")
        sizes = {s for s, _ in self.samples}
        for size, spread in self.spread_us:
            if size not in sizes or not spread >= 0:
                raise ValueError(f"spread_us [{size}, {spread}]: needs a sample of that size and a spread >= 0")
        for size, idle in self.idle_us:
            if size not in sizes or not idle > 0:
                raise ValueError(f"idle_us [{size}, {idle}]: needs a sample of that size and a time > 0")
        return self


class LinkProbeFigures(_Strict):
    """One drift probe of ``[link.drift]``: the reference copy's median and spread at one moment."""

    label: str
    elapsed_s: float = pydantic.Field(ge=0)  # since the calibration began
    median_us: float = pydantic.Field(gt=0)
    spread_us: float = pydantic.Field(ge=0)  # half the interquartile range of the probe's copies


class LinkDrift(_Strict):
    """Optional ``[link.drift]``: one reference copy timed at the start, middle and end of the calibration.

    ``spread_frac`` is (slowest - fastest probe median) / the median of the probe medians: how much
    the link itself moved while it was being measured. The simulator does not read it.
    """

    direction: Direction
    host_memory: HostMemory
    nbytes: int = pydantic.Field(gt=0)
    spread_frac: float = pydantic.Field(ge=0)
    probes: list[LinkProbeFigures] = pydantic.Field(min_length=1)

    @pydantic.model_validator(mode="after")
    def _spread_of_the_probes(self) -> LinkDrift:
        medians = [p.median_us for p in self.probes]
        spread = (max(medians) - min(medians)) / self.reference_us
        if abs(spread - self.spread_frac) > 1e-3:
            raise ValueError(f"spread_frac = {self.spread_frac}, but the probes spread {spread:.4f}")
        return self

    @property
    def reference_us(self) -> float:
        """The reference copy's time over the calibration: the median of the probe medians."""
        return statistics.median(p.median_us for p in self.probes)


class LinkDirection(_Strict):
    pinned: LinkTable
    pageable: LinkTable


class LinkFigures(_Strict):
    duplex_bandwidth_factor: float = pydantic.Field(gt=0, le=1)
    h2d: LinkDirection
    d2h: LinkDirection
    drift: LinkDrift | None = None  # optional (calibrations since the copies are timed as runs issue them)


class KernelCalibration(_Strict):
    """Optional ``[kernels]``: how long the replay's stand-in GPU work takes (``harness calibrate``).

    The simulator does not read it; it records what the replay engine sizes
    kernels from (see ``replay.sized``), so a profile says what its GPU did.
    """

    matmul_k: int = pydantic.Field(gt=0)
    matmul_n: int = pydantic.Field(gt=0)
    matmul_samples: list[tuple[int, float]] = pydantic.Field(min_length=2)  # [rows, µs] of a bf16 rows x K x N product
    d2d_samples: list[tuple[int, float]] = pydantic.Field(min_length=2)  # [bytes, µs] of one device-to-device copy
    sleep_base_us: float = pydantic.Field(ge=0)  # torch.cuda._sleep(c): sleep_base_us + c / sleep_cycles_per_us
    sleep_cycles_per_us: float = pydantic.Field(gt=0)
    min_kernel_us: float = pydantic.Field(ge=0)  # shortest kernel the GPU runs back to back
    stand_in: str = "sized"  # what the replay ran for kernels: "sized" (the tables above) or "timed" (replay.timed)
    timed_overhead_us: dict[str, float] | None = None  # timed stand-ins: measured minus requested duration, per kind
    timed_min_kernel_us: float | None = None


class HardwareProfile(_Strict):
    format_version: int
    name: str
    description: str = ""
    provenance: Provenance
    device: DeviceFigures
    host: HostCosts  # the replay engine's (TOML: [host], or [host_costs.replay_engine])
    link: LinkFigures
    kernels: KernelCalibration | None = None  # optional (added with `harness calibrate`); format version unchanged
    # Optional, format version unchanged ([host_costs.pytorch_eager] and [profiler.<mode>] in TOML):
    pytorch_eager_host: HostCosts | None = None
    profiler: dict[str, ProfilerCalibration] = pydantic.Field(default_factory=dict)
    # Optional, format version unchanged: many GPUs (harness.collective_profile, sim.collectives)
    topology: TopologyFigures = pydantic.Field(default_factory=TopologyFigures)
    collectives: list[CollectiveCurve] = pydantic.Field(default_factory=list)

    _unique_curves = pydantic.field_validator("collectives")(check_curves_unique)

    @pydantic.model_validator(mode="before")
    @classmethod
    def _host_cost_kinds(cls, raw: object) -> object:
        """``[host_costs.<kind>]`` tables into their fields; ``[host]`` is the replay engine's (older profiles)."""
        if not isinstance(raw, dict) or "host_costs" not in raw:
            return raw
        raw = dict(raw)
        kinds = raw.pop("host_costs")
        if not isinstance(kinds, dict) or set(kinds) - set(HOST_COST_KINDS):
            extra = sorted(set(kinds) - set(HOST_COST_KINDS)) if isinstance(kinds, dict) else kinds
            raise ValueError(f"host_costs: unknown kind(s) {extra}; expected {list(HOST_COST_KINDS)}")
        if "replay_engine" in kinds:
            if "host" in raw:
                raise ValueError("give the replay engine's host costs once: [host] or [host_costs.replay_engine]")
            raw["host"] = kinds["replay_engine"]
        if "pytorch_eager" in kinds:
            raw["pytorch_eager_host"] = kinds["pytorch_eager"]
        return raw

    @pydantic.field_validator("profiler")
    @classmethod
    def _known_modes(cls, profiler: dict[str, ProfilerCalibration]) -> dict[str, ProfilerCalibration]:
        unknown = sorted(set(profiler) - set(PROFILER_MODES))
        if unknown:
            raise ValueError(f"unknown profiler mode(s) {unknown}; expected {list(PROFILER_MODES)}")
        return profiler

    @pydantic.field_validator("format_version")
    @classmethod
    def _known_version(cls, v: int) -> int:
        if v != PROFILE_FORMAT_VERSION:
            raise ValueError(f"unsupported profile format_version {v} (this harness reads {PROFILE_FORMAT_VERSION})")
        return v


@dataclass(frozen=True, slots=True)
class CopyCurve:
    """Copy time as a function of size for one direction and memory kind."""

    latency_us: float
    log_sizes: tuple[float, ...]
    log_transfer_us: tuple[float, ...]  # log(time - latency) at each sample

    @classmethod
    def from_table(cls, table: LinkTable) -> CopyCurve:
        log_sizes = tuple(math.log(s) for s, _ in table.samples)
        log_transfer = tuple(math.log(t - table.latency_us) for _, t in table.samples)
        return cls(table.latency_us, log_sizes, log_transfer)

    def transfer_us(self, nbytes: int) -> float:
        """Time the bytes spend on the link, after the fixed latency.

        Interpolated linearly in log-log space between samples (a power law per
        interval, so time grows with size whenever the samples do); beyond the
        first and last sample the bandwidth is held at that sample's.
        """
        if nbytes <= 0:
            return 0.0
        x = math.log(nbytes)
        xs, ys = self.log_sizes, self.log_transfer_us
        if x <= xs[0]:
            return math.exp(ys[0] + x - xs[0])
        if x >= xs[-1]:
            return math.exp(ys[-1] + x - xs[-1])
        k = bisect.bisect_right(xs, x)
        frac = (x - xs[k - 1]) / (xs[k] - xs[k - 1])
        return math.exp(ys[k - 1] + frac * (ys[k] - ys[k - 1]))

    def bandwidth_bytes_per_us(self, nbytes: int) -> float:
        """Effective link bandwidth of one copy of ``nbytes`` (excluding latency)."""
        if nbytes <= 0:
            return math.exp(self.log_sizes[0] - self.log_transfer_us[0])
        return nbytes / self.transfer_us(nbytes)

    def time_us(self, nbytes: int) -> float:
        """Solo time of one copy of ``nbytes``: latency plus transfer."""
        return self.latency_us + self.transfer_us(nbytes)


class Profile:
    """A loaded profile with its copy curves ready for the hot path."""

    def __init__(self, figures: HardwareProfile, path: Path | None = None) -> None:
        self.figures = figures
        self.path = path
        self.name = figures.name
        self.host = figures.host
        self.device = figures.device
        self.duplex_bandwidth_factor = figures.link.duplex_bandwidth_factor
        self._curves = {
            (Direction.H2D, HostMemory.PINNED): CopyCurve.from_table(figures.link.h2d.pinned),
            (Direction.H2D, HostMemory.PAGEABLE): CopyCurve.from_table(figures.link.h2d.pageable),
            (Direction.D2H, HostMemory.PINNED): CopyCurve.from_table(figures.link.d2h.pinned),
            (Direction.D2H, HostMemory.PAGEABLE): CopyCurve.from_table(figures.link.d2h.pageable),
        }

    @property
    def pytorch_eager_measured(self) -> bool:
        """Whether the profile carries a PyTorch program's own host costs (``[host_costs.pytorch_eager]``)."""
        return self.figures.pytorch_eager_host is not None

    def program_call_cost_us(self, kind: str) -> float:
        """Host time a plain eager PyTorch program pays for one call of ``kind``, µs.

        ``kind`` is a :class:`HostCosts` figure without ``_us`` (``launch``, ``graph_launch``,
        ``copy_launch``, ``record``, ``wait``, ``sync_wake``, ``alloc``, ``free``) or a trace's call kind
        (``call_launch``, ``call_graph_launch``, ``call_memcpy``, ``call_record``, ``call_wait``, ...).
        It is what a what-if that adds calls to a recorded program charges them: the figures of
        ``[host_costs.pytorch_eager]``, or, in a profile without them, the replay engine's (``[host]``;
        check :attr:`pytorch_eager_measured`: those are 2-5x an eager program's).
        """
        field = _PROGRAM_CALL_FIGURES.get(kind, kind)
        costs = self.figures.pytorch_eager_host or self.host
        if field == "graph_launch":
            return costs.graph_launch_cost_us
        value = getattr(costs, f"{field}_us", None) if field in _HOST_FIGURES else None
        if value is None:
            raise KeyError(f"no host cost for call kind {kind!r}; expected one of {sorted(_PROGRAM_CALL_FIGURES)}")
        return float(value)

    def profiler_calibration(self, mode: str) -> ProfilerCalibration | None:
        """The ``[profiler.<mode>]`` calibration (None when this profile has none for ``mode``)."""
        return self.figures.profiler.get(mode)

    def curve(self, direction: Direction, host_memory: HostMemory) -> CopyCurve:
        return self._curves[(direction, host_memory)]

    def copy_time_us(self, nbytes: int, direction: Direction, host_memory: HostMemory) -> float:
        """Solo time of one copy: host link for H2D/D2H, device memory for D2D."""
        if direction is Direction.D2D:
            return self.d2d_time_us(nbytes)
        return self._curves[(direction, host_memory)].time_us(nbytes)

    def d2d_time_us(self, nbytes: int) -> float:
        # d2d_gbps counts bytes copied (each read once and written once).
        return self.device.d2d_latency_us + nbytes / (self.device.d2d_gbps * 1e3)


_HOST_FIGURES = ("launch", "graph_launch", "copy_launch", "record", "wait", "sync_wake", "thread_wake", "alloc", "free")
_PROGRAM_CALL_FIGURES = {
    **{f: f for f in _HOST_FIGURES},
    "call_launch": "launch",
    "call_memset": "launch",
    "call_graph_launch": "graph_launch",
    "call_memcpy": "copy_launch",
    "call_record": "record",
    "call_wait": "wait",
    "call_sync_stream": "sync_wake",
    "call_sync_device": "sync_wake",
    "call_sync_event": "sync_wake",
    "call_malloc": "alloc",
    "call_free": "free",
}


class GpuDefault(_Strict):
    gpu_name: str  # the name the driver reports, as in a profile's [device] gpu_name
    profile: str  # the bundled profile the simulator uses for that GPU


class GpuDefaults(_Strict):
    format_version: int = PROFILE_FORMAT_VERSION
    gpus: dict[str, GpuDefault]  # alias (what a spec may name) -> default


def available_profiles() -> list[str]:
    return sorted(p.stem for p in PROFILES_DIR.glob("*.toml") if p != GPU_DEFAULTS_FILE)


def gpu_defaults() -> dict[str, GpuDefault]:
    """The GPU aliases of ``traces/profiles/gpu-defaults.toml`` (alias -> default profile)."""
    try:
        raw = tomllib.loads(GPU_DEFAULTS_FILE.read_text())
    except FileNotFoundError:
        return {}
    except tomllib.TOMLDecodeError as err:
        raise InputError(GPU_DEFAULTS_FILE, "", f"malformed TOML: {err}") from None
    try:
        return GpuDefaults.model_validate(raw).gpus
    except pydantic.ValidationError as err:
        raise from_validation_error(GPU_DEFAULTS_FILE, err) from None


def load_profile(name_or_path: str | Path) -> Profile:
    """Load a profile by GPU alias (``h100``), bundled name (``h100-sxm-pcie5``) or file path."""
    candidate = Path(name_or_path)
    if candidate.suffix == ".toml" or candidate.exists():
        path = candidate
    else:
        aliases = gpu_defaults()
        default = aliases.get(str(name_or_path))
        path = PROFILES_DIR / f"{default.profile if default else name_or_path}.toml"
        if not path.exists():
            where = f"GPU alias {name_or_path!r} in {GPU_DEFAULTS_FILE.name}: " if default else ""
            raise InputError(
                str(name_or_path),
                "",
                f"{where}unknown hardware profile; bundled profiles: {', '.join(available_profiles())}"
                f"; GPU aliases: {', '.join(sorted(aliases)) or 'none'}",
            )
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(path, "", "profile file not found") from None
    except tomllib.TOMLDecodeError as err:
        raise InputError(path, "", f"malformed TOML: {err}") from None
    try:
        figures = HardwareProfile.model_validate(raw)
    except pydantic.ValidationError as err:
        raise from_validation_error(path, err) from None
    return Profile(figures, path)
