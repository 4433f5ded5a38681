#!/usr/bin/env bash
# make check-valgrind: one end-to-end batch with the supervisor under valgrind memcheck.
# The batch exercises recycling (task count and memory), a crashing task, a protocol error,
# prefetch and the results writer; valgrind must report no error and no leak.
set -euo pipefail
build=${1:?usage: valgrind.sh BUILD_DIR}
dir=$(mktemp -d /tmp/mv-valgrind-XXXXXX)
trap 'rm -rf "$dir"' EXIT

{
    for i in $(seq 1 300); do echo "ok $i"; done
    echo crash
    for i in $(seq 1 100); do echo "alloc 1"; done
    echo garbage
    for i in $(seq 1 100); do echo "echo $i"; done
} >"$dir/tasks.txt"

set +e
valgrind --quiet --error-exitcode=99 --leak-check=full --show-leak-kinds=definite,indirect \
    --errors-for-leak-kinds=definite,indirect --track-fds=no \
    "$build/memvisor" run -o supervisor.workers=2 -o worker.prefetch=4 \
    -o limits.max_tasks=60 -o limits.memory_soft=32M -o tasks.max_attempts=2 \
    -o worker.kill_timeout=200ms --tasks "$dir/tasks.txt" --results "$dir/results.jsonl" \
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
echo "valgrind: supervisor clean (502 tasks, recycles, a crash and a protocol error)"
