#!/usr/bin/env bash
# Issue 22 point 4 on one CUDA GPU, in one call bounded by --budget-s (default 420 s):
#   1. fidelity/run_benchmark.sh --link-probes --no-extras: `harness calibrate` (copies timed as runs
#      issue them, link drift probes) into OUT/profile.toml; the five layer-streaming fidelity specs
#      simulated and replayed against it, the host link probed before and after each replay
#      (OUT/link_probes.csv); compare and report (OUT/fidelity.md: each error next to its noise);
#   2. if time is left: the link re-timed the old (isolated) way into OUT/profile-isolated.toml, a candidate
#      OUT/profile-idle.toml whose pinned copies count what an idle-stream issue adds (no GPU), and the specs
#      simulated under each profile against the same replay runs (OUT/copy_ab.md);
#   3. (no GPU) every spec simulated again at the host costs its replay paid (OUT/paid_host.md,
#      tools/paid_host_costs.py): how much of each error is the replay's host time;
#   4. if 100 s or more are left: tools/probe_host_costs.py into OUT/host_probe (what the replay's host cost per
#      command depends on: copy size, kernel length, the process), given what is left but 20 s;
#   5. prints the bounds' verdicts (median |error| <= 2%, worst <= 5%) and, with --tar, packs OUT.
#
# Usage (from anywhere; runs in the repository root):
#   tools/gpu_layer_fidelity.sh [--budget-s S] [--tar FILE.tar.gz] OUT
# Needs torch with CUDA, CuPy, and the harness's dependencies (simpy, pydantic, tomli-w) importable by python3.
set -uo pipefail
budget=420
tarball=
while [[ $# -gt 0 && $1 == --* ]]; do
  case $1 in
    --budget-s) budget=${2:?--budget-s needs a value}; shift 2 ;;
    --tar) tarball=${2:?--tar needs a file}; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
out=${1:?usage: tools/gpu_layer_fidelity.sh [--budget-s S] [--tar FILE.tar.gz] OUT}
[[ $budget =~ ^[0-9]+$ && $budget -ge 120 ]] || { echo "--budget-s must be a whole number of seconds >= 120" >&2; exit 2; }
[[ -e $out ]] && { echo "$out already exists (a benchmark folder is never overwritten)" >&2; exit 2; }
[[ -z $tarball || ! -e $tarball ]] || { echo "$tarball already exists" >&2; exit 2; }
[[ -z $tarball ]] || tarball=$(cd "$(dirname "$tarball")" && pwd)/$(basename "$tarball") || exit 2
mkdir -p "$(dirname "$out")" && out=$(cd "$(dirname "$out")" && pwd)/$(basename "$out") || exit 2
cd "$(dirname "$0")/.." || exit 2
start=$SECONDS
left() { echo $((budget - (SECONDS - start))); }

python3 - <<'EOF' || { echo "cannot run the benchmark here (above: what is missing; carried wheels: export PYTHONPATH=...)"; exit 2; }
import importlib, sys
missing = [m for m in ("simpy", "pydantic", "tomli_w", "torch", "cupy", "harness") if importlib.util.find_spec(m) is None]
if missing:
    sys.exit(f"cannot import: {', '.join(missing)}")
import torch
if not torch.cuda.is_available():
    sys.exit("torch sees no CUDA GPU")
print(f"torch {torch.__version__} on {torch.cuda.get_device_name(0)}")
EOF
mkdir "$out" || exit 2
pack() {
  [[ -n $tarball ]] && tar czf "$tarball" -C "$(dirname "$out")" "$(basename "$out")" && echo "packed $tarball"
}
trap pack EXIT

# 1. the benchmark, leaving 70 s for the comparison and the verdicts.
timeout --signal=TERM --kill-after=10 $(( $(left) - 70 )) \
  fidelity/run_benchmark.sh --name layer-fidelity-measured --link-probes --no-extras "$out" traces/specs/fidelity_*.toml
status=$?
[[ $status -eq 0 ]] || echo "benchmark exited with $status (124: stopped at its time limit); what it wrote is kept"

# 2. the old way of timing copies, against the same replay runs (skipped when short of time).
if [[ -f $out/profile.toml && -f $out/fidelity.parquet && $(left) -gt 50 ]]; then
  timeout --kill-after=5 $(( $(left) - 25 )) python3 tools/calibrate_copies.py --method isolated \
    --base "$out/profile.toml" --out "$out/profile-isolated.toml" 2>&1 | tee "$out/calibrate_isolated.log"
  # A candidate model: pinned samples that count an idle-stream issue beyond copy_launch_us (no GPU).
  python3 tools/calibrate_copies.py --method idle-adjusted --base "$out/profile.toml" \
    --out "$out/profile-idle.toml" 2>&1 | tee -a "$out/calibrate_isolated.log"
  profiles=("$out/profile.toml")
  for p in "$out/profile-isolated.toml" "$out/profile-idle.toml"; do [[ -f $p ]] && profiles+=("$p"); done
  if [[ ${#profiles[@]} -gt 1 && $(left) -gt 20 ]]; then
    timeout --kill-after=5 $(( $(left) - 10 )) python3 tools/copy_calibration_ab.py "$out" "${profiles[@]}" \
      2>&1 | tee "$out/copy_ab.log"
  fi
else
  echo "skipped the isolated-copies comparison ($(left) s left)"
fi

# 3. how much of each error is the replay's host time (no GPU).
if [[ -f $out/profile.toml && -d $out/specs ]]; then
  python3 tools/paid_host_costs.py "$out" --md "$out/paid_host.md" > "$out/paid_host.log" 2>&1 \
    || echo "paid_host_costs failed: see $out/paid_host.log"
fi

# 4. what the replay's host cost per command depends on, with the time left.
if [[ $(left) -ge 100 ]]; then
  timeout --kill-after=10 $(( $(left) - 15 )) python3 tools/probe_host_costs.py --out "$out/host_probe" \
    --budget-s $(( $(left) - 25 )) --processes 3 --pin 2>&1 | tee "$out/host_probe.log"
else
  echo "skipped the host-cost probe ($(left) s left)"
fi

# 5. the verdicts.
echo "== layer-streaming fidelity ($(( SECONDS - start )) s) =="
if [[ -f $out/fidelity.md ]]; then
  grep -E "host link drift|link probes around|makespan_us(,|:)" "$out/fidelity.md"
else
  echo "no report: see $out/benchmark_call.log"
fi
[[ -f $out/copy_ab.md ]] && grep -E "^- " "$out/copy_ab.md"
[[ -f $out/paid_host.md ]] && grep -E "^- " "$out/paid_host.md"
exit 0
