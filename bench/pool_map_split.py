#!/usr/bin/env python3
"""One Pool call split in its phases: Pool(2), the first map([1]) (start-up: memvisor, the
template, the first worker), map(f, range(n)) (100,000 tiny items: sha256 of the item's text;
or 2,000 items of 2 ms of CPU), the with block's exit; and over the map the caller's own CPU
(its threads: feeder, results, log, and the waiting caller) and memvisor's (10-ms ticks).
memvisor.Pool and multiprocessing.Pool (fork) alternate in one run; medians of the rounds.
Measures, asserts nothing (the machine is shared: compare within one run).

    MEMVISOR_BIN=build/memvisor python3 bench/pool_map_split.py [--runs 5] [--work 2ms]
"""

import argparse
import multiprocessing
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "worker-api", "python"))
os.environ.setdefault("MEMVISOR_BIN", os.path.join(HERE, "..", "build", "memvisor"))

import memvisor  # noqa: E402
from pool_map import tiny, two_ms  # noqa: E402 - the same two workloads as bench/pool_map.py

WORK = {"tiny": (tiny, 100000), "2ms": (two_ms, 2000)}


def proc_cpu(pool):
    """memvisor's CPU seconds so far (its /proc stat); 0 for multiprocessing (no supervisor)."""
    sv = getattr(pool, "_sv", None)
    if sv is None or sv.pid is None:
        return 0.0
    with open(f"/proc/{sv.pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def one(make, func, n):
    t0 = time.monotonic()
    with make() as pool:
        t1 = time.monotonic()
        pool.map(tiny, [1])
        t2 = time.monotonic()
        c2, m2 = time.process_time(), proc_cpu(pool)
        out = pool.map(func, range(n))
        c3, m3 = time.process_time(), proc_cpu(pool)
        t3 = time.monotonic()
    t4 = time.monotonic()
    assert out[7] == func(7) and len(out) == n
    return {"init": t1 - t0, "first": t2 - t1, "map": t3 - t2, "map cpu": c3 - c2,
            "memvisor cpu": m3 - m2, "exit": t4 - t3}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--work", choices=sorted(WORK), default="tiny")
    ap.add_argument("--items", type=int, help="default: 100000 tiny, 2000 of 2 ms")
    args = ap.parse_args()
    makers = (("memvisor", lambda: memvisor.Pool(2)),
              ("multiprocessing", lambda: multiprocessing.get_context("fork").Pool(2)))
    func, n = WORK[args.work]
    n = args.items or n
    got = {name: [] for name, _ in makers}
    for _ in range(args.runs):
        for name, make in makers:
            got[name].append(one(make, func, n))
    print(f"pool_map_split: Pool(2), map(f, [1]), map({args.work}, range({n})), exit; "
          f"medians of {args.runs} rounds (ms)")
    for name, rows in got.items():
        print(f"  {name:16}" + "  ".join(
            f"{k} {statistics.median(r[k] for r in rows) * 1e3:6.1f}" for k in rows[0]))


if __name__ == "__main__":
    main()
