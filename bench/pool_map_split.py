#!/usr/bin/env python3
"""One Pool call split in its phases: Pool(2), the first map([1]) (start-up: memvisor, the
template, the first worker), map(tiny, range(100000)), the with block's exit; and the caller's
own CPU over the map (its threads: feeder, results, log, and the waiting caller). memvisor.Pool
and multiprocessing.Pool (fork) alternate in one run; medians of the rounds. Measures, asserts
nothing (the machine is shared: compare within one run).

    MEMVISOR_BIN=build/memvisor python3 bench/pool_map_split.py [--runs 5] [--items 100000]
"""

import argparse
import hashlib
import multiprocessing
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "worker-api", "python"))
os.environ.setdefault("MEMVISOR_BIN", os.path.join(HERE, "..", "build", "memvisor"))

import memvisor  # noqa: E402


def tiny(x):
    return hashlib.sha256(str(x).encode()).hexdigest()


def one(make, n):
    t0 = time.monotonic()
    with make() as pool:
        t1 = time.monotonic()
        pool.map(tiny, [1])
        t2 = time.monotonic()
        c2 = time.process_time()
        out = pool.map(tiny, range(n))
        c3 = time.process_time()
        t3 = time.monotonic()
    t4 = time.monotonic()
    assert out[7] == tiny(7) and len(out) == n
    return {"init": t1 - t0, "first": t2 - t1, "map": t3 - t2, "map cpu": c3 - c2,
            "exit": t4 - t3}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--items", type=int, default=100000)
    args = ap.parse_args()
    makers = (("memvisor", lambda: memvisor.Pool(2)),
              ("multiprocessing", lambda: multiprocessing.get_context("fork").Pool(2)))
    got = {name: [] for name, _ in makers}
    for _ in range(args.runs):
        for name, make in makers:
            got[name].append(one(make, args.items))
    print(f"pool_map_split: Pool(2), map(tiny, [1]), map(tiny, range({args.items})), exit; "
          f"medians of {args.runs} rounds (ms)")
    for name, rows in got.items():
        print(f"  {name:16}" + "  ".join(
            f"{k} {statistics.median(r[k] for r in rows) * 1e3:6.1f}" for k in rows[0]))


if __name__ == "__main__":
    main()
