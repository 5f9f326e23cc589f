# Bounded stages for the one-command GPU checks (tools/gpu_native_check.sh, tools/gpu_graph_check.sh), sourced by them.
# Needs START (epoch s), TOTAL_S (the whole check's seconds), OUT (the output folder) and SUMMARY (a file) set.
# stage NAME SECONDS COMMAND...: run COMMAND for at most SECONDS (and never past TOTAL_S; none starts with < 20 s
# left), log it to OUT/NAME.log, print its last STAGE_TAIL lines (default 25) and note the outcome in SUMMARY.
stage() {
    local name=$1 limit=$2
    shift 2
    local t0=$(date +%s)
    local left=$(( TOTAL_S - (t0 - START) ))
    if [ "$left" -lt 20 ]; then echo "$name: skipped, the ${TOTAL_S}s are spent" | tee -a "$SUMMARY"; return; fi
    [ "$limit" -gt "$left" ] && limit=$left
    echo "== $name (limit ${limit}s)" | tee -a "$OUT/check.log"
    timeout --kill-after=10 "$limit" "$@" > "$OUT/$name.log" 2>&1
    local rc=$?
    tail -n "${STAGE_TAIL:-25}" "$OUT/$name.log"
    echo "$name: rc=$rc in $(( $(date +%s) - t0 ))s" | tee -a "$SUMMARY"
}
