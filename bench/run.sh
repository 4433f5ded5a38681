#!/usr/bin/env bash
# make bench: the benchmarks of DESIGN §9 on this machine. They measure; nothing here asserts.
set -euo pipefail
build=${1:?usage: run.sh BUILD_DIR}
echo "== dispatch (bench/dispatch) =="
"$build/bench/dispatch" --tasks 200000 --runs 3
echo
echo "== detection (bench/detect) =="
"$build/bench/detect" --runs 10
echo
echo "== service recycling under load (bench/service.sh) =="
bash "$(dirname "$0")/service.sh" "$build"
echo
echo "== heap accounting overhead (bench/heap_overhead) =="
"$build/bench/heap_overhead" --rounds 7
echo
echo "== leak attribution end to end: heap preload, worker figures, PYTHONMALLOC (bench/heap_e2e.py) =="
python3 "$(dirname "$0")/heap_e2e.py" --build "$build" --rounds 3
echo
echo "== W1, the leaky Python batch: memvisor (module + template, lines) vs multiprocessing.Pool (bench/w1.py) =="
python3 "$(dirname "$0")/w1.py" "$build" --runs 3
echo
echo "== W1 through memvisor.Pool vs multiprocessing.Pool (bench/w1_pool.py) =="
MEMVISOR_BIN="$build/memvisor" python3 "$(dirname "$0")/w1_pool.py" --runs 3
echo
echo "== Pool.map with its defaults, memvisor.Pool vs multiprocessing.Pool (bench/pool_map.py) =="
MEMVISOR_BIN="$build/memvisor" python3 "$(dirname "$0")/pool_map.py" --runs 3
echo
echo "== a process per task, warm template vs xargs -P2 (bench/fork_per_task.py) =="
python3 "$(dirname "$0")/fork_per_task.py" "$build" --runs 3
echo
echo "== soft limit cost to a growing task (bench/soft_throttle.sh) =="
bash "$(dirname "$0")/soft_throttle.sh" "$build" 3
echo
echo "== W2, a leaking gunicorn under wrk: memvisor vs gunicorn --max-requests (bench/w2.sh) =="
bash "$(dirname "$0")/w2.sh" "$build"
echo
echo "== recycle: decision -> replacement answering, with and without spares (bench/recycle) =="
"$build/bench/recycle" --recycles 100
echo
echo "== per-task accounting, read by read (bench/accounting) =="
"$build/bench/accounting" --tasks 20000
echo
echo "== the supervisor's own footprint with 64 workers (bench/footprint) =="
"$build/bench/footprint" --seconds 3
echo
echo "== many hosts: a Redis stream vs the file source (bench/redis.sh) =="
bash "$(dirname "$0")/redis.sh" "$build" 5000 3
