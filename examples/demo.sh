#!/usr/bin/env bash
# make demo: a real batch on the default config (conf/memvisor.ini) through the leaking
# example worker. Each task leaks 1 MiB, so workers cross the 384 MiB soft limit (3/4 of the
# 512 MiB hard limit) and are recycled before the hard limit; every task still ends "ok",
# exactly once.
#
# For tests (tests/python/test_docs.py runs a small one to check the README's copy of this
# output): MV_DEMO_TASKS (4000), MV_DEMO_OUT (BUILD_DIR/demo), MV_DEMO_OPTS (more -o options,
# space-separated).
set -euo pipefail
build=${1:?usage: demo.sh BUILD_DIR}
src=$(cd "$(dirname "$0")/.." && pwd)
out=${MV_DEMO_OUT:-$build/demo}
tasks=${MV_DEMO_TASKS:-4000}
read -r -a opts <<<"${MV_DEMO_OPTS:-}"
mkdir -p "$out"
rm -f "$out/memvisor.log" "$out/results.jsonl"
for i in $(seq 1 "$tasks"); do echo "task $i"; done >"$out/tasks.txt"

cat <<MSG
memvisor demo: $tasks tasks through examples/leaky_worker (leaks 1 MiB per task) on
conf/memvisor.ini (soft limit 384 MiB, hard limit 512 MiB${MV_DEMO_OPTS:+; overridden: $MV_DEMO_OPTS}). Log: $out/memvisor.log
MSG
set +e
"$build/memvisor" run -c "$src/conf/memvisor.ini" -o log.file="$out/memvisor.log" \
    -o supervisor.state_dir="$out/state" ${opts[@]+"${opts[@]}"} \
    --tasks "$out/tasks.txt" --results "$out/results.jsonl" \
    -- "$build/examples/leaky_worker" --leak 1M
code=$?
set -e

echo
echo "first recycles in the log (each worker is drained and replaced: at the soft limit, or for a leak experiment's fresh worker):"
grep -E 'event=recycle' "$out/memvisor.log" | head -4 | sed -E 's/^[^ ]+ +[a-z]+ +/  /'
ok=$(grep -c '"status":"ok"' "$out/results.jsonl" || true)
lines=$(wc -l <"$out/results.jsonl")
max_after=$(grep -o '"mem_after":[0-9]*' "$out/results.jsonl" | cut -d: -f2 | sort -n | tail -1)
printf '\nresult lines: %s for %s tasks (%s ok); highest private memory after a task: %s MiB\n' \
    "$lines" "$tasks" "$ok" "$((max_after / 1048576))"
printf 'first result: %s\n' "$(head -1 "$out/results.jsonl")"
exit "$code"
