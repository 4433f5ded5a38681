#!/usr/bin/env python3
"""W1, the leaky Python batch, through memvisor.Pool and multiprocessing.Pool in one run.

Each task: sha256 of a 1 KiB buffer made from the task number, and 64 KiB kept for good in a
global list (the leak). 2 workers, a 128 MiB soft limit for memvisor;
multiprocessing.Pool(2, maxtasksperchild=20).imap_unordered(chunksize=50) as the peer (the
figure of /work/shared/PEERS.md, W1). memvisor.Pool forks its workers from a warm template
(docs/templates.md), which imports this module once; the same without one (template=False:
a fresh interpreter per replacement) is shown for comparison. Runs alternate (peer, memvisor,
peer, ...); the machine is shared and noisy, so only the ratio within one run means anything.
Measures, asserts nothing. Target (issue 16): >= 1.5x the peer.

    MEMVISOR_BIN=build/memvisor python3 bench/w1_pool.py [--tasks 20000] [--runs 3]

Rates count the whole call, pool start-up included (what a user waits for). Worker peak:
memvisor's is the kernel's (the worker cgroup's peak usage during each task); both also
report the largest ru_maxrss a worker saw (its peak RSS, shared pages included).
"""

import argparse
import hashlib
import logging
import multiprocessing
import os
import resource
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "worker-api", "python"))
os.environ.setdefault("MEMVISOR_BIN", os.path.join(HERE, "..", "build", "memvisor"))

import memvisor  # noqa: E402

KEPT = []
MiB = 1 << 20


def leaky(n):
    """The W1 task: sha256 of 1 KiB made from n; 64 KiB (touched) kept for good."""
    buf = n.to_bytes(8, "little") * 128
    KEPT.append(buf * 64)
    return hashlib.sha256(buf).hexdigest(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def run_mp(tasks):
    t0 = time.monotonic()
    digests, maxrss = 0, 0
    with multiprocessing.Pool(2, maxtasksperchild=20) as pool:
        for digest, rss in pool.imap_unordered(leaky, range(tasks), chunksize=50):
            digests += 1
            maxrss = max(maxrss, rss)
    return {"rate": tasks / (time.monotonic() - t0), "done": digests, "rss": maxrss * 1024,
            "peak": None, "recycles": None, "first": None}


def run_mv(tasks, chunksize, state_dir, **settings):
    t0 = time.monotonic()
    digests, maxrss, peak, pids, first = 0, 0, 0, set(), None
    settings.setdefault("memory_soft", "128M")
    with memvisor.Pool(2, state_dir=state_dir, **settings) as pool:
        for (digest, rss), stats in pool.imap_unordered(leaky, range(tasks), chunksize,
                                                         with_stats=True):
            if first is None:
                first = time.monotonic() - t0
            digests += 1
            maxrss = max(maxrss, rss)
            peak = max(peak, stats.mem_peak or 0)
            pids.add(stats.pid)
    return {"rate": tasks / (time.monotonic() - t0), "done": digests, "rss": maxrss * 1024,
            "peak": peak, "recycles": len(pids) - 2, "first": first}


def show(name, r):
    peak = f"kernel peak {r['peak'] / MiB:6.1f} MiB, " if r["peak"] is not None else ""
    recycles = f", {r['recycles']} recycles" if r["recycles"] is not None else ""
    if r["first"] is not None:
        recycles += f", first result after {r['first']:.2f} s"
    print(f"  {name:<44} {r['rate']:9,.0f} tasks/s  {r['done']} done  worker {peak}"
          f"max ru_maxrss {r['rss'] / MiB:6.1f} MiB{recycles}", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", type=int, default=20000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--state-dir", default="/tmp/memvisor-bench-w1")
    args = ap.parse_args()
    # Each memvisor run names the leak (logger "memvisor", WARNING): right, and noise here.
    logging.getLogger("memvisor").setLevel(logging.ERROR)
    cases = [
        ("multiprocessing maxtasksperchild=20 chunk 50", lambda: run_mp(args.tasks)),
        ("memvisor.Pool chunksize 1", lambda: run_mv(args.tasks, 1, args.state_dir)),
        ("memvisor.Pool chunksize 1, prefetch 8",
         lambda: run_mv(args.tasks, 1, args.state_dir, prefetch=8)),
        ("memvisor.Pool chunksize 50", lambda: run_mv(args.tasks, 50, args.state_dir)),
        # What the template saves: every replacement a fresh interpreter instead of a fork.
        ("memvisor.Pool chunksize 50, no template",
         lambda: run_mv(args.tasks, 50, args.state_dir, template=False)),
        # What recycling costs: the same with limits no worker reaches (~650 MiB each).
        ("memvisor.Pool chunksize 50, no recycling",
         lambda: run_mv(args.tasks, 50, args.state_dir, memory_soft="2G", memory_hard="3G")),
    ]
    rates = {name: [] for name, _ in cases}
    print(f"W1: {args.tasks} tasks (sha256 of 1 KiB, 64 KiB kept each), 2 workers, "
          f"soft limit 128 MiB; {args.runs} rounds")
    for i in range(args.runs):
        print(f"round {i + 1}")
        for name, run in cases:
            r = run()
            rates[name].append(r["rate"])
            show(name, r)
    peer = statistics.median(rates[cases[0][0]])
    print("medians (ratio against the peer in the same run)")
    for name, _ in cases:
        med = statistics.median(rates[name])
        print(f"  {name:<44} {med:9,.0f} tasks/s  {med / peer:5.2f}x")


if __name__ == "__main__":
    main()
