#!/usr/bin/env bash
# bench/service.sh BUILD_DIR: what recycling costs a service under load (DESIGN §9: 0 requests
# lost while recycling). Runs examples/http_service under memvisor (conf/service.ini, 2
# workers, --leak-kb 0 so that only recycling differs) twice in one run:
#   max_tasks=N  each worker drains and is replaced after N requests
#   never        max_tasks=0
# Both with memory limits far above what the service uses and [recycle] spacing = 0 (so that
# N, not the spacing, sets how often workers recycle), on a port memvisor picks
# (service.listen=127.0.0.1:0), under `wrk -t2 -c16 -d10s --latency http://127.0.0.1:PORT/ok`.
# One line per mode: requests/s, p99 latency, errors (wrk's socket errors and non-2xx
# responses) and the recycles memvisor logged with reason=max_tasks.
#   SERVICE_DURATION=10s   wrk's -d
#   SERVICE_MAX_TASKS=300  N
# Exit: 0 (it measures, it does not judge), 3 when memvisor does not start or wrk is missing.
set -euo pipefail
build=${1:?usage: service.sh BUILD_DIR}
src=$(cd "$(dirname "$0")/.." && pwd)
duration=${SERVICE_DURATION:-10s}
max_tasks=${SERVICE_MAX_TASKS:-300}
command -v wrk >/dev/null || { echo "service.sh: wrk is not installed (make deps)" >&2; exit 3; }

tmp=$(mktemp -d /tmp/memvisor-bench-service.XXXXXX)
mv_pid=""
cleanup() {
    if [ -n "$mv_pid" ] && kill -0 "$mv_pid" 2>/dev/null; then
        kill -TERM "$mv_pid" 2>/dev/null || true
        wait "$mv_pid" 2>/dev/null || true
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT

# run_mode LABEL MAX_TASKS ID: starts memvisor, loads it with wrk, stops it, prints one line;
# sets rps_ID.
run_mode() {
    local name=$1 n=$2 dir="$tmp/$3" port="" rc=0 i
    mkdir -p "$dir"
    "$build/memvisor" run -c "$src/conf/service.ini" -o service.listen=127.0.0.1:0 \
        -o supervisor.state_dir="$dir/state" -o log.file="$dir/memvisor.log" \
        -o limits.max_tasks="$n" -o limits.memory_soft=1G -o limits.memory_hard=2G \
        -o recycle.spacing=0 \
        -- "$build/examples/http_service" --leak-kb 0 >"$dir/memvisor.out" 2>&1 &
    mv_pid=$!
    # Ready when every worker said HELLO; the port is in the event=listen line.
    for i in $(seq 100); do
        grep -q 'event=pool_ready' "$dir/memvisor.log" 2>/dev/null && break
        kill -0 "$mv_pid" 2>/dev/null || break
        sleep 0.1
    done
    if grep -q 'event=pool_ready' "$dir/memvisor.log" 2>/dev/null; then
        port=$(grep -o 'event=listen .*addr=127\.0\.0\.1:[0-9]*' "$dir/memvisor.log" |
            head -1 | sed 's/.*://')
    fi
    if [ -z "$port" ]; then
        echo "service.sh: memvisor did not start ($name); its output and log:" >&2
        tail -n 20 "$dir/memvisor.out" "$dir/memvisor.log" >&2 2>/dev/null || true
        exit 3
    fi

    wrk -t2 -c16 -d"$duration" --latency "http://127.0.0.1:$port/ok" >"$dir/wrk.txt" 2>&1 || true
    kill -TERM "$mv_pid"
    wait "$mv_pid" || rc=$?
    mv_pid=""

    local rps p99 sock non2xx recycles total every=""
    rps=$(awk '/^Requests\/sec:/ {print $2}' "$dir/wrk.txt")
    total=$(awk '/ requests in / {print $1}' "$dir/wrk.txt")
    p99=$(awk '$1 == "99%" {print $2}' "$dir/wrk.txt")
    sock=$(awk '/Socket errors:/ {gsub(",", ""); print $4 + $6 + $8 + $10}' "$dir/wrk.txt")
    non2xx=$(awk '/Non-2xx or 3xx responses:/ {print $NF}' "$dir/wrk.txt")
    recycles=$(grep 'event=recycle ' "$dir/memvisor.log" | grep -c 'reason=max_tasks' || true)
    if [ -z "$rps" ]; then
        echo "service.sh: wrk failed ($name):" >&2
        cat "$dir/wrk.txt" >&2
        rps=0
    fi
    # Recycles are bounded by how fast memvisor replaces workers (max_concurrent = 1), so a
    # worker may serve more than N requests: the mean is shown.
    [ "$recycles" -gt 0 ] && every=" (one per $((${total:-0} / recycles)) requests)"
    printf '%-18s %7.0f requests/s  p99 %-7s errors %d (socket %d, non-2xx %d)  recycles %d%s%s\n' \
        "$name" "$rps" "${p99:-?}" $((${sock:-0} + ${non2xx:-0})) "${sock:-0}" "${non2xx:-0}" \
        "$recycles" "$every" "$([ "$rc" -eq 0 ] || echo "  memvisor exit $rc")"
    eval "rps_$3=$rps"
}

echo "examples/http_service, 2 workers, wrk -t2 -c16 -d$duration on /ok (no leak):"
run_mode "max_tasks=$max_tasks" "$max_tasks" recycling
run_mode "never (max_tasks=0)" 0 never
awk -v a="$rps_recycling" -v b="$rps_never" \
    'BEGIN { if (b > 0) printf "throughput while recycling: %.0f%% of never recycling\n", 100 * a / b }'
