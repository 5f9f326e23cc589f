"""Dashboard speed on a big results collection, measured in a real browser (issue 14's targets).

    python3 tools/bench_dashboard.py [--out /tmp/bench-dashboard] [--big-ops 1340000] [--warm 5]

1. Builds a collection (once; reused when ``--out`` exists): a few bundled specs simulated by the harness
   (real results folders), plus synthesised folders written with the results schema (``harness.results``):
   a layer-streaming-shaped sim run and its "replay" twin of ``--big-ops`` ops each (host thread launching
   kernels, copies on a side stream, records and waits), and a folder of 24 mid-sized runs. About 3.9 M ops.
   The synthesised folders say so in their device name (``synthetic``).
2. Starts ``harness dashboard`` on it and drives Debian's chromium (``/usr/bin/chromium``) with playwright:
   each page opened in a fresh browser context (first visit) and again ``--warm`` times in that context (warm:
   the browser's cache and the server's caches filled; the median is reported, the VM's speed varies from one
   load to the next), timed from navigation until Streamlit reports the script finished and the page's chart
   (or table) is on screen. The Requests page (per-request drill-down) is timed on the simulated batching run.
   Then the interactions people wait on, in an open page (warm, the median of ``--warm``): on the whole-run timeline
   "Zoom in" (the bars re-aggregated for the new window and redrawn), on the Requests page a click on a row of the
   requests table (that request's timeline drawn); timed from the click until the new chart is on screen.
3. Reads the server's peak and current resident memory from /proc.
4. The floor: the same timing of a page of a bare Streamlit app that draws one three-bar plotly chart, so that
   what Streamlit and plotly.js cost on this machine (load the page, connect, run, load and start plotly.js) is
   seen apart from the dashboard's own cost.

Prints a table and writes ``bench.json`` beside the collection.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlencode

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dashboard.headless_chromium import CHROMIUM_ARGS  # noqa: E402
from harness.results import to_table, write_results  # noqa: E402

REAL_SPECS = ("layer_streaming_demo", "layer_streaming_sweep", "batching_c1_window", "kv_backup_single_gpu")
BIG_SPEC = "synthetic-big-streaming"
CHROMIUM = "/usr/bin/chromium"


def synth_ops(n_ops: int, seed: int, scale: float = 1.0) -> pd.DataFrame:
    """A layer-streaming-shaped op table: per segment a copy (side stream + its copy engine), a record, a wait,
    a kernel, and a host sync every 8 segments; n_ops ops in all."""
    rng = np.random.default_rng(seed)
    per = 5
    seg = n_ops // per
    copy_us = rng.uniform(40, 60, seg) * scale
    kern_us = rng.uniform(30, 90, seg) * scale
    t_kernel_end = np.cumsum(np.maximum(copy_us, kern_us) + 2.0)
    k_start = t_kernel_end - kern_us
    c_start = np.maximum(k_start - copy_us - 1.0, 0)
    c_end = c_start + copy_us
    issue = np.maximum(c_start - rng.uniform(3, 8, seg), 0)
    idx = np.arange(seg)
    parts = [
        dict(stream="prefetch", kind="copy_h2d", name="params", bytes=64 << 20, start=c_start, end=c_end, issue=issue),
        dict(stream="prefetch", kind="record", name="event", bytes=0, start=c_end, end=c_end, issue=issue + 1),
        dict(stream="compute", kind="wait", name="event", bytes=0, start=k_start - 1, end=k_start, issue=issue + 2),
        dict(
            stream="compute", kind="kernel", name="segment", bytes=0, start=k_start, end=t_kernel_end, issue=issue + 3
        ),
        dict(
            stream="main",
            kind="host_sync",
            name="sync:compute",
            bytes=0,
            start=issue + 4,
            end=t_kernel_end,
            issue=issue + 4,
        ),
    ]
    frames = []
    for i, p in enumerate(parts):
        named = p["name"] if p["kind"] in ("copy_h2d", "kernel") else p["name"]
        frames.append(
            pd.DataFrame(
                {
                    "op_id": idx * per + i,
                    "device": np.int32(-1 if p["kind"] == "host_sync" else 0),
                    "stream": p["stream"],
                    "kind": p["kind"],
                    "name": [f"{named}[{j % 64}]" for j in idx] if p["kind"] in ("copy_h2d", "kernel") else named,
                    "bytes": p["bytes"],
                    "host_memory": "pinned" if p["kind"] == "copy_h2d" else "",
                    "thread": "main",
                    "issue_us": p["issue"],
                    "start_us": p["start"],
                    "end_us": p["end"],
                }
            )
        )
    return pd.concat(frames, ignore_index=True).sort_values("op_id", kind="stable").reset_index(drop=True)


def synth_folder(out: Path, spec: str, runs_spec: list[tuple[str, str, int]], backend: str, seed: int) -> None:
    """A results folder of synthesised runs: (policy label, policy, n_ops) each."""
    runs, ops, metrics = [], [], []
    for i, (label, policy, n_ops) in enumerate(runs_spec):
        run_id = f"{spec}:{label}:{backend}:r0"
        o = synth_ops(n_ops, seed + i, scale=1.0 if backend == "sim" else 1.04)
        ops.append(o.assign(run_id=run_id))
        makespan = float(o["end_us"].max())
        metrics += [
            dict(run_id=run_id, metric="makespan_us", item=-1, value=makespan, unit="us"),
            dict(run_id=run_id, metric="h2d_busy_frac", item=-1, value=0.7 + 0.01 * i, unit="fraction"),
            dict(run_id=run_id, metric="h2d_bytes", item=-1, value=float(o["bytes"].sum()), unit="bytes"),
        ]
        runs.append(
            dict(
                run_id=run_id,
                spec_name=spec,
                spec_path="synthetic",
                spec_sha256="synthetic",
                workload="layer_streaming",
                policy=policy,
                policy_label=label,
                params_json=json.dumps({"depth": i % 4 + 1} if policy == "prefetch" else {}),
                backend=backend,
                profile="h100-sxm-pcie5-measured",
                device_name="synthetic H100" if backend == "replay" else "H100 (synthetic sim)",
                seed=0,
                repetition=0,
                package_version="bench",
                status="ok",
                error="",
                started_at="2026-11-29T00:00:00+00:00",
                wall_s=1.0,
                n_ops=len(o),
            )
        )
    write_results(
        out,
        {
            "runs": to_table("runs", pd.DataFrame(runs)),
            "ops": to_table("ops", pd.concat(ops, ignore_index=True)),
            "metrics": to_table("metrics", pd.DataFrame(metrics)),
        },
    )


def build_collection(out: Path, big_ops: int) -> None:
    from harness.cli.run import simulate_spec
    from harness.paths import SPECS_DIR

    out.mkdir(parents=True)
    for spec in REAL_SPECS:
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                simulate_spec(SPECS_DIR / f"{spec}.toml", out / f"{spec}-sim", out)
        except Exception as err:  # a spec that needs what this machine lacks: the synthetic folders still count
            print(f"skipped {spec}: {err}", file=sys.stderr)
    synth_folder(out / "big-sim", BIG_SPEC, [("prefetch", "prefetch", big_ops)], "sim", 1)
    synth_folder(out / "big-replay", BIG_SPEC, [("prefetch", "prefetch", big_ops)], "replay", 1)
    mids = [(f"prefetch-{i}", "prefetch", 50_000) for i in range(24)]
    synth_folder(out / "mid-sim", "synthetic-mid", mids, "sim", 100)


BIG_RUN = f"{BIG_SPEC}:prefetch:sim:r0 @ big-sim"  # run labels name the folder
# (name, path, the element that says the page is drawn)
PAGES = [
    ("runs", "/", '[data-testid="stDataFrame"] canvas'),
    ("compare", "/compare?" + urlencode({"spec": BIG_SPEC, "backend": "sim"}), ".js-plotly-plot .barlayer"),
    (
        "timeline (1.34 M ops, whole run)",
        "/timeline?" + urlencode({"run": BIG_RUN}),
        ".js-plotly-plot .barlayer",
    ),
    (
        "timeline (10 ms window)",
        "/timeline?" + urlencode({"run": BIG_RUN, "start": "10000000", "end": "10010000"}),
        ".js-plotly-plot .barlayer",
    ),
    ("fidelity", "/fidelity", ".js-plotly-plot .scatterlayer"),
    ("sweep", "/sweep?" + urlencode({"spec": "synthetic-mid", "backend": "sim"}), ".js-plotly-plot"),
    ("requests (batching run, one request)", "/requests", ".js-plotly-plot .barlayer"),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def memory_mb(pid: int) -> dict[str, float]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmHWM", "VmRSS"):
            fields[key] = int(value.split()[0]) / 1024
    return fields


FLOOR_APP = """
import plotly.graph_objects as go
import streamlit as st

st.title("Floor")
st.plotly_chart(go.Figure(go.Bar(x=[1, 2, 3], y=[1, 2, 3])))
"""
URL_SPAN = "() => { const u = new URL(location.href).searchParams; return u.get('end') - u.get('start'); }"
SCRIPT_DONE = '[data-testid="stApp"][data-test-script-state="notRunning"]'
# An element of the page or of a frame in it (the Timeline page draws its chart in a component's iframe).
FIND = (
    "((sel) => [document, ...Array.from(document.querySelectorAll('iframe'), (f) => {"
    " try { return f.contentDocument; } catch (e) { return null; } })]"
    ".map((d) => d && d.querySelector(sel)).find(Boolean) || null)"
)
X_RANGE = (
    f"() => {{ const gd = {FIND}('.js-plotly-plot');"
    " return gd && gd._fullLayout && gd._fullLayout.xaxis ? gd._fullLayout.xaxis.range : null; }"
)


def wait_healthy(base: str) -> None:
    for _ in range(200):
        try:
            with urllib.request.urlopen(f"{base}/_stcore/health", timeout=2):
                return
        except OSError:
            time.sleep(0.3)


def time_floor(browser, warm: int) -> dict:
    """First and warm visits of a bare Streamlit page with one small plotly chart (no dashboard code)."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        app = Path(folder) / "floor.py"
        app.write_text(FLOOR_APP)
        port = free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", str(app), "--server.port", str(port)]
            + ["--server.headless", "true", "--browser.gatherUsageStats", "false", "--client.toolbarMode", "viewer"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            wait_healthy(base)
            first, context = time_page(browser, base, ".js-plotly-plot .barlayer")
            warms = [time_page(browser, base, ".js-plotly-plot .barlayer", context)[0] for _ in range(max(1, warm))]
            context.close()
        finally:
            server.terminate()
            server.wait(timeout=20)
    return {"page": "floor: bare Streamlit page, one plotly chart", "first_s": round(first, 2), "warm_s": warms}


def time_interactions(browser, base: str, big_run: str, warm: int) -> list[dict]:
    """Zoom in on the whole-run timeline; click a row of the requests table. Seconds from the click to the chart."""
    out = []
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    page = context.new_page()
    page.goto(base + "/timeline?" + urlencode({"run": big_run}))
    page.wait_for_selector(SCRIPT_DONE, timeout=120_000)
    page.wait_for_function(f"() => !!{FIND}('.js-plotly-plot .barlayer')", timeout=120_000)
    times = []
    for _ in range(max(1, warm)):
        before = [page.evaluate(URL_SPAN), page.evaluate(X_RANGE)]
        t0 = time.perf_counter()
        page.get_by_test_id("stButton").get_by_role("button", name="Zoom in").click()
        page.wait_for_function(  # the window in the URL halved, and a chart of it drawn (its unit may change)
            f"(b) => {{ const r = ({X_RANGE})(); return Math.abs(({URL_SPAN})() - b[0] / 2) < 1e-3 * b[0]"
            f" && r && (r[0] !== b[1][0] || r[1] !== b[1][1]) && {FIND}('.js-plotly-plot .barlayer') }}",
            arg=before,
            timeout=120_000,
        )
        page.wait_for_selector(SCRIPT_DONE, timeout=120_000)
        times.append(time.perf_counter() - t0)
    out.append({"page": "timeline: Zoom in (1.34 M-op run)", "warm_s": times})
    page.goto(base + "/requests")
    page.wait_for_selector(SCRIPT_DONE, timeout=120_000)
    page.wait_for_function(f"() => !!{FIND}('.js-plotly-plot .barlayer')", timeout=120_000)
    grid = page.locator('[data-testid="stDataFrame"]').first.bounding_box()
    times = []
    for row in range(1, max(1, warm) + 1):
        before = [page.evaluate("() => new URL(location.href).searchParams.get('request')"), page.evaluate(X_RANGE)]
        t0 = time.perf_counter()
        page.mouse.click(grid["x"] + 14, grid["y"] + 35 * (row + 1) + 17)  # the row's selection marker
        page.wait_for_function(
            f"(b) => {{ const r = ({X_RANGE})(); return new URL(location.href).searchParams.get('request') !== b[0]"
            f" && r && (r[0] !== b[1][0] || r[1] !== b[1][1]) && {FIND}('.js-plotly-plot .barlayer') }}",
            arg=before,
            timeout=120_000,
        )
        page.wait_for_selector(SCRIPT_DONE, timeout=120_000)
        times.append(time.perf_counter() - t0)
    out.append({"page": "requests: click a row", "warm_s": times})
    context.close()
    return out


def time_page(browser, url: str, ready: str, context=None) -> tuple[float, object]:
    context = context or browser.new_context(viewport={"width": 1600, "height": 1000})
    page = context.new_page()
    t0 = time.perf_counter()
    page.goto(url)
    page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]', timeout=120_000)
    page.wait_for_function(f"(sel) => !!{FIND}(sel)", arg=ready, timeout=120_000)  # in the page or a frame
    elapsed = time.perf_counter() - t0
    errors = page.locator('[data-testid="stException"]').count()
    page.close()
    if errors:
        raise RuntimeError(f"{url}: the page shows an exception")
    return elapsed, context


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/bench-dashboard"))
    parser.add_argument("--big-ops", type=int, default=1_340_000)
    parser.add_argument("--warm", type=int, default=5, help="warm visits per page (the median is reported)")
    parser.add_argument(
        "--pages",
        nargs="+",
        metavar="PAGE",
        help="time only these pages (names as printed: runs, compare, timeline, fidelity, sweep, requests; "
        "'interactions' for Zoom in and the request click); default: all",
    )
    args = parser.parse_args()
    if not args.out.exists():
        t = time.perf_counter()
        build_collection(args.out, args.big_ops)
        print(f"built {args.out} in {time.perf_counter() - t:.0f} s")
    import pyarrow.parquet as pq

    folders = sorted(p for p in args.out.iterdir() if (p / "ops.parquet").exists())
    n_ops = sum(pq.ParquetFile(p / "ops.parquet").metadata.num_rows for p in folders)
    n_runs = sum(pq.ParquetFile(p / "runs.parquet").metadata.num_rows for p in folders)
    print(f"collection: {len(folders)} folders, {n_runs} runs, {n_ops:,} ops")

    from playwright.sync_api import sync_playwright

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "harness", "dashboard", str(args.out), "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(base)
        big_run = BIG_RUN
        pages = PAGES
        if args.pages:
            pages = [page for page in pages if page[0].split()[0] in args.pages]
        results = []
        with sync_playwright() as pw:
            browser = pw.chromium.launch(
                executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
            )
            for name, path, ready in pages:
                first, context = time_page(browser, base + path, ready)
                warms = [time_page(browser, base + path, ready, context)[0] for _ in range(max(1, args.warm))]
                context.close()
                warm = float(np.median(warms))
                results.append(
                    {
                        "page": name,
                        "first_s": round(first, 2),
                        "warm_s": round(warm, 2),
                        "warm_all_s": [round(w, 2) for w in warms],
                    }
                )
                spread = f"({min(warms):.2f}-{max(warms):.2f})"
                print(f"{name:44s} first {first:5.2f} s   warm {warm:5.2f} s {spread}")
            interactions = (
                time_interactions(browser, base, big_run, args.warm)
                if not args.pages or "interactions" in args.pages
                else []
            )
            for item in interactions:
                warms = item.pop("warm_s")
                item.update(warm_s=round(float(np.median(warms)), 2), warm_all_s=[round(w, 2) for w in warms])
                spread = f"({min(warms):.2f}-{max(warms):.2f})"
                print(f"{item['page']:44s} {'':15s}   warm {item['warm_s']:5.2f} s {spread}")
            results += interactions
        memory = memory_mb(server.pid)
        print(f"server memory: peak {memory['VmHWM']:.0f} MB, now {memory['VmRSS']:.0f} MB")
    finally:
        server.terminate()
        server.wait(timeout=20)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        floor = time_floor(browser, args.warm)
        browser.close()
    warms = floor.pop("warm_s")
    floor.update(warm_s=round(float(np.median(warms)), 2), warm_all_s=[round(w, 2) for w in warms])
    print(
        f"{floor['page']:44s} first {floor['first_s']:5.2f} s   warm {floor['warm_s']:5.2f} s "
        f"({min(warms):.2f}-{max(warms):.2f})"
    )
    results.append(floor)
    machine = {
        "cpus": os.cpu_count(),
        "cpu": next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if "model name" in line
            ),
            platform.processor(),
        ),
        "python": platform.python_version(),
    }
    report = {
        "folders": len(folders),
        "runs": n_runs,
        "ops": n_ops,
        "pages": results,
        "memory_mb": memory,
        "machine": machine,
    }
    (args.out / "bench.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(machine))


if __name__ == "__main__":
    main()
