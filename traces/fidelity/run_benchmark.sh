#!/usr/bin/env bash
# The whole sim-vs-replay fidelity benchmark (issue 3) in one call, on a CUDA GPU:
# calibrate the profile, simulate and replay every traces/specs/fidelity_*.toml,
# compare, write the markdown report, run the GPU tests.
# Usage (from the repository root): traces/fidelity/run_benchmark.sh OUT_DIR [--skip-calibrate]
set -euo pipefail
out=${1:?usage: run_benchmark.sh OUT_DIR [--skip-calibrate]}
skip_calibrate=${2:-}
profile=h100-sxm-pcie5-measured
export PYTHONUNBUFFERED=1
mkdir -p "$out/results"
h() { python3 -m harness "$@"; }
if [[ "$skip_calibrate" != "--skip-calibrate" ]]; then
  h calibrate --name "$profile" --force \
    --notes "Replaces the figures quoted in issue 2 (kept in h100-sxm-pcie5.toml) with ones measured by harness calibrate." \
    2>&1 | tee "$out/calibrate.log"
fi
cp "traces/profiles/$profile.toml" "$out/profile.toml"
for spec in traces/specs/fidelity_*.toml; do
  n=$(basename "$spec" .toml)
  h sim "$spec" --out "$out/results/$n-sim" 2>&1 | tee -a "$out/runs.log"
  h replay "$spec" --out "$out/results/$n-replay" 2>&1 | tee -a "$out/runs.log"
done
h compare "$out"/results/* --out "$out/fidelity.parquet" --show makespan_us --show makespan_over_overlap_bound 2>&1 | tee "$out/compare.log"
python3 -m replay.report "$out" --command "traces/fidelity/run_benchmark.sh $*"
python3 -m pytest -m gpu -v -p no:cacheprovider tests/test_replay_gpu.py 2>&1 | tee "$out/gpu_tests.log" || true
python3 traces/fidelity/probe_clock_drift.py 2>&1 | tee "$out/probe_clock_drift.log" || true
