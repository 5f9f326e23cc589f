#!/usr/bin/env bash
# The native executor's GPU check, in one device command (TOTAL_S, default 300 s, at most): build, the host jitter
# probe (how often and how long each CPU is taken from a spinning thread), the launch probe (every launch API x
# thread placement x gap 0/5/10/15 µs), every bundled recorded spec natively + interpreted + simulated
# (3 repetitions), the GPU tests, and a two-thread two-stream program recorded and replayed; a pass/fail table last.
# Every stage is bounded and guarded: a stage that fails is reported and the next one runs.
# Everything goes under OUT (first argument, else $OUT, else measurements/<date>_native-check); the table is last.
#
#   python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl; export PYTHONPATH=/tmp/site:$PWD
#   bash tools/gpu_native_check.sh "$OUT"
set -u
OUT="${1:-${OUT:-measurements/$(date -u +%Y-%m-%d)_native-check}}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
PY="${PYTHON:-python3}"
if [ -d .whl ] && ! "$PY" -c "import simpy, pydantic, tomli_w" 2>/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && export PYTHONPATH="/tmp/site:$PWD:${PYTHONPATH:-}"
fi
export PYTHONPATH="${PYTHONPATH:-$PWD}"
export HARNESS_NATIVE_CACHE="${HARNESS_NATIVE_CACHE:-$OUT/native-cache}"
SUMMARY="$OUT/summary.txt"
: > "$SUMMARY"
START=$(date +%s)
TOTAL_S="${TOTAL_S:-300}"  # the whole check stays under this: a stage gets what is left, none starts with < 20 s

# shellcheck source=tools/stages.sh
source "$(dirname "$0")/stages.sh"  # stage NAME SECONDS COMMAND...

{ nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv; "$PY" -c "import torch; print(torch.__version__, torch.version.cuda)"; nvcc --version | tail -2; git rev-parse HEAD; } > "$OUT/machine.txt" 2>&1
cat "$OUT/machine.txt"

{ cat /sys/devices/system/clocksource/clocksource0/current_clocksource; nproc; grep -m1 "model name" /proc/cpuinfo;
  cat /proc/cmdline; ulimit -r; } >> "$OUT/machine.txt" 2>&1
stage build 90 "$PY" -c "from replay.native.build import build; print(build('cuda', verbose=True), build('fake'))"
stage jitter 25 "$PY" -m replay.native.jitter --out "$OUT/jitter" --seconds 0.2 --budget-s 12
AUTO_CPUS=$("$PY" -c "from replay.native.library import placement_cpus as p; print(*p()[:2])" 2>/dev/null)
stage jitter_cuda 25 "$PY" -m replay.native.jitter --out "$OUT/jitter_cuda" --seconds 1 --budget-s 6 --with-cuda \
    ${AUTO_CPUS:+--cpus $AUTO_CPUS}
stage jitter_busy 20 "$PY" -m replay.native.jitter --out "$OUT/jitter_busy" --seconds 1 --budget-s 6 --spin busy \
    ${AUTO_CPUS:+--cpus $AUTO_CPUS}
stage probe 60 "$PY" -m replay.native.probe --out "$OUT/probe" --gaps-us 0 5 10 15 --launch-apis packed driver runtime \
    --placements auto off fifo pause --budget-s 45
stage recorded_specs 120 "$PY" tools/native_fidelity.py --out "$OUT/fidelity" --reps 3 --budget-s 95 --save-ops graph
stage gpu_tests 70 "$PY" -m pytest -q -p no:cacheprovider -s tests/test_native_gpu.py tests/test_native_executor.py \
    tests/test_native_host.py tests/test_native_mode.py \
    "tests/test_replay_gpu.py::test_kernel_shorter_than_the_gpu_runs_is_lifted_to_its_floor_and_counted"
stage two_threads_record 45 "$PY" tools/record_two_threads.py "$OUT/two_threads" --reps 3
if [ -f "$OUT/two_threads/recorded_two_threads.toml" ]; then
    stage two_threads_replay 40 "$PY" tools/native_fidelity.py --out "$OUT/two_threads/fidelity" --reps 3 \
        --budget-s 25 --spec "$OUT/two_threads/recorded_two_threads.toml"
fi
# The graph specs again with their graphs tuned launched alone (launch return to idle) instead of back to back
stage graphs_tuned_alone 45 env HARNESS_NATIVE_GRAPH_TUNE=alone "$PY" tools/native_fidelity.py \
    --out "$OUT/fidelity_graphs_alone" --reps 3 --budget-s 30 --backends sim native --save-ops graph \
    --spec traces/specs/recorded_decode_graph.toml traces/specs/recorded_decode_graph_nosync.toml

{
    echo
    echo "== native check on $(head -2 "$OUT/machine.txt" | tail -1) in $(( $(date +%s) - START ))s; stages:"
    cat "$SUMMARY"
    echo
    echo "== host jitter: gaps while a thread spins on each CPU (then on the first auto CPUs with a CUDA context open)"
    tail -n 20 "$OUT/jitter.log" 2>/dev/null
    tail -n 3 "$OUT/jitter_cuda.log" 2>/dev/null
    tail -n 3 "$OUT/jitter_busy.log" 2>/dev/null
    echo
    echo "== launch probe (targets: launch median <= 3 us; lateness median <= 1 us, p99 <= 3 us)"
    grep -E "^ +(api|packed|driver|runtime) |probe:" "$OUT/probe.log" 2>/dev/null
    echo
    echo "== recorded specs: span vs recording and vs simulation (targets: native within 5% and 3%)"
    cat "$OUT/fidelity/fidelity.txt" 2>/dev/null || echo "(no table: see $OUT/recorded_specs.log)"
    echo
    echo "== two host threads, two streams (target: native within 5% of the recording)"
    cat "$OUT/two_threads/fidelity/fidelity.txt" 2>/dev/null || echo "(no table: see $OUT/two_threads_*.log)"
    echo
    echo "== graph specs, graphs tuned launched alone (HARNESS_NATIVE_GRAPH_TUNE=alone)"
    cat "$OUT/fidelity_graphs_alone/fidelity.txt" 2>/dev/null || echo "(no table: see $OUT/graphs_tuned_alone.log)"
    echo
    "$PY" tools/native_check_table.py "$OUT"
} | tee "$OUT/table.txt"
