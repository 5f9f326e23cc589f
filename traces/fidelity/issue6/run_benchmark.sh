#!/usr/bin/env bash
# Sim-vs-replay fidelity of the issue-6 workloads (kv_backup, offload_coordinator,
# pipeline_forwarding) on one CUDA GPU, in one call: calibrate a profile on this
# machine into OUT_DIR/profile.toml (the bundled profiles are left alone), simulate
# with it and replay each spec (default: the three one-GPU specs), compare, write the
# report (OUT_DIR/fidelity.md), run the workloads' GPU tests.
# Usage (from the repository root): traces/fidelity/issue6/run_benchmark.sh OUT_DIR [SPEC...]
# (two-GPU machine: ... OUT_DIR traces/specs/kv_backup_tp2_fidelity.toml traces/specs/pipeline_2gpu_fidelity.toml)
set -uo pipefail
out=${1:?usage: run_benchmark.sh OUT_DIR [SPEC...]}
shift
specs=("$@")
if [[ ${#specs[@]} -eq 0 ]]; then
  specs=(traces/specs/kv_backup_fidelity.toml traces/specs/offload_fidelity.toml traces/specs/pipeline_fidelity.toml)
fi
export PYTHONUNBUFFERED=1
mkdir -p "$out/results" "$out/specs"
out=$(cd "$out" && pwd)
h() { python3 -m harness "$@"; }
h calibrate --name h100-issue6-measured --out "$out/profile.toml" --force \
  --notes "Measured for the issue-6 fidelity benchmark (traces/fidelity/issue6) in the same call as its runs." \
  2>&1 | tee "$out/calibrate.log" || { echo "calibration failed"; exit 1; }
for spec in "${specs[@]}"; do
  n=$(basename "$spec" .toml)
  # The same spec, pointed at this call's profile (only the profile line differs).
  sed "s|^profile = .*|profile = \"$out/profile.toml\"|" "$spec" > "$out/specs/$n.toml"
  h sim "$out/specs/$n.toml" --out "$out/results/$n-sim" 2>&1 | tee -a "$out/sim.log" || echo "sim of $n failed" | tee -a "$out/sim.log"
  h replay "$out/specs/$n.toml" --out "$out/results/$n-replay" 2>&1 | tee -a "$out/runs.log" || echo "replay of $n failed" | tee -a "$out/runs.log"
done
h compare "$out"/results/* --out "$out/fidelity.parquet" --show tpot_us --show throughput_mibps --show gpu_share 2>&1 | tee "$out/compare.log"
python3 -m replay.report_workloads "$out" --command "traces/fidelity/issue6/run_benchmark.sh $out ${specs[*]}"
python3 -m pytest -m gpu -v -p no:cacheprovider tests/test_replay_gpu_workloads.py 2>&1 | tee "$out/gpu_tests.log" || true
