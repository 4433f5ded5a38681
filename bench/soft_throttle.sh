#!/usr/bin/env bash
# bench/soft_throttle.sh BUILD_DIR [RUNS]: what the soft limit costs a task that grows past it.
#
# The soft limit means "let the task finish, then recycle the worker". On cgroup v2 memvisor
# learns of the crossing from memory.high's event; left armed, memory.high throttles the task
# (direct reclaim and sleeps of up to 2 s per allocation batch), which the issue measured at
# minutes under emulation. This runs one growing task per memvisor run, with no soft limit and
# with one it crosses, on the same worker, in the same run, and prints the task's duration
# (median of RUNS) and what the soft limit added: the time between the crossing and the task's
# end beyond what the task needs anyway. Workers:
#   c        tests' mvtest_worker (api): "grow 60 1", 1 MiB a millisecond to 60 MiB
#   python   a `lines` Python worker growing 4 MiB at a time to 60 MiB (the issue's case)
# Limits: soft 24M, hard 96M. It runs wherever memvisor runs: cgroup v1 on the dev machine, v2
# in the check-v2 guest (MV_V2_CMD='bash bench/soft_throttle.sh BUILD' make check-v2).
#   SOFT_THROTTLE_TIMEOUT=300   seconds before a run is given up (printed as ">= N")
#   SOFT_THROTTLE_WORKERS="c python"
# Exit 0: it measures, it does not judge.
set -euo pipefail
build=${1:?usage: soft_throttle.sh BUILD_DIR [RUNS]}
runs=${2:-5}
limit=${SOFT_THROTTLE_TIMEOUT:-300}
workers=${SOFT_THROTTLE_WORKERS:-c python}
tmp=$(mktemp -d /tmp/memvisor-bench-soft.XXXXXX)
trap 'rm -rf "$tmp"' EXIT

cat >"$tmp/grow.py" <<'EOF'
import sys
kept = []
for line in sys.stdin:
    for _ in range(int(line) // 4):
        kept.append(b"x" * (4 << 20))
    print("grown", line.strip(), flush=True)
EOF

# one SOFT WORKER: the task's duration in ms (or ">=LIMIT_MS" when it did not end in time).
one() {
    local soft=$1 worker=$2 rc=0
    local -a cmd proto
    if [ "$worker" = c ]; then
        echo "grow 60 1" >"$tmp/tasks"
        proto=(-o worker.protocol=api)
        cmd=("$build/helpers/mvtest_worker")
    else
        echo 60 >"$tmp/tasks"
        proto=(-o worker.protocol=lines)
        cmd=(python3 "$tmp/grow.py")
    fi
    rm -f "$tmp/results"
    timeout -s KILL "$limit" "$build/memvisor" run -o supervisor.workers=1 "${proto[@]}" \
        -o limits.memory_soft="$soft" -o limits.memory_hard=96M \
        -o supervisor.state_dir="$tmp/state" --tasks "$tmp/tasks" --results "$tmp/results" \
        -- "${cmd[@]}" >"$tmp/summary" 2>"$tmp/log" || rc=$?
    if [ "$rc" -eq 137 ]; then
        echo ">=$((limit * 1000))"
        return
    fi
    sed -n 's/.*"duration_ms":\([0-9.]*\).*/\1/p' "$tmp/results"
}

median() { sort -n | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

memory=$("$build/memvisor" run -o supervisor.workers=1 -o supervisor.state_dir="$tmp/state" \
    --tasks /dev/null --results "$tmp/results" -- "$build/helpers/mvtest_worker" 2>&1 |
    sed -n 's/.*memory="\([^"]*\)".*/\1/p' | head -1)
echo "soft_throttle: $(uname -r), $memory; median of $runs run(s), limits soft 24M, hard 96M"
printf '%-8s %14s %14s %16s\n' worker "no soft, ms" "soft 24M, ms" "added by soft"
for worker in $workers; do
    none=() soft=()
    for ((i = 0; i < runs; i++)); do
        none+=("$(one 0 "$worker")")
        soft+=("$(one 24M "$worker")")
    done
    if printf '%s\n' "${soft[@]}" | grep -q '>='; then
        printf '%-8s %14s %14s %16s\n' "$worker" "$(printf '%s\n' "${none[@]}" | median)" \
            ">=$((limit * 1000))" "(timed out)"
        continue
    fi
    n=$(printf '%s\n' "${none[@]}" | median)
    s=$(printf '%s\n' "${soft[@]}" | median)
    printf '%-8s %14.1f %14.1f %13.1f ms\n' "$worker" "$n" "$s" "$(awk -v a="$n" -v b="$s" 'BEGIN {print b - a}')"
done
