#!/usr/bin/env bash
# Recorded programs end to end, in one call on a CUDA GPU: record the plain PyTorch programs of
# tools/record_programs.py with torch.profiler (and time them unprofiled), import each recording
# (`harness trace import`) into OUT/recorded/, then run the fidelity benchmark (calibrate,
# simulate and replay as_recorded, compare, report) over the recorded specs, which read their
# traces from OUT/recorded/ (their `trace = "../recorded/..."` resolves from OUT/specs/).
# OUT ends as one archive, OUT.tar.gz, as the lent machines bring back few files.
#
# Usage (from the repository root): fidelity/run_recorded.sh OUT [run_benchmark options]
set -uo pipefail
out=${1:?usage: fidelity/run_recorded.sh OUT [--profile BUNDLED] [--name NAME]}
shift
mkdir -p "$out/recorded"
python3 tools/record_programs.py "$out/recorded" 2>&1 | tee "$out/record.log"
for trace in "$out"/recorded/*.json.gz; do
  python3 -m harness trace import "$trace" --out "${trace%.json.gz}.parquet" 2>&1 | tee -a "$out/import.log"
done
fidelity/run_benchmark.sh "$@" "$out" traces/specs/recorded_*.toml
tar -czf "$out.tar.gz" -C "$(dirname "$out")" "$(basename "$out")"
