#!/usr/bin/env bash
# make soak: constant recycling for SOAK_MINUTES (default 60), then a verdict on whether the
# supervisor's own memory or file descriptors grow. Not part of make check or CI.
#
#   yes 't payload' | memvisor run --tasks - -o supervisor.workers=8 -o limits.memory_soft=16M
#       -- leaky_worker --leak 512K --sleep 5ms
#
# Every SOAK_SAMPLE seconds (default 1) it reads the supervisor's VmRSS and its open fds; each
# minute it prints the lowest and highest RSS and the fewest and most fds seen in it, with the
# workers spawned so far (from `memvisor status`). The first SOAK_WARMUP minutes (default 5;
# half the run when that is shorter) are warm-up, the last SOAK_JUDGE minutes (default 5;
# a quarter of the run after warm-up when that is shorter) are judged. Fails when the lowest
# RSS of any judged minute is more than 512 KiB above the highest floor of the warm-up, or the
# fewest fds of any judged minute more than 2 above the warm-up's highest fd floor. Floors,
# not peaks: fds come and go with every spawn, a burst of results queued while the host is
# busy raises a few samples and is given back; allocator noise is a few dozen KiB. Growth is
# where the run ends, not a minute in its middle: a leak of one small allocation per recycle
# (tens of thousands of recycles an hour) raises every later floor and so the last minutes'
# too, while a minute slowed by other jobs on the host comes back down. Every minute's floors
# are printed, and the highest rise after the warm-up, judged or not.
set -euo pipefail
build=${1:?usage: soak.sh BUILD_DIR}
minutes=${SOAK_MINUTES:-60}
sample=${SOAK_SAMPLE:-1}
warmup=${SOAK_WARMUP:-5}
[ $((minutes / 2)) -lt "$warmup" ] && warmup=$((minutes / 2))
[ "$warmup" -lt 1 ] && warmup=1
[ "$minutes" -le "$warmup" ] && { echo "soak: SOAK_MINUTES must exceed the warm-up"; exit 2; }
judge=${SOAK_JUDGE:-5}
[ $(((minutes - warmup) / 4)) -lt "$judge" ] && judge=$(((minutes - warmup) / 4))
[ "$judge" -lt 1 ] && judge=1
rss_tol=512  # KiB
fd_tol=2

dir=$(mktemp -d /tmp/memvisor-soak-XXXXXX)
mv_pid=""
cleanup() {
    [ -n "$mv_pid" ] && kill "$mv_pid" 2>/dev/null && wait "$mv_pid" 2>/dev/null
    rm -rf "$dir"
}
trap cleanup EXIT
sock=$dir/control.sock

yes 't payload' | "$build/memvisor" run --tasks - --results /dev/null \
    -o supervisor.workers=8 -o supervisor.state_dir="$dir/state" -o control.socket="$sock" \
    -o limits.memory_soft=16M -o limits.memory_hard=64M -o recycle.max_concurrent=8 \
    -o log.level=warn -o log.file="$dir/memvisor.log" \
    -- "$build/examples/leaky_worker" --leak 512K --sleep 5ms >"$dir/summary.txt" &
mv_pid=$!  # the pipeline's last command
for _ in $(seq 50); do [ -S "$sock" ] && break; sleep 0.1; done
[ -S "$sock" ] || { echo "soak: memvisor did not start"; cat "$dir/memvisor.log"; exit 3; }

rss() { awk '/^VmRSS:/ { print $2 }' "/proc/$mv_pid/status"; }
fds() { ls "/proc/$mv_pid/fd" | wc -l; }
spawned() {
    "$build/memvisor" status --socket "$sock" --json 2>/dev/null |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["totals"]["spawned"])' \
            2>/dev/null || echo "?"
}

echo "soak: $minutes min, 8 workers, warm-up $warmup min; pid $mv_pid"
printf '%6s %12s %12s %8s %8s %10s\n' minute rss_min_kib rss_max_kib fds_min fds_max spawned
base_rss=0 base_fd=0 worst_rss=0 worst_fd=0 end_rss=0 end_fd=0 failed=0
per_minute=$((60 / sample))
for m in $(seq 1 "$minutes"); do
    lo=1000000 hi=0 r=1000000000 rhi=0
    for _ in $(seq "$per_minute"); do
        sleep "$sample"
        kill -0 "$mv_pid" 2>/dev/null || { echo "soak: memvisor exited"; cat "$dir/summary.txt"; exit 1; }
        n=$(fds)
        [ "$n" -lt "$lo" ] && lo=$n
        [ "$n" -gt "$hi" ] && hi=$n
        k=$(rss)
        [ "$k" -lt "$r" ] && r=$k
        [ "$k" -gt "$rhi" ] && rhi=$k
    done
    printf '%6d %12d %12d %8d %8d %10s\n' "$m" "$r" "$rhi" "$lo" "$hi" "$(spawned)"
    if [ "$m" -le "$warmup" ]; then
        [ "$r" -gt "$base_rss" ] && base_rss=$r
        [ "$lo" -gt "$base_fd" ] && base_fd=$lo
    else
        [ $((r - base_rss)) -gt "$worst_rss" ] && worst_rss=$((r - base_rss))
        [ $((lo - base_fd)) -gt "$worst_fd" ] && worst_fd=$((lo - base_fd))
        if [ "$m" -gt $((minutes - judge)) ]; then
            [ $((r - base_rss)) -gt "$end_rss" ] && end_rss=$((r - base_rss))
            [ $((lo - base_fd)) -gt "$end_fd" ] && end_fd=$((lo - base_fd))
        fi
    fi
done
kill -TERM "$mv_pid"
wait "$mv_pid" || true
mv_pid=""
echo "soak: warm-up floors: RSS $base_rss KiB, fds $base_fd; any minute after it: RSS floor" \
    "+$worst_rss KiB at most, fd floor +$worst_fd at most"
echo "soak: the last $judge minutes (judged): RSS floor +$end_rss KiB at most (tolerance" \
    "$rss_tol), fd floor +$end_fd at most (tolerance $fd_tol)"
[ "$end_rss" -gt "$rss_tol" ] && { echo "soak: FAILED: the supervisor's memory grows"; failed=1; }
[ "$end_fd" -gt "$fd_tol" ] && { echo "soak: FAILED: the supervisor leaks fds"; failed=1; }
grep -E 'spawned|tasks' "$dir/summary.txt" || true
[ $failed -eq 0 ] && echo "soak: ok"
exit $failed
