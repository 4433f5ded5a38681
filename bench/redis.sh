#!/usr/bin/env bash
# Tasks per second through a Redis stream (docs/many-hosts.md) against the file source, raced
# in the same run on the same machine: one memvisor on a task file; one memvisor on a stream;
# two memvisors ("hosts") sharing the stream; the same total workers each time. Two task
# sizes: no-op tasks (the per-task cost of the source itself) and 5 ms tasks. Measures and
# prints; asserts nothing.
#   bench/redis.sh BUILD_DIR [TASKS] [RUNS]
set -euo pipefail
build=${1:?usage: redis.sh BUILD_DIR [TASKS] [RUNS]}
tasks=${2:-5000}
runs=${3:-3}
workers=4
dir=$(mktemp -d /tmp/mv-bench-redis-XXXXXX)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$dir" \
    --logfile redis.log &
rpid=$!
disown "$rpid" # killed at the end: no "Killed" line
trap 'kill -9 $rpid 2>/dev/null; while kill -0 $rpid 2>/dev/null; do sleep 0.02; done; rm -rf "$dir"' EXIT
for _ in $(seq 1 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.05; done
url="redis://127.0.0.1:$port"
common=(-o supervisor.state_dir="$dir/state" -o leak.detect=no)

now() { date +%s.%N; }

# One timed batch; prints its seconds. $1: file|redis1|redis2, $2: the task line.
batch() {
    local kind=$1 line=$2 t0 t1 pids=()
    yes "$line" | head -n "$tasks" >"$dir/tasks.txt"
    rm -f "$dir/results.jsonl"
    redis-cli -p "$port" flushall >/dev/null
    if [ "$kind" != file ]; then
        "$build/memvisor" submit --to "$url/jobs" "$dir/tasks.txt" >/dev/null
    fi
    t0=$(now)
    case $kind in
    file)
        "$build/memvisor" run "${common[@]}" -o supervisor.workers=$workers \
            --tasks "$dir/tasks.txt" --results "$dir/results.jsonl" \
            -- "$build/helpers/mvtest_worker" >/dev/null 2>&1 || true
        ;;
    redis1 | redis2)
        local hosts=${kind#redis} per=$((workers / ${kind#redis}))
        for h in $(seq 1 "$hosts"); do
            "$build/memvisor" run "${common[@]}" -o supervisor.workers=$per \
                -o control.socket=none --tasks "$url/jobs" --results "$url/results" \
                -- "$build/helpers/mvtest_worker" >/dev/null 2>&1 &
            pids+=($!)
        done
        wait "${pids[@]}" || true
        ;;
    esac
    t1=$(now)
    if [ "$kind" = file ]; then
        n=$(wc -l <"$dir/results.jsonl")
    else
        n=$(redis-cli -p "$port" xlen results)
    fi
    [ "$n" -eq "$tasks" ] || echo "  ($kind: $n results of $tasks)" >&2
    python3 -c "print(f'{$t1 - $t0:.3f}')"
}

for line in "ok" "sleep 5"; do
    echo "-- $tasks tasks \"$line\", $workers workers in all, best of $runs --"
    declare -A best=()
    for r in $(seq 1 "$runs"); do
        for kind in file redis1 redis2; do
            s=$(batch "$kind" "$line")
            if [ -z "${best[$kind]:-}" ] || python3 -c "import sys; sys.exit(0 if $s < ${best[$kind]} else 1)"; then
                best[$kind]=$s
            fi
        done
    done
    python3 - "$tasks" "${best[file]}" "${best[redis1]}" "${best[redis2]}" <<'EOF'
import sys
n = int(sys.argv[1]); f, r1, r2 = map(float, sys.argv[2:])
for name, s in (("file source, 1 memvisor", f), ("Redis stream, 1 memvisor", r1),
                ("Redis stream, 2 memvisors", r2)):
    print(f"  {name:27s} {s:7.3f} s  {n / s:8.0f} tasks/s  ratio to file {f / s:5.2f}")
EOF
    unset best
done
