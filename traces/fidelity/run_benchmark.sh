#!/usr/bin/env bash
# The whole sim-vs-replay fidelity benchmark (issue 3) in one call, on a CUDA GPU:
# calibrate a profile on this machine into OUT_DIR/profile.toml, simulate (with that
# profile) and replay every traces/specs/fidelity_*.toml, compare, write the markdown
# report, run the GPU tests. Nothing in the repository is overwritten: to ship the
# profile, copy OUT_DIR/profile.toml to traces/profiles/NAME.toml (and point the GPU's
# alias at it in traces/profiles/gpu-defaults.toml).
# Usage (from the repository root):
#   traces/fidelity/run_benchmark.sh OUT_DIR [NAME] [--skip-calibrate]
# NAME (default h100-sxm-pcie5-measured) names the calibrated profile; with
# --skip-calibrate the bundled traces/profiles/NAME.toml is used instead.
set -euo pipefail
out=${1:?usage: run_benchmark.sh OUT_DIR [NAME] [--skip-calibrate]}
profile=${2:-h100-sxm-pcie5-measured}
skip_calibrate=${3:-}
export PYTHONUNBUFFERED=1
mkdir -p "$out/results" "$out/specs"
out=$(cd "$out" && pwd)
h() { python3 -m harness "$@"; }
if [[ "$skip_calibrate" == "--skip-calibrate" ]]; then
  cp "traces/profiles/$profile.toml" "$out/profile.toml"
else
  h calibrate --name "$profile" --out "$out/profile.toml" --force \
    --notes "Measured by traces/fidelity/run_benchmark.sh in the same call as the fidelity runs." \
    2>&1 | tee "$out/calibrate.log"
fi
for spec in traces/specs/fidelity_*.toml; do
  n=$(basename "$spec" .toml)
  # The same spec, pointed at this call's profile (only the profile line differs).
  sed "s|^profile = .*|profile = \"$out/profile.toml\"|" "$spec" > "$out/specs/$n.toml"
  h sim "$out/specs/$n.toml" --out "$out/results/$n-sim" 2>&1 | tee -a "$out/runs.log"
  h replay "$out/specs/$n.toml" --out "$out/results/$n-replay" 2>&1 | tee -a "$out/runs.log"
done
h compare "$out"/results/* --out "$out/fidelity.parquet" --show makespan_us --show makespan_over_overlap_bound 2>&1 | tee "$out/compare.log"
python3 -m replay.report "$out" --command "traces/fidelity/run_benchmark.sh $*"
python3 -m pytest -m gpu -v -p no:cacheprovider tests/test_replay_gpu.py 2>&1 | tee "$out/gpu_tests.log" || true
python3 traces/fidelity/probe_clock_drift.py 2>&1 | tee "$out/probe_clock_drift.log" || true
