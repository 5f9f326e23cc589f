#!/usr/bin/env bash
# One device call (2026-12-07): the native executor's figures (build, probe, recorded specs), a second profiler
# calibration (issue 22: do two runs agree?), then the layer-streaming fidelity rerun with what time is left.
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl >/dev/null 2>&1
export PYTHONPATH=/tmp/site:$PWD HARNESS_NATIVE_CACHE=/tmp/nc
R=/tmp/b; mkdir -p $R/native $R/cal
{ nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv; python3 -c "import torch;print(torch.__version__)"; nvcc --version | tail -1; } > $R/machine.txt 2>&1; cat $R/machine.txt
pack() { tar czf $OUT/b.tgz -C /tmp b; }
timeout 150 python3 -c "from replay.native.build import build; print(build('cuda', verbose=True))" > $R/native/build.log 2>&1; echo "build rc=$? $SECONDS s"; tail -3 $R/native/build.log
timeout 60 python3 -m replay.native.probe --out $R/native/probe --budget-s 40 > $R/native/probe.log 2>&1; echo "probe rc=$? $SECONDS s"; tail -8 $R/native/probe.log
timeout 170 python3 tools/native_fidelity.py --out $R/native/fidelity --reps 1 --budget-s 130 > $R/native/fidelity.log 2>&1; echo "fidelity rc=$? $SECONDS s"; tail -25 $R/native/fidelity.log
pack
timeout 60 python3 -m pytest -q -p no:cacheprovider -x tests/test_native_gpu.py > $R/native/gpu_tests.log 2>&1; echo "gpu tests rc=$? $SECONDS s"; tail -3 $R/native/gpu_tests.log
timeout 105 python3 -m harness calibrate --profiler --name h100-profiler-b --out $R/cal/profile_b.toml --raw $R/cal/raw_b.json --budget-s 75 > $R/cal/log_b.txt 2>&1; echo "cal rc=$? $SECONDS s"; tail -4 $R/cal/log_b.txt
pack
left=$(( 585 - SECONDS ))
if [ $left -ge 120 ]; then bash tools/gpu_layer_fidelity.sh --budget-s $left $R/layers > $R/layers.log 2>&1; echo "layers rc=$? $SECONDS s"; tail -15 $R/layers.log; else echo "layers skipped: $left s left"; fi
pack
