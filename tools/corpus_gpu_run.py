"""Time and record the corpus of plain PyTorch programs on one GPU, in one command (issues 22 and 24).

The programs and what-if pairs are in ``traces/recorded/corpus/corpus.toml``. Each
job of the catalogue runs in a FRESH process (the profiler leaves a process slower
for the rest of its life, so the truth is timed before any profiling in it):

1. build the job's programs, warm each up (allocator, cuBLAS, graph capture);
2. the truth: ``rounds`` interleaved rounds, the programs in alternating order
   (A B C, C B A, ...), each ``run(steps)`` timed on the host between two device
   synchronizes: medians and spread per program;
3. one short discarded profiled run (the profiler's own start-up), then each
   program recorded once per mode of the job (``sync``: CPU+CUDA with CUDA sync
   events, the default; ``nosync``: CPU+CUDA; ``cudaonly``: CUDA only), exported
   as a gzipped Chrome trace; the host span of the recorded run is kept too;
4. after-effects, measured and written down: every program timed unprofiled again
   (the profiler's after-effect on later unprofiled runs), and the first program
   recorded again in the first mode (does an earlier recording bias a later one?).

Jobs marked ``extra`` (the decoder family in the other modes) run last and only
while the time budget (``--budget-s``) allows; a skipped job is listed in the
manifest. Everything goes under ``--out`` (default ``$OUT/corpus``):
``recordings/<program>-<mode>.json.gz``, ``jobs/<job>.json``, ``logs/<job>.log``,
``manifest.json`` (environment, per program and mode: unprofiled median, spread and
every sample, recording path and size, recorded host span) and ``manifest.csv``.

Usage (GPU machine): ``python tools/corpus_gpu_run.py --out $OUT/corpus``.
CPU check of the control flow: ``python tools/corpus_gpu_run.py --dry-run --out /tmp/c``
(tiny shapes on the CPU, CPU-only profiler, 2 rounds).
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import gc
import gzip
import importlib.util
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from corpus_catalogue import CATALOGUE, MODE_TEXT, Catalogue, JobEntry, load_catalogue, recording_name  # noqa: E402

AFTER_ROUNDS = 3  # unprofiled rounds after the recordings (the profiler's after-effect)
JOB_TIMEOUT_S = 150


# --------------------------------------------------------------------------- worker (one fresh process per job)


def _load_program_class(path: Path):
    spec = importlib.util.spec_from_file_location(f"corpus_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.Program


def _spread(samples: list[float]) -> dict:
    ordered = sorted(samples)
    q = statistics.quantiles(ordered, n=4, method="inclusive") if len(ordered) >= 2 else [ordered[0]] * 3
    return {
        "median_us": statistics.median(ordered),
        "min_us": ordered[0],
        "max_us": ordered[-1],
        "q1_us": q[0],
        "q3_us": q[2],
    }


def profiler_kwargs(torch, mode: str, cuda: bool) -> dict:
    """torch.profiler.profile's arguments for a corpus mode (``sync``, ``nosync``, ``cudaonly``; ``cuda`` False: the
    CPU profiler of a dry run), also tools/graph_launch_split_probe.py's."""
    from torch.profiler import ProfilerActivity

    if not cuda:  # dry run: the CPU profiler, with the mode's config where it applies
        kwargs: dict = {"activities": [ProfilerActivity.CPU]}
    elif mode == "cudaonly":
        kwargs = {"activities": [ProfilerActivity.CUDA]}
    else:
        kwargs = {"activities": [ProfilerActivity.CPU, ProfilerActivity.CUDA]}
    if mode == "sync":
        kwargs["experimental_config"] = torch._C._profiler._ExperimentalConfig(enable_cuda_sync_events=True)
    return kwargs


def run_job(job_file: Path) -> None:
    """The worker: time and record one job's programs (``job_file`` says which), write its JSON result."""
    import torch

    job = json.loads(job_file.read_text())
    out = Path(job["out"])
    device = torch.device(job["device"])
    cuda = device.type == "cuda"
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
    else:
        torch.set_num_threads(1)  # the dry run checks the control flow, on a shared CPU
    sync = (lambda: torch.cuda.synchronize(device)) if cuda else (lambda: None)

    def timed(program, steps: int) -> float:
        sync()
        start = time.perf_counter()
        program.run(steps)
        sync()
        return (time.perf_counter() - start) * 1e6

    built, errors = {}, {}
    t0 = time.perf_counter()
    for entry in job["programs"]:
        try:  # one program that fails (a capture, an allocation) must not cost the job's others
            cls = _load_program_class(Path(entry["path"]))
            program = cls(str(device), job["tiny"], **entry["options"])
            program.run(entry["warmup"])
            sync()
            built[entry["id"]] = program
        except Exception as err:  # noqa: BLE001 - written down in the job's result and the log
            errors[entry["id"]] = f"build/warm-up: {type(err).__name__}: {err}"
            print(f"[{job['id']}] {entry['id']} FAILED: {errors[entry['id']]}", flush=True)
            traceback.print_exc()
    print(f"[{job['id']}] built and warmed up {len(built)} programs in {time.perf_counter() - t0:.1f} s", flush=True)

    order = [e["id"] for e in job["programs"] if e["id"] in built]
    if not order:
        raise SystemExit(f"[{job['id']}] no program could be built: {errors}")
    steps = {e["id"]: e["steps"] for e in job["programs"]}
    truth: dict[str, list[float]] = {pid: [] for pid in order}
    gc.collect()
    for r in range(job["rounds"]):
        for pid in order if r % 2 == 0 else reversed(order):
            truth[pid].append(timed(built[pid], steps[pid]))
    for pid in order:
        s = _spread(truth[pid])
        print(f"[{job['id']}] {pid:32s} unprofiled {s['median_us']:10.1f} us ({s['min_us']:.1f}-{s['max_us']:.1f})")

    from torch.profiler import profile

    def record(pid: str, mode: str, path: Path | None) -> tuple[float, int]:
        """Record one run of ``pid``; export it gzipped to ``path``; the host span and the file's size."""
        sync()
        with profile(**profiler_kwargs(torch, mode, cuda)) as prof:
            span = timed(built[pid], steps[pid] if path is not None else 1)
        if path is None:
            return span, 0
        raw = path.with_suffix("")  # .json
        prof.export_chrome_trace(str(raw))
        with open(raw, "rb") as src, gzip.open(path, "wb", compresslevel=9) as dst:
            shutil.copyfileobj(src, dst)
        raw.unlink()
        return span, path.stat().st_size

    record(order[0], job["modes"][0], None)  # the profiler's own start-up, discarded
    recordings = []
    (out / "recordings").mkdir(parents=True, exist_ok=True)
    for mode in job["modes"]:
        for rep, pid in [(r, p) for r in range(job.get("repeat", 1)) for p in order]:
            name = recording_name(pid, mode)
            path = out / "recordings" / (name if rep == 0 else name.replace(".json.gz", f"-r{rep + 1}.json.gz"))
            try:
                span, size = record(pid, mode, path)
            except Exception as err:  # noqa: BLE001
                errors[f"{pid}/{mode}"] = f"recording: {type(err).__name__}: {err}"
                print(f"[{job['id']}] recording {pid} ({mode}) FAILED: {err}", flush=True)
                traceback.print_exc()
                continue
            recordings.append(
                {"program": pid, "mode": mode, "repeat": rep + 1, "recording": f"recordings/{path.name}", "bytes": size,
                 "host_span_us": span}
            )
            print(f"[{job['id']}] recorded {pid} ({mode}): {span:10.1f} us, {size / 1e3:.0f} kB", flush=True)

    after = {pid: [timed(built[pid], steps[pid]) for _ in range(AFTER_ROUNDS)] for pid in order}
    again_path = out / "recordings" / recording_name(order[0], job["modes"][0]).replace(".json.gz", "-again.json.gz")
    again_span, again_bytes = record(order[0], job["modes"][0], again_path)
    result = {
        "job": job["id"],
        "modes": job["modes"],
        "rounds": job["rounds"],
        "programs": {
            pid: {
                "steps": steps[pid],
                "unprofiled_us": truth[pid],
                "unprofiled": _spread(truth[pid]),
                "after_profiler_us": after[pid],
                "after_profiler_median_us": statistics.median(after[pid]),
            }
            for pid in order
        },
        "recordings": recordings,
        "errors": errors,
        "again": {
            "program": order[0],
            "mode": job["modes"][0],
            "recording": f"recordings/{again_path.name}",
            "bytes": again_bytes,
            "host_span_us": again_span,
        },
    }
    (out / "jobs").mkdir(parents=True, exist_ok=True)
    (out / "jobs" / f"{job['id']}.json").write_text(json.dumps(result, indent=1))


# --------------------------------------------------------------------------- orchestrator


def _output(cmd: list[str], timeout_s: float, cwd: Path | None = None) -> str:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=True, cwd=cwd).stdout.strip()


TORCH_PROBE = (
    "import json, torch; print(json.dumps({'torch': torch.__version__, 'cuda': torch.version.cuda,"
    " 'gpu': torch.cuda.get_device_name(0)}))"
)


def environment(dry_run: bool) -> dict:
    """Where the run ran: torch, CUDA, GPU (probed in a process of their own) and driver, host, commit."""
    env = {
        "date_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "host": platform.node(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "script": "tools/corpus_gpu_run.py",
    }
    try:
        env["commit"] = _output(["git", "rev-parse", "HEAD"], 10, Path(__file__).parent)
    except (OSError, subprocess.SubprocessError):
        env["commit"] = "unknown (no git in this copy)"
    if dry_run:
        env.update({"gpu": "cpu", "note": "dry run: tiny shapes on the CPU, torch not probed"})
        return env
    try:
        env.update(json.loads(_output([sys.executable, "-c", TORCH_PROBE], 120).splitlines()[-1]))
    except (OSError, subprocess.SubprocessError, ValueError, IndexError) as err:
        env["torch_probe_error"] = str(err)
    try:
        env["driver"] = _output(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"], 30)
    except (OSError, subprocess.SubprocessError) as err:
        env["driver"] = f"unknown ({err})"
    return env


def job_file(cat: Catalogue, job: JobEntry, out: Path, dry_run: bool, repeat: int = 1) -> Path:
    programs = cat.programs_of(job)
    spec = {
        "id": job.id,
        "out": str(out),
        "device": "cpu" if dry_run else "cuda",
        "tiny": dry_run,
        "modes": list(job.modes),
        "repeat": repeat,
        "rounds": 2 if dry_run else job.rounds,
        "programs": [
            {
                "id": p.id,
                "path": str(cat.program_file(p)),
                "options": p.options,
                "steps": 2 if dry_run else p.steps,
                "warmup": 1 if dry_run else 2,
            }
            for p in programs
        ],
    }
    path = out / "jobs" / f"{job.id}.job.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(spec, indent=1))
    return path


def manifest_rows(cat: Catalogue, results: dict[str, dict]) -> list[dict]:
    """One row per (program, mode): its process's unprofiled figures and its recording."""
    rows = []
    for job_id, res in results.items():
        job = cat.jobs[job_id]
        for rec in res["recordings"]:
            pid = rec["program"]
            entry = cat.programs[pid]
            timing = res["programs"][pid]
            rows.append(
                {
                    "program": pid,
                    "file": entry.file,
                    "options": json.dumps(entry.options, sort_keys=True),
                    "pairs": ",".join(cat.pairs_of(pid)),
                    "job": job_id,
                    "truth_job": job.records,
                    "mode": rec["mode"],
                    "repeat": rec.get("repeat", 1),
                    "mode_text": MODE_TEXT[rec["mode"]],
                    "steps": timing["steps"],
                    "rounds": res["rounds"],
                    "unprofiled_median_us": timing["unprofiled"]["median_us"],
                    "unprofiled_min_us": timing["unprofiled"]["min_us"],
                    "unprofiled_max_us": timing["unprofiled"]["max_us"],
                    "unprofiled_q1_us": timing["unprofiled"]["q1_us"],
                    "unprofiled_q3_us": timing["unprofiled"]["q3_us"],
                    "unprofiled_per_step_median_us": timing["unprofiled"]["median_us"] / timing["steps"],
                    "after_profiler_median_us": timing["after_profiler_median_us"],
                    "recording": rec["recording"],
                    "recording_bytes": rec["bytes"],
                    "recorded_host_span_us": rec["host_span_us"],
                }
            )
    return rows


def orchestrate(args: argparse.Namespace) -> int:
    cat = load_catalogue(args.catalogue)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    (out / "logs").mkdir(exist_ok=True)
    start = time.perf_counter()
    env = environment(args.dry_run)
    print(f"environment: {json.dumps(env)}", flush=True)
    jobs = [j for j in cat.jobs.values() if not args.only or j.id in args.only]
    jobs.sort(key=lambda j: j.extra)  # the issue-22 and issue-24 jobs first, other modes last
    results, skipped, failed, durations = {}, [], {}, {}
    for job in jobs:
        elapsed = time.perf_counter() - start
        estimate = max(durations.values(), default=30.0)
        if job.extra and elapsed + estimate > args.budget_s:
            skipped.append(job.id)
            print(f"[{job.id}] skipped: {elapsed:.0f} s elapsed, budget {args.budget_s:.0f} s", flush=True)
            continue
        spec = job_file(cat, job, out, args.dry_run, args.repeat)
        t0 = time.perf_counter()
        log = out / "logs" / f"{job.id}.log"
        with open(log, "w") as sink:
            try:
                proc = subprocess.run([sys.executable, __file__, "--worker", str(spec)], stdout=sink,
                                      stderr=subprocess.STDOUT, timeout=args.job_timeout_s)
                rc = proc.returncode
            except subprocess.TimeoutExpired:
                rc = "timeout"
        durations[job.id] = time.perf_counter() - t0
        print(log.read_text(), end="", flush=True)
        result = out / "jobs" / f"{job.id}.json"
        if rc == 0 and result.exists():
            results[job.id] = json.loads(result.read_text())
            print(f"[{job.id}] done in {durations[job.id]:.1f} s", flush=True)
        else:
            failed[job.id] = f"exit {rc}; see logs/{job.id}.log"
            print(f"[{job.id}] FAILED ({failed[job.id]})", flush=True)
    rows = manifest_rows(cat, results)
    manifest = {
        "format_version": 1,
        "environment": env,
        "catalogue": str(Path(args.catalogue).name),
        "dry_run": args.dry_run,
        "wall_s": time.perf_counter() - start,
        "job_wall_s": durations,
        "skipped_jobs": skipped,
        "failed_jobs": failed,
        "again": {job_id: res["again"] for job_id, res in results.items()},
        "program_errors": {job_id: res["errors"] for job_id, res in results.items() if res["errors"]},
        "after_profiler": {
            job_id: {pid: t["after_profiler_median_us"] / t["unprofiled"]["median_us"] - 1
                     for pid, t in res["programs"].items()}
            for job_id, res in results.items()
        },
        "rows": rows,
        "samples": {job_id: {pid: t["unprofiled_us"] for pid, t in res["programs"].items()}
                    for job_id, res in results.items()},
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    if rows:
        with open(out / "manifest.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    total = sum(r["recording_bytes"] for r in rows)
    errors = sum(len(e) for e in manifest["program_errors"].values())
    print(f"manifest: {errors} program errors; {len(rows)} recordings ({total / 1e6:.1f} MB), {len(results)} jobs done, "
          f"skipped {skipped or 'none'}, failed {list(failed) or 'none'}; {manifest['wall_s']:.0f} s", flush=True)
    return 1 if failed or errors else 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "corpus-out")) / "corpus")
    ap.add_argument("--catalogue", type=Path, default=CATALOGUE)
    ap.add_argument("--only", nargs="*", default=None, help="job ids to run (default: all)")
    ap.add_argument("--budget-s", type=float, default=360.0, help="extra jobs start only before this (s)")
    ap.add_argument("--repeat", type=int, default=1,
                    help="record each program this many times per mode, one after another in its process (the "
                         "recording-to-recording spread); repeats are named <program>-<mode>-r<N>.json.gz")
    ap.add_argument("--job-timeout-s", type=float, default=JOB_TIMEOUT_S)
    ap.add_argument("--dry-run", action="store_true", help="tiny shapes on the CPU: checks the control flow")
    ap.add_argument("--worker", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker is not None:
        run_job(args.worker)
        return
    sys.exit(orchestrate(args))


if __name__ == "__main__":
    main()
