#!/usr/bin/env bash
# The sim-vs-replay fidelity benchmark in one call, on a CUDA GPU, for any specs:
# calibrate a profile on this machine into OUT/profile.toml (never over a bundled profile),
# simulate (with that profile) and replay each SPEC, compare, write the report
# (OUT/fidelity.md, by each spec's workload's declared checks), run the GPU tests and the
# clock-drift probe. Everything goes under OUT; nothing in the repository is written.
#
# Usage (from the repository root):
#   fidelity/run_benchmark.sh [--name NAME] [--profile BUNDLED] OUT SPEC...
#     --name NAME         name of the calibrated profile (default: fidelity-measured); to ship it,
#                         copy OUT/profile.toml to traces/profiles/NAME.toml
#     --profile BUNDLED   skip calibration and use traces/profiles/BUNDLED.toml (copied into OUT)
#     --link-probes       time the host link's reference copy before and after each spec's replay
#                         (OUT/link_probes.csv, python3 -m replay.link_probe); the report sets each
#                         spec's link drift next to its errors
#     --no-extras         skip the GPU tests and the SM-clock probe after the report
#     GPU_TESTS="..."     test files for the GPU tests (default: both replay GPU test files)
# fidelity/README.md lists the invocations behind each folder of measurements/.
set -uo pipefail
command="fidelity/run_benchmark.sh $*"
name=fidelity-measured
bundled=
probes=
extras=1
while [[ $# -gt 0 && $1 == --* ]]; do
  case $1 in
    --name) name=${2:?--name needs a value}; shift 2 ;;
    --profile) bundled=${2:?--profile needs a value}; shift 2 ;;
    --link-probes) probes=1; shift ;;
    --no-extras) extras=; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
usage="usage: fidelity/run_benchmark.sh [--name NAME] [--profile BUNDLED] [--link-probes] [--no-extras] OUT SPEC..."
out=${1:?$usage}
shift
specs=("$@")
[[ ${#specs[@]} -gt 0 ]] || { echo "$usage" >&2; exit 2; }
for spec in "${specs[@]}"; do
  [[ -f $spec ]] || { echo "no such spec: $spec" >&2; exit 2; }
done
mkdir -p "$out/results" "$out/specs"
out=$(cd "$out" && pwd)
case "$out/" in
  "$(pwd)/traces/profiles/"*) echo "OUT must not be inside traces/profiles/ (bundled profiles are never overwritten)" >&2; exit 2 ;;
esac
exec > >(tee -a "$out/benchmark_call.log") 2>&1  # the whole call's output
export PYTHONUNBUFFERED=1
h() { python3 -m harness "$@"; }

date -u
nvidia-smi > "$out/nvidia_smi.txt" 2>&1 || true
if [[ -n $bundled ]]; then
  cp "traces/profiles/$bundled.toml" "$out/profile.toml" || exit 1
else
  h calibrate --name "$name" --out "$out/profile.toml" --force \
    --notes "Measured by fidelity/run_benchmark.sh in the same call as the fidelity runs." \
    2>&1 | tee "$out/calibrate.log"
  [[ ${PIPESTATUS[0]} -eq 0 ]] || { echo "calibration failed"; exit 1; }
fi

probe() {  # the host link's reference copy, around spec $n's replay; a failed probe is logged, the call goes on
  [[ -n $probes ]] || return 0
  python3 -m replay.link_probe "$out/link_probes.csv" --when "$1" --spec "$out/specs/$n.toml" 2>&1 \
    | tee -a "$out/link_probes.log"
}

for spec in "${specs[@]}"; do
  n=$(basename "$spec" .toml)
  # The same spec, pointed at this call's profile, with its input files (paths relative to its folder) made absolute.
  python3 -m fidelity.respec "$spec" "$out/profile.toml" "$out/specs/$n.toml" || { echo "cannot copy $spec"; exit 1; }
  h sim "$out/specs/$n.toml" --out "$out/results/$n-sim" 2>&1 | tee -a "$out/sim.log"
  [[ ${PIPESTATUS[0]} -eq 0 ]] || echo "sim of $n failed" | tee -a "$out/sim.log"
  probe before
  h replay "$out/specs/$n.toml" --out "$out/results/$n-replay" 2>&1 | tee -a "$out/runs.log"
  [[ ${PIPESTATUS[0]} -eq 0 ]] || echo "replay of $n failed" | tee -a "$out/runs.log"
  probe after
done

# Print the metrics the specs' workloads declare (the table holds every metric).
shows=$(python3 - "${specs[@]}" <<'EOF'
import sys, tomllib
from harness.workload import registry
seen = []
for path in sys.argv[1:]:
    with open(path, "rb") as f:
        kind = tomllib.load(f).get("workload", {}).get("kind", "")
    workload = registry().get(kind)
    for metric in workload.fidelity.shown_metrics if workload else ("makespan_us",):
        if metric not in seen:
            seen.append(metric)
print(" ".join(f"--show {m}" for m in seen))
EOF
)
# shellcheck disable=SC2086  # $shows is a list of options
h compare "$out"/results/* --out "$out/fidelity.parquet" $shows 2>&1 | tee "$out/compare.log"
python3 -m fidelity.report "$out" --command "$command"

[[ -n $extras ]] || { date -u; exit 0; }
read -r -a tests <<< "${GPU_TESTS:-tests/test_replay_gpu.py tests/test_replay_gpu_workloads.py}"
python3 -m pytest -m gpu -v -p no:cacheprovider "${tests[@]}" 2>&1 | tee "$out/gpu_tests.log" || true
python3 tools/probe_clock_drift.py 2>&1 | tee "$out/probe_clock_drift.log" || true
date -u
