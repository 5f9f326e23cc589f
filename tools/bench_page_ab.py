"""One dashboard page, before and after a change, interleaved (A B A B) beside the floor, on a busy machine.

    python3 tools/bench_page_ab.py --before /tmp/before-tree [--after .] [--page compare] [--rounds 8]
        [--out /tmp/bench-dashboard] [--budget-s 900]

``tools/bench_dashboard.py`` times one tree's pages one after another, so on a machine shared with other work the
load of that minute decides the figure. This one starts two dashboards on the same collection (``--before`` and
``--after``: repository trees, each served by its own code: ``python -m harness`` run in the tree) and the floor
(a bare Streamlit page with one plotly chart), and in each round opens the floor, before and after once each, in
a rotating order, every one warm (its own browser context, opened once beforehand). It reports per side the
median warm load, the median of the load minus the same round's floor (the page's own cost, which the machine's
speed that minute mostly cancels out of), the browser main thread's busy time per load (Chromium's
``TaskDuration``, less noisy than the wall clock) and the JavaScript the load fetched (files, bytes: what the
browser parses). Then the server's script alone: Streamlit's AppTest runs the page warm in each tree, batches
interleaved the same way. Writes ``ab-<page>.json`` beside the collection. Stops starting rounds at
``--budget-s``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dashboard.headless_chromium import CHROMIUM_ARGS  # noqa: E402
from tools.bench_dashboard import (  # noqa: E402
    CHROMIUM,
    FIND,
    FLOOR_APP,
    PAGES,
    SCRIPT_DONE,
    build_collection,
    free_port,
    wait_healthy,
)

FLOOR_READY = ".js-plotly-plot .barlayer"
# The page's script run alone, warm: AppTest in the tree (cwd first on sys.path), the page opened once, then timed.
SCRIPT_TIMER = """
import json, os, sys, time
from streamlit.testing.v1 import AppTest
os.environ["HARNESS_DASHBOARD_DIRS"] = sys.argv[1]
at = AppTest.from_file(os.path.abspath("dashboard/app.py"), default_timeout=300)
at.query_params.update(json.loads(sys.argv[2]))
at.run()
at.switch_page("views/" + sys.argv[3] + ".py").run()
assert not at.exception, [e.value for e in at.exception]
times = []
for _ in range(int(sys.argv[4])):
    t = time.perf_counter()
    at.run()
    times.append(time.perf_counter() - t)
print(json.dumps(times))
"""


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def start_server(cmd: list[str], cwd: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    server = subprocess.Popen(
        [*cmd, "--port" if cmd[2] == "harness" else "--server.port", str(port)],
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    wait_healthy(base)
    return server, base


def timed_load(context, url: str, ready: str) -> dict:
    """One load in ``context``: seconds until the script is done and ``ready`` drawn; main-thread busy seconds;
    JavaScript files and bytes fetched (from the cache or the server)."""
    page = context.new_page()
    cdp = context.new_cdp_session(page)
    cdp.send("Performance.enable")
    scripts: list[int] = []
    page.on(
        "response",
        lambda r: scripts.append(int(r.headers.get("content-length") or 0)) if r.url.endswith(".js") else None,
    )
    t0 = time.perf_counter()
    page.goto(url)
    page.wait_for_selector(SCRIPT_DONE, timeout=180_000)
    page.wait_for_function(f"(sel) => !!{FIND}(sel)", arg=ready, timeout=180_000)
    wall = time.perf_counter() - t0
    metrics = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
    errors = page.locator('[data-testid="stException"]').count()
    page.close()
    if errors:
        raise RuntimeError(f"{url}: the page shows an exception")
    return {"wall_s": wall, "main_thread_s": metrics["TaskDuration"], "js_files": len(scripts), "js_bytes": sum(scripts)}


def script_times(tree: Path, collection: Path, page: str, query: dict, runs: int) -> list[float]:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT_TIMER, str(collection), json.dumps(query), page, str(runs)],
        cwd=tree,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode:
        raise RuntimeError(f"AppTest in {tree} failed: {done.stderr.strip().splitlines()[-1:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True, help="the tree before the change (e.g. git archive)")
    parser.add_argument("--after", type=Path, default=ROOT, help="the tree after it (default: this one)")
    parser.add_argument("--page", default="compare", help="a page as tools/bench_dashboard.py names it")
    parser.add_argument("--rounds", type=int, default=8, help="warm loads per side (the median is reported)")
    parser.add_argument("--script-batches", type=int, default=4, help="AppTest batches of 5 warm runs per tree")
    parser.add_argument("--out", type=Path, default=Path("/tmp/bench-dashboard"), help="the collection")
    parser.add_argument("--big-ops", type=int, default=1_340_000)
    parser.add_argument("--budget-s", type=float, default=900, help="no new round starts after this")
    args = parser.parse_args()
    started = time.perf_counter()
    name, path, ready = next(p for p in PAGES if p[0].split()[0] == args.page)
    if not args.out.exists():
        build_collection(args.out, args.big_ops)
    trees = {"before": args.before.resolve(), "after": args.after.resolve()}
    report: dict = {"page": name, "cpu": _cpu(), "cpus": os.cpu_count(), "load_start": load_average()}
    print(f"{name}: before {trees['before']}, after {trees['after']}; load average {report['load_start']}")

    from playwright.sync_api import sync_playwright

    servers = []
    loads: dict[str, list[dict]] = {"floor": [], "before": [], "after": []}
    with tempfile.TemporaryDirectory() as folder:
        floor_app = Path(folder) / "floor.py"
        floor_app.write_text(FLOOR_APP)
        try:
            bases = {}
            floor_cmd = [sys.executable, "-m", "streamlit", "run", str(floor_app), "--server.headless", "true"]
            floor_cmd += ["--browser.gatherUsageStats", "false", "--client.toolbarMode", "viewer"]
            server, bases["floor"] = start_server(floor_cmd, Path(folder))
            servers.append(server)
            for side, tree in trees.items():
                server, bases[side] = start_server([sys.executable, "-m", "harness", "dashboard", str(args.out)], tree)
                servers.append(server)
            targets = {
                "floor": (bases["floor"] + "/", FLOOR_READY),
                **{side: (bases[side] + path, ready) for side in trees},
            }
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
                contexts = {}
                for side, (url, sel) in targets.items():  # the first visit: fills the caches, not counted
                    contexts[side] = browser.new_context(viewport={"width": 1600, "height": 1000})
                    timed_load(contexts[side], url, sel)
                order = list(targets)
                for round_ in range(args.rounds):
                    if time.perf_counter() - started > args.budget_s:
                        print(f"budget reached after {round_} rounds")
                        break
                    for side in order[round_ % 3 :] + order[: round_ % 3]:
                        loads[side].append(timed_load(contexts[side], *targets[side]))
                    print(
                        f"round {round_ + 1}: "
                        + ", ".join(f"{s} {loads[s][-1]['wall_s']:.2f} s" for s in targets)
                        + f"  (load {load_average()})"
                    )
                browser.close()
        finally:
            for server in servers:
                server.terminate()
                server.wait(timeout=30)
    floor = [row["wall_s"] for row in loads["floor"]]
    report["browser"] = {}
    for side, rows in loads.items():
        wall = [row["wall_s"] for row in rows]
        summary = {
            "warm_s": median(wall),
            "warm_all_s": [round(w, 3) for w in wall],
            "main_thread_s": median([row["main_thread_s"] for row in rows]),
            "js_files": rows[-1]["js_files"] if rows else 0,
            "js_mb": round(rows[-1]["js_bytes"] / 1e6, 2) if rows else 0,
        }
        if side != "floor":
            summary["over_floor_s"] = median([w - f for w, f in zip(wall, floor)])
        report["browser"][side] = summary
        over = f"over floor {summary['over_floor_s']:5.2f} s" if side != "floor" else " " * 20
        print(
            f"{side:7s} warm {summary['warm_s']:5.2f} s ({min(wall):.2f}-{max(wall):.2f})  {over}  "
            f"main thread {summary['main_thread_s']:5.2f} s  js {summary['js_files']} files {summary['js_mb']} MB"
        )
    query = dict(part.split("=", 1) for part in path.split("?", 1)[1].split("&")) if "?" in path else {}
    query = {k: v.replace("+", " ") for k, v in query.items()}
    script: dict[str, list[float]] = {side: [] for side in trees}
    for batch in range(args.script_batches):
        if time.perf_counter() - started > args.budget_s:
            break
        for side in list(trees)[batch % 2 :] + list(trees)[: batch % 2]:
            script[side] += script_times(trees[side], args.out, args.page, query, 5)
    report["script"] = {side: {"median_s": median(t), "all_s": [round(x, 3) for x in t]} for side, t in script.items()}
    for side, times in script.items():
        if times:
            print(f"{side:7s} script alone (AppTest, warm) {median(times):.3f} s ({min(times):.3f}-{max(times):.3f})")
    report["load_end"] = load_average()
    print(f"load average {report['load_end']}")
    (args.out / f"ab-{args.page}.json").write_text(json.dumps(report, indent=2))


def _cpu() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if "model name" in line:
            return line.split(":", 1)[1].strip()
    return ""


if __name__ == "__main__":
    main()
