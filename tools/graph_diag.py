"""Where the native replay of a CUDA-graph recording loses time against its simulation (needs a CUDA GPU).

One bounded command (``--budget-s``), everything under ``--out``; each stage is guarded (a stage that fails is
logged and the next runs), so a partial folder still says something:

1. ``spans``: ``recorded_decode_graph`` (sync) and ``_nosync`` simulated and replayed natively
   (``HARNESS_REPLAY_NATIVE=on``), ``--reps`` repetitions; every run's op rows in ``ops/<spec>-<backend>.parquet``
   (the recording's own rows are ``traces/recorded/decode_graph*.parquet``) and the spans in ``spans.csv``.
2. ``program_graphs``: each stand-in graph the native runner captured for those programs, timed back to back
   and launched alone, against the target it was tuned to (``program_graphs.csv``); the runner's calibration
   (stream floor, in-graph floor, per-kind overheads) in ``calibration.json``.
3. ``traced``: the same graphs (as tuned) and 96-kernel probe graphs of 1/3/5/10 µs, captured with each kernel
   stamping its own GPU start and end (``nx_trace_graph``), launched alone 10 times (program graphs after 20 and
   200 µs of idle stream, probes after 20): every kernel's start and end
   from the launch's return (``traced_graphs.csv.gz``; medians in ``traced_summary.csv``: lead-in, kernel
   time, gap, last end, stream idle as the host saw it).
4. ``stamped_replay``: every program the runner converted, run natively again (3 times) with each graph launch a
   graph of its own whose kernels stamp themselves: each step's host and event times and each graph kernel's GPU
   start and end in the replay itself (``stamped_steps.parquet``, ``stamped_kernels.parquet``; µs from the
   program's start).
5. ``probe``: untuned stand-in graphs of N one-warp timer kernels of d µs (N in 1/8/96, d in 0..20 µs): the
   launch's GPU time back to back and alone (launch return to stream idle), per kernel; and the same timer as a
   plain stream launch back to back (``probe.csv``).
6. ``copy``: the recording's 8 MiB device-to-pinned copy timed on this GPU (alone, and queued behind a busy
   kernel) against its recorded 152.6 µs (``copy.csv``).
7. ``profiled``: a native replay of ``recorded_decode_graph`` (as_recorded, one repetition) and the probe graphs
   launched alone, under ``torch.profiler`` (CUPTI: every graph kernel's GPU start and end, as the recording
   was made), exported to ``profiled_replay.json.gz`` / ``profiled_probe.json.gz`` for ``harness trace import``.

Then ``tools/graph_diag_report.py OUT`` (CPU) tabulates it step by step against the recording and the simulation.

Usage: ``python tools/graph_diag.py --out DIR [--budget-s 150] [--reps 3]``
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import json
import os
import shutil
import statistics
import sys
import time
import traceback
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness.paths import SPECS_DIR  # noqa: E402
from harness.runner import run_spec  # noqa: E402
from harness.spec import load_spec  # noqa: E402
from sim import SimBackend  # noqa: E402

SPECS = ("recorded_decode_graph", "recorded_decode_graph_nosync")
PROBE_KERNELS = (1, 8, 96)
PROBE_DURATIONS_US = (0.0, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0)
COPY_BYTES = 8 * 1024 * 1024
RECORDED_COPY_US = 152.6  # decode_graph-sync's D2H copies, median (H200)
OPS_COLUMNS = ["run_id", "policy_label", "op_id", "device", "stream", "kind", "name", "bytes", "thread"]
OPS_COLUMNS += ["issue_us", "start_us", "end_us"]


class Diag:
    def __init__(self, out: Path, budget_s: float) -> None:
        self.out = out
        self.budget_s = budget_s
        self.started = time.perf_counter()
        self.log = open(out / "diag.log", "a")  # noqa: SIM115 - closed at exit

    def left_s(self) -> float:
        return self.budget_s - (time.perf_counter() - self.started)

    def say(self, text: str) -> None:
        line = f"[{time.perf_counter() - self.started:6.1f}s] {text}"
        print(line, flush=True)
        self.log.write(line + "\n")
        self.log.flush()

    def stage(self, name: str, need_s: float, fn, *args) -> object:
        if self.left_s() < need_s:
            self.say(f"{name}: skipped ({self.left_s():.0f} s left, needs ~{need_s:.0f})")
            return None
        t0 = time.perf_counter()
        self.say(f"{name}: start")
        try:
            result = fn(*args)
            self.say(f"{name}: done in {time.perf_counter() - t0:.1f} s")
            return result
        except Exception:  # noqa: BLE001 - a stage failing must not stop the others
            self.say(f"{name}: FAILED after {time.perf_counter() - t0:.1f} s\n{traceback.format_exc(limit=8)}")
            return None


def _spans(results) -> pd.DataFrame:
    m = results.metrics.merge(results.runs[["run_id", "policy_label"]])
    m = m[m["item"] == -1]
    return m.pivot_table(index="policy_label", columns="metric", values="value", aggfunc="median")


def stage_spans(d: Diag, context, reps: int) -> None:
    from replay.engine import ReplayBackend

    def replay(spec, rep):
        return ReplayBackend(context, spec.profile, spec.device_memory_bytes, seed=spec.spec.seed + rep)

    def sim(spec, rep):
        return SimBackend(spec.profile, 1, spec.device_memory_bytes, seed=rep)

    (d.out / "ops").mkdir(exist_ok=True)
    rows = []
    for stem in SPECS:
        loaded = load_spec(SPECS_DIR / f"{stem}.toml")
        for name, factory in (("sim", sim), ("native", replay)):
            os.environ["HARNESS_REPLAY_NATIVE"] = "on"
            t0 = time.perf_counter()
            n = 1 if name == "sim" else reps  # the simulation of a recording is deterministic
            results = run_spec(dataclasses.replace(loaded, spec=loaded.spec.model_copy(update={"repetitions": n})), factory)
            for error in results.failed["error"]:
                d.say(f"{stem} {name}: run failed: {error.splitlines()[0]}")
            ops = results.tables["ops"].to_pandas().merge(results.runs[["run_id", "policy_label"]])
            ops[[c for c in OPS_COLUMNS if c in ops.columns]].to_parquet(d.out / "ops" / f"{stem}-{name}.parquet")
            spans = _spans(results)
            for label in spans.index:
                rows.append(
                    {"spec": stem, "backend": name, "policy": label, **{k: spans.loc[label].get(k) for k in spans}}
                )
            d.say(f"{stem} {name}: {time.perf_counter() - t0:.1f} s")
            last = getattr(getattr(context, "native", None), "last_run", None) if name == "native" else None
            if last is not None:  # the executor's set-up: the command's issue to its first step's begin
                issued_ns, called_ns, outs = last
                first = outs[0]
                d.say(
                    f"{stem} native, last run: the executor called {(called_ns - issued_ns) / 1e3:.1f} µs after the "
                    f"command's issue; first step due {(first['target_ns'][0] - issued_ns) / 1e3:.1f} µs after the "
                    f"issue, began {(first['begin_ns'][0] - issued_ns) / 1e3:.1f} µs after it"
                )
                marks = context.native.lib.last_setup_ns()
                names = ("entered", "stream synced", "handed to the pool", "first thread started", "its device set")
                d.say("  set-up, µs after the issue: " + ", ".join(
                    f"{n} {(m - issued_ns) / 1e3:.1f}" for n, m in zip(names, marks)))  # fmt: skip
    table = pd.DataFrame(rows)
    table.to_csv(d.out / "spans.csv", index=False)
    d.say("spans (median makespan_us):\n" + table[["spec", "backend", "policy", "makespan_us"]].to_string(index=False))


def stage_program_graphs(d: Diag, context) -> None:
    runner = context.native
    cal = runner.calibration
    (d.out / "calibration.json").write_text(
        json.dumps(
            {
                "sms": cal.sms,
                "floor_us": cal.floor_us,
                "graph_floor_us": cal.in_graph_floor_us,
                "overhead_us": list(cal.overhead_us),
                "launch_api": runner.lib.launch_api,
                "placement": runner.lib.placement,
            },
            indent=1,
        )
    )
    lib = runner.lib
    rows = []
    for key, index in list(lib._graphs.items()):
        kinds, grids, timers, target_ns, alone = key
        if target_ns <= 0:
            continue  # the calibration's own floor graph
        tuned = lib.tuned_timers.get(index, list(timers))
        lib.time_graph_ns(index, reps=3)
        b2b = statistics.median(lib.time_graph_ns(index, reps=10) for _ in range(5))
        alone_ns = lib.time_graph_alone_ns(index, reps=15)
        rows.append(
            {
                "index": index,
                "kernels": len(kinds),
                "tuned_alone": alone,
                "target_us": target_ns / 1e3,
                "timers_sum_us": sum(timers) / 1e3,
                "first_timer_us": timers[0] / 1e3 if timers else 0.0,
                "last_timer_us": timers[-1] / 1e3 if timers else 0.0,
                "median_timer_us": statistics.median(timers) / 1e3 if timers else 0.0,
                "tuned_timers_sum_us": sum(tuned) / 1e3,
                "tuned_first_timer_us": tuned[0] / 1e3 if tuned else 0.0,
                "tuned_median_timer_us": statistics.median(tuned) / 1e3 if tuned else 0.0,
                "back_to_back_us": b2b / 1e3,
                "alone_us": alone_ns / 1e3,
            }
        )
    table = pd.DataFrame(rows)
    table.to_csv(d.out / "program_graphs.csv", index=False)
    d.say("program graphs:\n" + table.to_string(index=False))


def _traced_rows(trace, tag: dict, timers: list[int], tuned: list[int]) -> list[dict]:
    """Per launch and kernel of ``lib.trace_graph``'s array: times in µs from the launch call's return."""
    n = len(timers)
    rows = []
    for rep, row in enumerate(trace.tolist()):
        call, ret, idle = row[0], row[1], row[2]
        for i in range(n):
            start, end = row[3 + i], row[3 + n + i]
            rows.append(
                {
                    **tag,
                    "rep": rep,
                    "kernel": i,
                    "timer_us": timers[i] / 1e3,
                    "tuned_timer_us": tuned[i] / 1e3,
                    "call_us": (ret - call) / 1e3,
                    "idle_us": (idle - ret) / 1e3,
                    "start_us": (start - ret) / 1e3 if start >= 0 else float("nan"),
                    "end_us": (end - ret) / 1e3 if end >= 0 else float("nan"),
                }
            )
    return rows


def stage_traced(d: Diag, context) -> None:
    """Each program graph (as tuned) and a few probe graphs, their kernels stamping themselves, launched alone."""
    from replay.native.steps import Kind

    runner = context.native
    lib, cal = runner.lib, runner.calibration
    rows = []
    for key, index in list(lib._graphs.items()):
        kinds, grids, timers, target_ns, alone = key
        if target_ns <= 0:
            continue
        tuned = lib.tuned_timers.get(index, list(timers))
        for idle_us in (20, 200):  # a decode_graph step's GPU is idle ~180 µs before its graph
            trace = lib.trace_graph(list(kinds), list(grids), tuned, reps=10, idle_ns=idle_us * 1000)
            tag = {"graph": f"program{index}-idle{idle_us}", "target_us": target_ns / 1e3}
            rows += _traced_rows(trace, tag, list(timers), tuned)
    latency = int(Kind.LATENCY)
    for d_us in (1.0, 3.0, 5.0, 10.0):
        n = 96
        timer = cal.timer_ns(latency, d_us)
        trace = lib.trace_graph([latency] * n, [1] * n, [timer] * n, reps=10)
        rows += _traced_rows(trace, {"graph": f"probe{n}x{d_us:g}us", "target_us": n * d_us}, [timer] * n, [timer] * n)
    table = pd.DataFrame(rows)
    table.to_csv(d.out / "traced_graphs.csv.gz", index=False)
    t = table.assign(dur=table["end_us"] - table["start_us"])
    first = t[t["kernel"] == 0].groupby("graph")["start_us"].median().rename("lead_in_us")
    last = t.groupby(["graph", "rep"])["end_us"].max().groupby("graph").median().rename("last_end_us")
    idle = t.groupby("graph")["idle_us"].median()
    t = t.sort_values(["graph", "rep", "kernel"])
    t["gap_us"] = t["start_us"] - t.groupby(["graph", "rep"])["end_us"].shift()
    summary = pd.concat(
        [
            first,
            t.groupby("graph")["dur"].median().rename("kernel_median_us"),
            t.groupby("graph")["tuned_timer_us"].median().rename("timer_median_us"),
            t.groupby("graph")["gap_us"].median().rename("gap_median_us"),
            last,
            idle,
            t.groupby("graph")["target_us"].first(),
        ],
        axis=1,
    )
    summary["tail_to_idle_us"] = summary["idle_us"] - summary["last_end_us"]
    summary.to_csv(d.out / "traced_summary.csv")
    d.say("traced graphs (µs from the launch's return; medians):\n" + summary.to_string(float_format=lambda v: f"{v:.2f}"))


OUT_FIELDS = ("target_ns", "begin_ns", "api_ns", "ret_ns", "done_ns", "gpu_start_ns", "gpu_end_ns")


def stage_stamped_replay(d: Diag, context, reps: int = 3) -> None:
    """Each program the native runner converted, run again natively with every graph launch a graph of its own
    whose kernels stamp themselves (the same tuned stand-ins): each step's times and each graph kernel's GPU start
    and end, on the host clock, in the replay itself (``stamped_steps.parquet``, ``stamped_kernels.parquet``)."""
    import numpy as np

    from harness.program import OP_COPY
    from replay.native.steps import GraphDef, NativeProgram, Op

    runner = context.native
    lib = runner.lib
    by_index = {index: key for key, index in lib._graphs.items()}
    step_rows, kernel_rows = [], []
    for p_i, (program, converted) in enumerate(list(runner._programs.values())):
        native = converted.native
        threads = [t.copy() for t in native.threads]
        base = native.stamps
        launches = []  # (thread, step, executor slot, stamp base, kernels)
        for t, steps in enumerate(threads):
            for i in np.flatnonzero(steps["op"] == Op.GRAPH).tolist():
                slot = int(steps["slot"][i])
                n = len(by_index[slot][0])
                launches.append((t, i, slot, base, n))
                base += n
        capacity = max(1, base)
        highest = 0
        for t, i, slot, first, n in launches:
            kinds, grids, timers, _, _ = by_index[slot]
            tuned = lib.tuned_timers.get(slot, list(timers))
            index = lib.graph_stamped(list(kinds), list(grids), tuned, first, capacity)
            threads[t]["slot"][i] = index
            highest = max(highest, index)
        graphs = [GraphDef([], [], [])] * (highest + 1)
        stamped = NativeProgram(threads, native.streams, native.events, graphs, list(native.sync_order))
        object.__setattr__(stamped, "stamps", capacity)
        main = program.threads[0].steps
        copies = main[main["op"] == OP_COPY]
        tag = {
            "program": p_i,
            "graph_kernel_us": float(program.graph_kernels["duration_us"].sum()),
            "copy_us": float(np.median(copies["duration_us"])) if len(copies) else float("nan"),
        }
        for rep in range(reps):
            outs = lib.run(stamped, lead_ns=50_000)
            starts, ends = lib.last_stamps(capacity)
            zero = int(outs[0]["target_ns"][0] - threads[0]["gap_ns"][0])
            for t, (steps, out) in enumerate(zip(threads, outs)):
                frame = {f: np.where(out[f] >= 0, (out[f] - zero) / 1e3, np.nan) for f in OUT_FIELDS}
                frame.update(op=steps["op"], gap_ns=steps["gap_ns"], call_ns=steps["call_ns"], status=out["status"])
                step_rows.append(pd.DataFrame(frame).assign(thread=t, step=np.arange(len(steps)), rep=rep, **tag))
            for launch, (t, i, _, first, n) in enumerate(launches):
                s, e = starts[first : first + n], ends[first : first + n]
                kernel_rows.append(
                    pd.DataFrame(
                        {
                            "kernel": np.arange(n),
                            "start_us": np.where(s >= 0, (s - zero) / 1e3, np.nan),
                            "end_us": np.where(e >= 0, (e - zero) / 1e3, np.nan),
                        }
                    ).assign(launch=launch, thread=t, step=i, rep=rep, **tag)
                )
    pd.concat(step_rows, ignore_index=True).to_parquet(d.out / "stamped_steps.parquet")
    kernels = pd.concat(kernel_rows, ignore_index=True)
    kernels.to_parquet(d.out / "stamped_kernels.parquet")
    k = kernels.sort_values(["program", "rep", "launch", "kernel"])
    k["dur"] = k["end_us"] - k["start_us"]
    k["gap"] = k["start_us"] - k.groupby(["program", "rep", "launch"])["end_us"].shift()
    summary = k.groupby("program").agg(
        graph_kernel_us=("graph_kernel_us", "first"),
        copy_us=("copy_us", "first"),
        kernel_median_us=("dur", "median"),
        gap_median_us=("gap", "median"),
        stamped=("start_us", "count"),
    )
    d.say("stamped replay (per graph kernel, medians):\n" + summary.to_string(float_format=lambda v: f"{v:.3f}"))


def stage_probe(d: Diag, context) -> dict:
    from replay.native.steps import Kind

    runner = context.native
    lib, cal = runner.lib, runner.calibration
    latency = int(Kind.LATENCY)
    rows, graphs = [], {}
    for n in PROBE_KERNELS:
        for d_us in PROBE_DURATIONS_US:
            if d.left_s() < 25:
                d.say("probe: stopped early (budget)")
                break
            timer = cal.timer_ns(latency, d_us) if d_us > 0 else 0
            index = lib._capture([latency] * n, [1] * n, [timer] * n)
            graphs[(n, d_us)] = index
            lib.time_graph_ns(index, reps=3)
            b2b = statistics.median(lib.time_graph_ns(index, reps=10) for _ in range(3))
            alone = lib.time_graph_alone_ns(index, reps=15)
            stream = lib.time_kernel_ns(latency, 1, timer, reps=50) if n == 1 else float("nan")
            rows.append(
                {
                    "kernels": n,
                    "d_us": d_us,
                    "timer_us": timer / 1e3,
                    "graph_back_to_back_us": b2b / 1e3,
                    "graph_per_kernel_us": b2b / 1e3 / n,
                    "graph_alone_us": alone / 1e3,
                    "alone_minus_back_to_back_us": (alone - b2b) / 1e3,
                    "stream_back_to_back_us": stream / 1e3,
                }
            )
    table = pd.DataFrame(rows)
    table.to_csv(d.out / "probe.csv", index=False)
    d.say("probe:\n" + table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    return graphs


def stage_copy(d: Diag) -> None:
    import torch

    src = torch.empty(COPY_BYTES, dtype=torch.uint8, device="cuda")
    dst = torch.empty(COPY_BYTES, dtype=torch.uint8, pin_memory=True)
    stream = torch.cuda.Stream()
    rows = []
    with torch.cuda.stream(stream):
        for case in ("alone", "queued"):
            times = []
            for _ in range(25):
                a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                torch.cuda.synchronize()
                if case == "queued":
                    torch.cuda._sleep(200_000)  # the copy waits on the stream, as behind a graph
                a.record(stream)
                dst.copy_(src, non_blocking=True)
                b.record(stream)
                b.synchronize()
                times.append(a.elapsed_time(b) * 1e3)
            times = times[5:]
            rows.append(
                {
                    "case": case,
                    "bytes": COPY_BYTES,
                    "median_us": statistics.median(times),
                    "min_us": min(times),
                    "max_us": max(times),
                    "recorded_us": RECORDED_COPY_US,
                }
            )
    table = pd.DataFrame(rows)
    table.to_csv(d.out / "copy.csv", index=False)
    d.say("copy:\n" + table.to_string(index=False))


def _export(prof, path: Path) -> None:
    raw = path.with_suffix("")  # .json
    prof.export_chrome_trace(str(raw))
    with open(raw, "rb") as f_in, gzip.open(path, "wb") as f_out:
        shutil.copyfileobj(f_in, f_out)
    raw.unlink()


def stage_profiled(d: Diag, context, graphs: dict) -> None:
    import torch
    from torch.profiler import ProfilerActivity, profile

    from replay.engine import ReplayBackend

    loaded = load_spec(SPECS_DIR / f"{SPECS[0]}.toml")
    loaded = dataclasses.replace(loaded, policies=loaded.policies[:1])
    loaded = dataclasses.replace(loaded, spec=loaded.spec.model_copy(update={"repetitions": 1}))

    def replay(spec, rep):
        return ReplayBackend(context, spec.profile, spec.device_memory_bytes, seed=spec.spec.seed + rep)

    os.environ["HARNESS_REPLAY_NATIVE"] = "on"
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        results = run_spec(loaded, replay)
        torch.cuda.synchronize()
    _export(prof, d.out / "profiled_replay.json.gz")
    d.say(f"profiled replay: spans {_spans(results)['makespan_us'].to_dict()} (profiled: not comparable)")
    lib = context.native.lib
    chosen = [(n, d_us) for (n, d_us) in graphs if n == 96 or d_us in (1.0, 5.0)]
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for key in chosen:
            lib.time_graph_alone_ns(graphs[key], reps=5)
        torch.cuda.synchronize()
    _export(prof, d.out / "profiled_probe.json.gz")
    (d.out / "profiled_probe_order.json").write_text(json.dumps([list(k) for k in chosen]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--budget-s", type=float, default=150.0)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    d = Diag(args.out, args.budget_s)
    import torch

    from replay.engine import ReplayContext

    d.say(f"device {torch.cuda.get_device_name(0)}, torch {torch.__version__}; budget {args.budget_s:.0f} s")
    context = ReplayContext(1)
    d.stage("spans", 40, stage_spans, d, context, args.reps)
    if getattr(context, "native", None):
        d.stage("program_graphs", 15, stage_program_graphs, d, context)
        d.stage("traced", 15, stage_traced, d, context)
        d.stage("stamped_replay", 15, stage_stamped_replay, d, context)
        graphs = d.stage("probe", 30, stage_probe, d, context) or {}
    else:
        d.say("no native runner was opened: program_graphs and probe skipped")
        graphs = {}
    d.stage("copy", 10, stage_copy, d)
    if getattr(context, "native", None):
        d.stage("profiled", 25, stage_profiled, d, context, graphs)
    d.say(f"done; {d.left_s():.0f} s of the budget left")


if __name__ == "__main__":
    main()
