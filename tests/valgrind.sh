#!/usr/bin/env bash
# make check-valgrind: one end-to-end batch with the supervisor under valgrind memcheck.
# The batch exercises recycling (task count and memory), a crashing task, a protocol error,
# prefetch and the results writer; a second one the leak detector, snapshots (with the
# worker's heap view) and a hard-limit kill; then `memvisor report` (text and --html) reads that run;
# then a Redis batch with a Redis restart. valgrind must report no error and no leak in any of them.
set -euo pipefail
build=${1:?usage: valgrind.sh BUILD_DIR}
dir=$(mktemp -d /tmp/mv-valgrind-XXXXXX)
trap 'rm -rf "$dir"' EXIT
vg=(valgrind --quiet --error-exitcode=99 --leak-check=full --show-leak-kinds=definite,indirect
    --errors-for-leak-kinds=definite,indirect --track-fds=no)

{
    for i in $(seq 1 300); do echo "ok $i"; done
    echo crash
    for i in $(seq 1 100); do echo "alloc 1"; done
    echo garbage
    for i in $(seq 1 100); do echo "echo $i"; done
} >"$dir/tasks.txt"

set +e
"${vg[@]}" "$build/memvisor" run -o supervisor.workers=2 -o worker.prefetch=4 \
    -o limits.max_tasks=60 -o limits.memory_soft=32M -o tasks.max_attempts=2 \
    -o worker.kill_timeout=200ms -o supervisor.state_dir="$dir/state0" \
    --tasks "$dir/tasks.txt" --results "$dir/results.jsonl" \
    -- "$build/helpers/mvtest_worker" 2>"$dir/log.txt" >"$dir/summary.txt"
code=$?
set -e
lines=$(wc -l <"$dir/results.jsonl")
if [ "$code" -eq 99 ]; then
    echo "valgrind: errors or leaks in the supervisor:" >&2
    grep '^==' "$dir/log.txt" >&2 || true
    exit 1
fi
if [ "$code" -ne 1 ] || [ "$lines" -ne 502 ]; then
    echo "valgrind batch: exit $code (want 1), $lines result lines (want 502)" >&2
    tail -20 "$dir/log.txt" >&2
    exit 1
fi

# Leak suspects and snapshots: the per-kind leak example, then a hard-limit kill.
src=$(cd "$(dirname "$0")/.." && pwd)
"${vg[@]}" "$build/memvisor" run -o supervisor.workers=2 -o supervisor.state_dir="$dir/state" \
    --tasks "$src/examples/kinds.tasks" --results "$dir/kinds.jsonl" \
    -- "$build/examples/kinds_worker" 2>"$dir/kinds.log" >/dev/null || {
    echo "valgrind: leak-suspect batch failed (exit $?):" >&2
    grep '^==' "$dir/kinds.log" >&2 || tail -20 "$dir/kinds.log" >&2
    exit 1
}
grep -q 'event=leak_suspect' "$dir/kinds.log" || { echo "valgrind: no leak suspect" >&2; exit 1; }
printf 'ok\ngrow 200 2\n' >"$dir/grow.txt"
code=0
"${vg[@]}" "$build/memvisor" run -o supervisor.workers=1 -o supervisor.cgroup=off \
    -o supervisor.state_dir="$dir/state" -o limits.memory_soft=0 -o limits.memory_hard=24M \
    -o limits.sample_interval=5ms -o tasks.max_attempts=1 --tasks "$dir/grow.txt" \
    -- "$build/helpers/mvtest_worker" 2>"$dir/grow.log" >/dev/null || code=$?
if [ "$code" -ne 1 ] || ! grep -q 'reason=hard_limit action=kill' "$dir/grow.log"; then
    echo "valgrind: hard-limit batch: exit $code (want 1):" >&2
    grep '^==' "$dir/grow.log" >&2 || tail -20 "$dir/grow.log" >&2
    exit 1
fi
# Hardening: an escalated task (a kernel OOM kill, then twice the limit), orphans reaped by
# the subreaper, and the pause tier reading a fixture meminfo.
printf 'orphan 50 3\nalloc 100\nok\n' >"$dir/esc.txt"
printf 'MemTotal: 16000000 kB\nMemAvailable: 8000000 kB\n' >"$dir/meminfo"
code=0
MEMVISOR_TEST_MEMINFO="$dir/meminfo" "${vg[@]}" "$build/memvisor" run -o supervisor.workers=1 \
    -o supervisor.state_dir="$dir/state" -o supervisor.subreaper=yes \
    -o supervisor.pause_below=10% -o limits.memory_hard=64M -o limits.escalate=2x \
    --tasks "$dir/esc.txt" -- "$build/helpers/mvtest_worker" 2>"$dir/esc.log" >/dev/null || code=$?
if [ "$code" -ne 0 ] || ! grep -q 'event=escalate task=2' "$dir/esc.log" ||
    ! grep -q 'event=orphan_reaped' "$dir/esc.log"; then
    echo "valgrind: escalation batch: exit $code (want 0):" >&2
    grep '^==' "$dir/esc.log" >&2 || tail -20 "$dir/esc.log" >&2
    exit 1
fi
"${vg[@]}" "$build/memvisor" report "$dir/state" >"$dir/report.txt" 2>&1 || {
    echo "valgrind: report failed:" >&2
    cat "$dir/report.txt" >&2
    exit 1
}
"${vg[@]}" "$build/memvisor" report --html "$dir/report.html" "$dir/state" >"$dir/html.txt" 2>&1 || {
    echo "valgrind: report --html failed:" >&2
    cat "$dir/html.txt" >&2
    exit 1
}
# A Redis source (docs/many-hosts.md): results to a stream and a file, a poison task re-added
# and quarantined, Redis killed and restarted mid-batch (the supervisor reconnects), and
# `memvisor submit` under valgrind too.
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir -p "$dir/redis"
redis() {
    redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly yes --dir "$dir/redis" \
        --logfile redis.log &
    rpid=$!
    disown "$rpid" # killed below on purpose: no "Killed" line
    for _ in $(seq 1 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && return; sleep 0.05; done
}
# kill returns before the server is gone: wait, or rm -rf races with its AOF writes
stop_redis() {
    kill -9 "$rpid" 2>/dev/null || true
    while kill -0 "$rpid" 2>/dev/null; do sleep 0.02; done
}
redis
trap 'stop_redis; rm -rf "$dir"' EXIT
{ for i in $(seq 1 150); do echo "sleep 5"; done; echo crash; } >"$dir/rtasks.txt"
"${vg[@]}" "$build/memvisor" submit --to "redis://127.0.0.1:$port/jobs" "$dir/rtasks.txt" \
    >"$dir/submit.txt" 2>&1 || { echo "valgrind: submit failed:" >&2; cat "$dir/submit.txt" >&2; exit 1; }
code=0
"${vg[@]}" "$build/memvisor" run -o supervisor.workers=2 -o supervisor.state_dir="$dir/rstate" \
    -o tasks.claim_idle=2s -o tasks.max_attempts=2 --tasks "redis://127.0.0.1:$port/jobs" \
    --results "redis://127.0.0.1:$port/results" --results "$dir/rresults.jsonl" \
    -- "$build/helpers/mvtest_worker" 2>"$dir/redis.log" >/dev/null &
mpid=$!
for _ in $(seq 1 200); do
    [ "$(redis-cli -p "$port" xlen results)" -ge 20 ] && break
    sleep 0.05
done
stop_redis
redis
wait "$mpid" || code=$?
n=$(redis-cli -p "$port" xlen results)
if [ "$code" -ne 1 ] || [ "$n" -ne 151 ] || ! grep -q 'event=redis_reconnected' "$dir/redis.log"; then
    echo "valgrind: Redis batch: exit $code (want 1), $n results (want 151):" >&2
    grep '^==' "$dir/redis.log" >&2 || tail -20 "$dir/redis.log" >&2
    exit 1
fi
stop_redis

echo "valgrind: supervisor clean (502 tasks, recycles, a crash and a protocol error;" \
    "leak suspects, snapshots, a hard-limit kill; an escalation, orphans, the pause tier;" \
    "report, report --html; a Redis batch with a Redis restart, submit)"
