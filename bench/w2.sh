#!/usr/bin/env bash
# bench/w2.sh BUILD_DIR: a leaking service under real load (W2). Unmodified gunicorn (Debian's,
# sync workers) serving bench/w2_app.py, which keeps 64 KiB per request, under
# `wrk -t2 -c16 -d20s`, two ways in one run:
#   peer      gunicorn alone, recycling by count: -w 2 --max-requests 1000
#             --max-requests-jitter 100 (gunicorn's own answer to a leak)
#   memvisor  two gunicorn instances (-w 1 each) as `none` workers on memvisor's shared socket
#             (LISTEN_FDS, which gunicorn takes as systemd socket activation), recycled on
#             memory: memory_soft 128M, memory_hard 512M, handover_headroom 16M, and
#             [recycle] target = W2_TARGET (default child: the gunicorn worker that grew is
#             told to stop and its arbiter forks the replacement; worker: the whole instance
#             is replaced, with W2_SPARES hot spares, default 2, booted and waiting)
# One line each: requests/s, wrk's errors (socket errors + non-2xx), and for memvisor the
# recycles, whether it stayed up, and the highest peak of one worker's cgroup (its exit
# events) against soft + headroom. Then the ratio memvisor/peer of requests/s.
#   W2_DURATION=20s  wrk's -d;  W2_ROUNDS=3  rounds (peer, memvisor, peer, ...; medians)
#   W2_TARGET=child|worker  [recycle] target
#   W2_SPARES=2  [recycle] spares with target = worker (0: the replacement boots at the recycle)
#   W2_KEEP=1  keeps the temporary directory (memvisor.log) and says where
#   W2_DRAIN_CAP=yes  [recycle] drain_cap (a drain under a hard limit of soft + headroom)
# Exit 0 (it measures); 3 when gunicorn or wrk is missing (make bench installs them).
set -euo pipefail
build=${1:?usage: w2.sh BUILD_DIR}
src=$(cd "$(dirname "$0")/.." && pwd)
duration=${W2_DURATION:-20s}
soft=128M headroom=16M target=${W2_TARGET:-child} spares=${W2_SPARES:-2} rounds=${W2_ROUNDS:-3}
[ "$target" = child ] && spares=0 # the arbiter forks the replacement: nothing to keep booted
for c in gunicorn wrk; do
    command -v "$c" >/dev/null || { echo "w2.sh: $c is not installed (make bench)" >&2; exit 3; }
done
tmp=$(mktemp -d /tmp/memvisor-bench-w2.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    if [ -n "${W2_KEEP:-}" ]; then echo "w2.sh: logs kept in $tmp" >&2; else rm -rf "$tmp"; fi
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# errors_of FILE: wrk's socket errors plus non-2xx responses.
errors_of() {
    awk '/Socket errors/ {gsub(",", ""); n += $4 + $6 + $8 + $10} /Non-2xx/ {n += $NF}
         END {print n + 0}' "$1"
}
rps_of() { awk '/Requests\/sec/ {print int($2)}' "$1"; }

wait_port() {
    for _ in $(seq 100); do
        python3 -c "import socket,sys; socket.create_connection(('127.0.0.1',$1),0.2)" 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

# One round of the peer: its line, and its requests/s in RPS.
run_peer() {
    local port pid
    port=$(free_port)
    (cd "$src/bench" && exec gunicorn -w 2 --max-requests 1000 --max-requests-jitter 100 \
        -b "127.0.0.1:$port" --log-level warning w2_app:app) >"$tmp/peer.log" 2>&1 &
    pid=$!
    pids+=($pid)
    wait_port "$port" || { echo "w2.sh: gunicorn did not start" >&2; cat "$tmp/peer.log" >&2; exit 3; }
    wrk -t2 -c16 -d"$duration" "http://127.0.0.1:$port/" >"$tmp/peer.txt" 2>&1 || true
    kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
    pids=()
    printf '  %-9s %8s req/s  errors %s\n' peer "$(rps_of "$tmp/peer.txt")" \
        "$(errors_of "$tmp/peer.txt")"
    RPS=$(rps_of "$tmp/peer.txt")
}

# One round of memvisor: likewise.
run_memvisor() {
    local port mv_pid up recycles child_recycles ooms peak
    rm -rf "$tmp/state" "$tmp/memvisor.log"
    "$build/memvisor" run -o service.listen=127.0.0.1:0 -o supervisor.workers=2 \
        -o worker.protocol=none -o supervisor.state_dir="$tmp/state" -o control.socket=none \
        -o log.file="$tmp/memvisor.log" -o limits.memory_soft=$soft -o limits.memory_hard=512M \
        -o recycle.handover_headroom=$headroom -o recycle.spares=$spares -o worker.kill_timeout=10s \
        -o recycle.drain_cap="${W2_DRAIN_CAP:-no}" -o recycle.target="$target" \
        -- env -C "$src/bench" gunicorn -w 1 --log-level warning w2_app:app \
        >"$tmp/memvisor.out" 2>&1 &
    mv_pid=$!
    pids+=($mv_pid)
    for _ in $(seq 100); do
        grep -q 'event=pool_ready' "$tmp/memvisor.log" 2>/dev/null && break
        sleep 0.1
    done
    port=$(grep -o 'event=listen .*addr=127\.0\.0\.1:[0-9]*' "$tmp/memvisor.log" | head -1 | sed 's/.*://')
    [ -n "$port" ] || { echo "w2.sh: memvisor did not start" >&2; tail "$tmp/memvisor.out" "$tmp/memvisor.log" >&2; exit 3; }
    wrk -t2 -c16 -d"$duration" "http://127.0.0.1:$port/" >"$tmp/mv.txt" 2>&1 || true
    up=yes
    kill -0 "$mv_pid" 2>/dev/null || up=no
    kill -TERM "$mv_pid" 2>/dev/null || true
    wait "$mv_pid" 2>/dev/null || true
    pids=()
    recycles=$(grep -c 'event=recycle ' "$tmp/memvisor.log" || true)
    child_recycles=$(grep -c 'event=recycle .*action=child' "$tmp/memvisor.log" || true)
    ooms=$(grep -c 'event=kernel_oom ' "$tmp/memvisor.log" || true)
    peak=$(grep -o 'event=exit .* peak=[0-9]*' "$tmp/memvisor.log" | sed 's/.*peak=//' | sort -n | tail -1)
    printf '  %-9s %8s req/s  errors %s  recycles %s (of children: %s; target = %s)  kernel OOM kills %s  stayed up %s  worker peak %s MiB (soft + headroom = %s MiB)\n' \
        memvisor "$(rps_of "$tmp/mv.txt")" "$(errors_of "$tmp/mv.txt")" "$recycles" "$child_recycles" \
        "$target" "$ooms" "$up" "$(( ${peak:-0} >> 20 ))" "$(( (128 + 16) ))"
    RPS=$(rps_of "$tmp/mv.txt")
}

median() { sort -n | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }

# Rounds alternate the peer and memvisor (the host's load moves: only a ratio of rounds run
# side by side means anything); the medians are compared.
peer_all=() mv_all=()
for round in $(seq "$rounds"); do
    echo "  round $round of $rounds"
    run_peer
    peer_all+=("${RPS:-0}")
    run_memvisor
    mv_all+=("${RPS:-0}")
done
peer_rps=$(printf '%s\n' "${peer_all[@]}" | median)
mv_rps=$(printf '%s\n' "${mv_all[@]}" | median)
awk -v a="$mv_rps" -v b="$peer_rps" -v n="$rounds" 'BEGIN {printf "  medians of %d rounds: memvisor %d req/s, peer %d: ratio memvisor/peer %.2f (target >= 1.0)\n", n, a, b, (b > 0 ? a / b : 0)}'
