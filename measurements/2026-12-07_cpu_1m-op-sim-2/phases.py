"""Where one `harness sim` process spends its CPU and memory: each phase's CPU seconds, the peak RSS so far and the
RSS after it (the phases' functions wrapped with timers; the figures are one process's, under the box's load).
From the repository root (PYTHONPATH=. so that this tree's code is imported, not the editable install's):
    PYTHONPATH=. /work/venv/bin/python measurements/2026-12-07_cpu_1m-op-sim-2/phases.py SPEC.toml OUT_DIR
"""
import sys, time, resource, functools, importlib
t0 = time.process_time()
import harness.cli  # noqa
from harness.__main__ import main
t_imp = time.process_time() - t0
marks = []
def wrap(modname, attr):
    mod = importlib.import_module(modname)
    owner = mod
    parts = attr.split(".")
    for p in parts[:-1]:
        owner = getattr(owner, p)
    fn = getattr(owner, parts[-1])
    @functools.wraps(fn)
    def w(*a, **k):
        s = time.process_time()
        try:
            return fn(*a, **k)
        finally:
            marks.append((f"{modname}.{attr}", time.process_time() - s, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss/1024, int(open("/proc/self/statm").read().split()[1])*4096/2**20))
    setattr(owner, parts[-1], w)
    return w
for m, a in [("harness.trace","load_trace"),("workloads.recorded.program","build_program"),
             ("workloads.recorded.steps","step_program"),("sim.program","run_on_timeline"),
             ("harness.backend","ops_frame"),("harness.results","to_table"),("harness.runner","assemble"),("workloads.recorded.metrics","metrics"),
             ("harness.results","write_results"),("harness.cli.run","print_summary"),("harness.runner","prepare_spec"),("harness.runner","execute_run"),("harness.runner","run_spec")]:
    wrap(m, a)
# the callers that imported these functions by name get the wrapped ones
import workloads.recorded.inputs as wi, harness.cli.run as cr, harness.runner as rr, sim.timeline as st, workloads.recorded.policies as wp
import harness.trace, workloads.recorded.program, harness.results, harness.backend, sim.program, workloads.recorded.steps
for mod in [wi, cr, rr, st, wp, sys.modules['workloads.recorded']]:
    for name in ["load_trace","build_program","write_results","ops_frame","run_on_timeline","step_program","print_summary","prepare_spec","execute_run","run_spec","to_table","assemble"]:
        for src in [harness.trace, workloads.recorded.program, harness.results, harness.backend, sim.program, workloads.recorded.steps, cr, rr]:
            if hasattr(mod, name) and hasattr(src, name) and mod is not src:
                setattr(mod, name, getattr(src, name))
sys.argv = ["harness", "sim", sys.argv[1], "--out", sys.argv[2]]
try:
    main()
except SystemExit:
    pass
print(f"imports {t_imp:.2f}", file=sys.stderr)
for n, t, r, c in marks:
    print(f"{n:45s} {t:6.2f} s  maxrss {r:.0f} MB  rss after {c:.0f} MB", file=sys.stderr)
print(f"total cpu {time.process_time():.2f}", file=sys.stderr)
