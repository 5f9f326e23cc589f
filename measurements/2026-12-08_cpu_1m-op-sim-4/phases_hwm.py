"""../2026-12-07_cpu_1m-op-sim-2/phases.py with each phase's own peak: the kernel's peak RSS (VmHWM) is reset
(/proc/self/clear_refs, 5) when a phase begins and read when it ends, so "maxrss" is that phase's peak, not the
process's so far. From the repository root, as the CLI runs (huge pages, see harness/huge_pages.py):
    GLIBC_TUNABLES=glibc.malloc.hugetlb=1 PYTHONPATH=. /work/venv/bin/python \
        measurements/2026-12-08_cpu_1m-op-sim-4/phases_hwm.py SPEC.toml OUT_DIR
(the tunable set beforehand: main() then does not re-run the process, whose CPU clock would count this script's
imports of the whole CLI twice).
"""
import runpy
import sys
from pathlib import Path

source = (Path(__file__).parent.parent / "2026-12-07_cpu_1m-op-sim-2" / "phases.py").read_text()
source = source.replace("s = time.process_time()", 'open("/proc/self/clear_refs", "w").write("5"); s = time.process_time()')
source = source.replace(
    "resource.getrusage(resource.RUSAGE_SELF).ru_maxrss/1024",
    'int([l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1])/1024',
)
assert source.count("clear_refs") == 1 and source.count("VmHWM") == 1
exec(compile(source, "phases.py (per-phase peaks)", "exec"), {"__name__": "__main__"})
