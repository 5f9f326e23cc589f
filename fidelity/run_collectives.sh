#!/usr/bin/env bash
# Issue 26's GPU runs in one call, on a machine of 2 to 8 GPUs; everything under OUT, bounded by --budget-s:
#   1. harness calibrate --collectives: NCCL collectives by size (1 KiB..1 GiB) and GPU count (2, 4, 8 as the
#      machine allows) into OUT/profile.toml (a copy of the base profile with [[collectives]] and [topology]);
#   2. the collective sweep (traces/specs/collective_sweep_<n>gpu.toml) and tensor-parallel decode
#      (traces/specs/tensor_parallel_tp<n>.toml) at every n the machine has: simulated with OUT/profile.toml
#      and replayed by the multi-GPU replay (harness replay --distributed);
#   3. a plain tensor-parallel PyTorch program recorded on the largest n, one trace per rank
#      (tools/record_tp_program.py) with its unprofiled and profiled spans, imported
#      (harness trace import rank0 ... rankN) and, as a recorded spec of n devices (OUT/specs/tp_recorded.toml:
#      as_recorded and the overlap_collectives what-if): simulated (OUT/results/tp_recorded-sim), written as
#      the recording's own run (OUT/results/tp_recorded-recording) and replayed by the multi-GPU replay
#      (OUT/results/tp_recorded-replay); OUT/tp_recording/as_recorded.json holds the issue's third bar:
#      as_recorded's simulated span against the recorded span (within 3%);
#   4. harness compare of every sim/replay pair into OUT/fidelity.parquet and OUT/fidelity.md.
#
# Usage (from the repository root):
#   fidelity/run_collectives.sh OUT [--budget-s 1500] [--base BUNDLED_PROFILE]
#     --base   the single-GPU profile the collectives are added to (default: this GPU's default profile,
#              h100-sxm-pcie5-measured on an H100, h200-measured on an H200)
# Each step runs under `timeout` with what is left of the budget; a step cut short is said so in OUT/call.log.
set -uo pipefail
out=${1:?usage: fidelity/run_collectives.sh OUT [--budget-s SECONDS] [--base BUNDLED_PROFILE]}
shift
budget=1500
base=
while [[ $# -gt 0 ]]; do
  case $1 in
    --budget-s) budget=${2:?}; shift 2 ;;
    --base) base=${2:?}; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
mkdir -p "$out/results" "$out/specs" "$out/tp_recording"
out=$(cd "$out" && pwd)
exec > >(tee -a "$out/call.log") 2>&1
export PYTHONUNBUFFERED=1 NCCL_DEBUG=${NCCL_DEBUG:-WARN}
start=$(date +%s)
left() { echo $(( budget - ($(date +%s) - start) )); }
step() {  # step SECONDS_CAP command...: runs under timeout min(cap, what is left); says when cut short
  local cap=$1; shift
  [[ $1 == h ]] && set -- python3 -m harness "${@:2}"  # timeout runs programs, not this script's functions
  local t; t=$(left); (( t > cap )) && t=$cap
  (( t <= 10 )) && { echo "SKIPPED (budget spent): $*"; return 1; }
  timeout --kill-after=20 "$t" "$@"; local rc=$?
  (( rc == 124 || rc == 137 )) && echo "CUT SHORT after ${t}s: $*"
  return $rc
}
h() { python3 -m harness "$@"; }

date -u
nvidia-smi > "$out/nvidia_smi.txt" 2>&1 || true
nvidia-smi topo -m > "$out/nvidia_smi_topo.txt" 2>&1 || true
gpus=$(python3 -c "import torch; print(torch.cuda.device_count())")
echo "GPUs: $gpus"
(( gpus >= 2 )) || { echo "this machine has $gpus GPU(s): issue 26's runs need 2 to 8"; exit 2; }
if [[ -z $base ]]; then
  base=$(python3 -c "
import torch
from harness.profile import gpu_defaults
name = torch.cuda.get_device_name(0)
print(next((d.profile for d in gpu_defaults().values() if d.gpu_name == name), 'h100-sxm-pcie5-measured'))")
fi
interconnect=nvlink
grep -q 'NV[0-9]' "$out/nvidia_smi_topo.txt" || interconnect=pcie
echo "base profile: $base; interconnect: $interconnect; budget ${budget}s"

# 1. the collectives into the profile
step 600 h calibrate --collectives --name collectives-measured --base-profile "$base" --out "$out/profile.toml" \
  --force --interconnect "$interconnect" --budget-s $(( $(left) / 3 < 480 ? $(left) / 3 : 480 )) \
  || { echo "collective calibration failed"; exit 1; }

# 2. sweep and TP decode at every GPU count the machine has: sim and replay
counts=()
for n in 2 4 8; do (( n <= gpus )) && counts+=("$n"); done
for n in "${counts[@]}"; do
  for spec in traces/specs/collective_sweep_${n}gpu.toml traces/specs/tensor_parallel_tp${n}.toml; do
    name=$(basename "$spec" .toml)
    python3 -m fidelity.respec "$spec" "$out/profile.toml" "$out/specs/$name.toml" || exit 1
    step 120 h sim "$out/specs/$name.toml" --out "$out/results/$name-sim" || echo "sim of $name failed"
    step 900 h replay --distributed --budget-s $(( $(left) / 2 )) "$out/specs/$name.toml" \
      --out "$out/results/$name-replay" || echo "replay of $name failed"
  done
done

# 3. a recorded TP program (plain PyTorch, one trace per rank), imported into one trace
n=${counts[-1]}
if step 300 python3 tools/record_tp_program.py "$out/tp_recording" --gpus "$n"; then
  ranks=()
  for ((r = 0; r < n; r++)); do ranks+=("$out/tp_recording/rank$r.json.gz"); done
  if h trace import "${ranks[@]}" --out "$out/tp_recording/tp.parquet"; then
    spec=$out/specs/tp_recorded.toml
    cat > "$spec" <<EOF
name = "tp-recorded"
description = "a tensor-parallel PyTorch program recorded on $n GPUs (one trace per rank), as recorded"
profile = "$out/profile.toml"
seed = 0
repetitions = 3

[workload]
kind = "recorded"
trace = "$out/tp_recording/tp.parquet"
devices = $n

[[policies]]
name = "as_recorded"

[[policies]]
name = "overlap_collectives"
EOF
    step 300 h sim "$spec" --out "$out/results/tp_recorded-sim" || echo "sim of the TP recording failed"
    step 120 h trace as-run "$spec" --out "$out/results/tp_recorded-recording" || echo "as-run of the TP recording failed"
    step 600 h replay --distributed --budget-s $(( $(left) / 2 )) "$spec" --out "$out/results/tp_recorded-replay" \
      || echo "replay of the TP recording failed"
    python3 - "$out" <<'PY' || echo "the as-recorded check could not be read"
import json, sys
from pathlib import Path
import pandas as pd
out = Path(sys.argv[1])
m = pd.read_parquet(out / "results/tp_recorded-sim/metrics.parquet")
m = m[(m["item"] == -1) & m["run_id"].str.contains(":as_recorded:")]
figures = m.groupby("metric")["value"].mean()
row = {k: float(figures[k]) for k in ("makespan_us", "recorded_makespan_us", "makespan_vs_recorded") if k in figures}
row["within_3pct"] = bool(abs(row.get("makespan_vs_recorded", float("nan"))) <= 0.03)
(out / "tp_recording/as_recorded.json").write_text(json.dumps(row, indent=1))
print("TP recording as recorded:", row)
PY
  else
    echo "import of the TP recording failed"
  fi
fi

# 4. the comparison
h compare "$out"/results/*-sim "$out"/results/*-replay --out "$out/fidelity.parquet" \
  --show time_us --show busbw_gbps --show tpot_us --show backups_lost --show makespan_us 2>&1 | tee "$out/compare.log"
python3 -m fidelity.report "$out" --command "fidelity/run_collectives.sh $out --budget-s $budget" || true
date -u
