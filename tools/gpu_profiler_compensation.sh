#!/usr/bin/env bash
# Issue 22 (profiler compensation, i22-comp) on one CUDA GPU, in one call bounded by --budget-s (default 420 s):
#   1. `harness calibrate --profiler` with the `block` shape (a small eager decoder block: the program scale)
#      into OUT/calibration/profiler_calibration_c.toml (+ _raw.json, .log): calibration C, a run of its own,
#      to compensate the 2026-12-07 corpus recordings with (the Done-when wants the calibration from a
#      different run than the recordings);
#   2. with the time left: the decoder family recorded again, each program 3 times per mode in its fresh
#      process (tools/corpus_gpu_run.py --repeat 3; sync jobs first, then nosync / cudaonly while the budget
#      allows), with its unprofiled truth: OUT/corpus (manifest, recordings/*.json.gz, logs): the
#      recording-to-recording spread and a second corpus run to check calibration C against.
# Usage (from anywhere; runs in the repository root):
#   tools/gpu_profiler_compensation.sh [--budget-s S] OUT
# Needs torch with CUDA and the harness's dependencies (simpy, pydantic, tomli-w) importable by python3.
set -uo pipefail
budget=420
while [[ $# -gt 0 && $1 == --* ]]; do
  case $1 in
    --budget-s) budget=${2:?--budget-s needs a value}; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
out=${1:?usage: tools/gpu_profiler_compensation.sh [--budget-s S] OUT}
[[ $budget =~ ^[0-9]+$ && $budget -ge 150 ]] || { echo "--budget-s must be a whole number of seconds >= 150" >&2; exit 2; }
[[ -e $out/calibration ]] && { echo "$out/calibration already exists (never overwritten)" >&2; exit 2; }
mkdir -p "$out/calibration" && out=$(cd "$out" && pwd) || exit 2
cd "$(dirname "$0")/.." || exit 2
start=$SECONDS
left() { echo $((budget - (SECONDS - start))); }
python3 -c "import torch, simpy, pydantic, tomli_w, harness; assert torch.cuda.is_available()" \
  || { echo "cannot run here (above: what is missing; carried wheels: export PYTHONPATH=...)"; exit 2; }

# 1. calibration C: ~45% of the budget (a round of three fresh processes takes ~20 s on an H100)
cal_s=$(( budget * 45 / 100 ))
timeout $(( cal_s + 90 )) python3 -m harness calibrate --profiler --name h100-profiler-c --budget-s "$cal_s" \
  --out "$out/calibration/profiler_calibration_c.toml" --raw "$out/calibration/profiler_calibration_c_raw.json" \
  2>&1 | tee "$out/calibration/profiler_calibration_c.log"
echo "calibration: rc ${PIPESTATUS[0]}, $(( SECONDS - start )) s elapsed"

# 2. the decoder family again, 3 recordings per program and mode; stop 20 s before the budget
rest=$(( $(left) - 20 ))
if (( rest > 60 )); then
  timeout "$rest" python3 tools/corpus_gpu_run.py --out "$out/corpus" --repeat 3 --budget-s $(( rest - 45 )) \
    --job-timeout-s $(( rest - 5 )) \
    --only decode_host decode_mid decode_gpu decode_host_nosync decode_mid_nosync decode_host_cudaonly \
           decode_mid_cudaonly decode_gpu_nosync decode_gpu_cudaonly 2>&1 | tail -80
  echo "corpus: rc ${PIPESTATUS[0]}, $(( SECONDS - start )) s elapsed"
else
  echo "corpus: skipped, ${rest} s left"
fi
ls -la "$out" "$out/calibration"
