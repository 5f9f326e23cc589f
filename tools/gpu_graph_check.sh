#!/usr/bin/env bash
# Issue 23's graph recordings after the s3-graph fixes, in one device command (TOTAL_S, default 300 s, at most):
# build, tools/graph_diag.py (decode_graph sync/nosync natively and simulated, the tuned graphs against their
# targets, per-kernel stamps in the replay), every bundled recorded spec natively + simulated (3 repetitions: the
# eager ones must not move much), the graph specs again with each fix undone (HARNESS_NATIVE_START=lead: the
# set-up counted; HARNESS_NATIVE_GRAPH_TUNE=back_to_back: graphs tuned back to back), the native GPU tests.
# Everything under OUT (first argument, else $OUT, else measurements/<date>_graph-check); summary.txt last.
#
#   python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl; export PYTHONPATH=/tmp/site:$PWD
#   bash tools/gpu_graph_check.sh "$OUT"
set -u
OUT="${1:-${OUT:-measurements/$(date -u +%Y-%m-%d)_graph-check}}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
PY="${PYTHON:-python3}"
export PYTHONPATH="${PYTHONPATH:-$PWD}"
export HARNESS_NATIVE_CACHE="${HARNESS_NATIVE_CACHE:-$OUT/native-cache}"
SUMMARY="$OUT/summary.txt"
: > "$SUMMARY"
START=$(date +%s)
TOTAL_S="${TOTAL_S:-300}"

STAGE_TAIL=30
# shellcheck source=tools/stages.sh
source "$(dirname "$0")/stages.sh"  # stage NAME SECONDS COMMAND...

{ nvidia-smi --query-gpu=name,driver_version --format=csv; git rev-parse HEAD; } > "$OUT/machine.txt" 2>&1
cat "$OUT/machine.txt"
GRAPHS="traces/specs/recorded_decode_graph.toml traces/specs/recorded_decode_graph_nosync.toml"
stage build 90 "$PY" -c "from replay.native.build import build; print(build('cuda', verbose=True))"
stage graph_diag 90 "$PY" tools/graph_diag.py --out "$OUT/graph_diag" --budget-s 70
stage report 30 "$PY" tools/graph_diag_report.py "$OUT/graph_diag"
stage recorded_specs 120 "$PY" tools/native_fidelity.py --out "$OUT/fidelity" --reps 3 --budget-s 95 \
    --backends sim native
stage start_lead 40 env HARNESS_NATIVE_START=lead "$PY" tools/native_fidelity.py --out "$OUT/fidelity_start_lead" \
    --reps 3 --budget-s 25 --backends sim native --spec $GRAPHS
stage tune_back_to_back 40 env HARNESS_NATIVE_GRAPH_TUNE=back_to_back "$PY" tools/native_fidelity.py \
    --out "$OUT/fidelity_tune_b2b" --reps 3 --budget-s 25 --backends sim native --spec $GRAPHS
# where the executor's set-up goes, and whether it is the pinned threads' CPUs waking up (unpinned: none moves)
stage graph_diag_unpinned 40 env HARNESS_NATIVE_CPUS=off "$PY" tools/graph_diag.py --out "$OUT/graph_diag_unpinned" \
    --budget-s 20
stage gpu_tests 70 "$PY" -m pytest -q -p no:cacheprovider -s tests/test_native_gpu.py
rm -rf "$OUT/native-cache"
{
    echo
    echo "== graph check on $(head -2 "$OUT/machine.txt" | tail -1) in $(( $(date +%s) - START ))s; stages:"
    cat "$SUMMARY"
    echo
    echo "== every recorded spec, native vs simulation (targets: within 5% of the recording, 3% of the simulation)"
    cat "$OUT/fidelity/fidelity.txt" 2>/dev/null
    echo
    echo "== graph specs, program start after the set-up (HARNESS_NATIVE_START=lead: the fix undone)"
    cat "$OUT/fidelity_start_lead/fidelity.txt" 2>/dev/null
    echo
    echo "== graph specs, graphs tuned back to back (HARNESS_NATIVE_GRAPH_TUNE=back_to_back: the fix undone)"
    cat "$OUT/fidelity_tune_b2b/fidelity.txt" 2>/dev/null
    echo
    echo "== the decode_graph steps, native - sim (graph_diag_report), and where each run's program started"
    grep -A12 "native - sim" "$OUT/report.log" 2>/dev/null
    grep -A11 "the run's origin to its first row" "$OUT/report.log" 2>/dev/null
    grep "tuned_alone" -A6 "$OUT/graph_diag/diag.log" 2>/dev/null
    grep -A1 "first step due" "$OUT/graph_diag/diag.log" 2>/dev/null
    echo "-- the same, threads unpinned (HARNESS_NATIVE_CPUS=off):"
    grep -A1 "first step due" "$OUT/graph_diag_unpinned/diag.log" 2>/dev/null
    grep -A9 "makespan_us" "$OUT/graph_diag_unpinned/diag.log" 2>/dev/null
} | tee "$OUT/table.txt"
