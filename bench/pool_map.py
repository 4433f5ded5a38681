#!/usr/bin/env python3
"""Pool.map with its defaults: memvisor.Pool against multiprocessing.Pool, in one run.

What a user switching from multiprocessing does first: `pool.map(f, items)` without a
chunksize. multiprocessing cuts the items into len / (4 x workers) chunks whatever they
cost; memvisor.Pool times each call's items from the answers and groups only quick ones
(docs/python.md). Two workloads, 2 workers each side, the whole call timed (pool start-up
included: what a user waits for), rounds alternating, medians compared (the machine is
shared: only ratios within one run mean anything). memvisor.Pool with chunksize=1 (one item
per task: its default before) is shown too. Measures, asserts nothing.

    MEMVISOR_BIN=build/memvisor python3 bench/pool_map.py [--items 100000] [--runs 3]

  tiny   sha256 of the item's text (a few us each): items go in ~5-ms tasks
  2ms    2 ms of CPU each: one item per task, as with chunksize=1
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


def two_ms(x):
    end = time.thread_time() + 0.002
    while time.thread_time() < end:
        pass
    return x


def timed(make_pool, func, items, **kw):
    t0 = time.monotonic()
    with make_pool() as pool:
        out = pool.map(func, items, **kw)
    took = time.monotonic() - t0
    assert len(out) == len(items)
    return took


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--items", type=int, default=100000, help="items of the tiny workload")
    ap.add_argument("--slow-items", type=int, default=2000, help="items of the 2-ms workload")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    state = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"memvisor-bench-pool-map-{os.getpid()}")

    def mp():
        return multiprocessing.get_context("fork").Pool(2)

    def mv():
        return memvisor.Pool(2, state_dir=state, keep_runs=1)

    print(f"pool_map: Pool(2).map(f, items) with defaults; {args.runs} rounds, medians")
    for name, func, n in (("tiny", tiny, args.items), ("2ms", two_ms, args.slow_items)):
        items = list(range(n))
        cases = [("multiprocessing.Pool.map", lambda: timed(mp, func, items)),
                 ("memvisor.Pool.map", lambda: timed(mv, func, items)),
                 ("memvisor.Pool.map, chunksize=1", lambda: timed(mv, func, items, chunksize=1))]
        took = {c: [] for c, _ in cases}
        for i in range(args.runs):
            for case, run in cases:
                took[case].append(run())
            print(f"  {name} round {i + 1}: " + ", ".join(
                f"{c} {took[c][-1]:.2f} s" for c, _ in cases), flush=True)
        base = statistics.median(took[cases[0][0]])
        print(f"{name}: {n} items (items/s, ratio to multiprocessing in the same run)")
        for case, _ in cases:
            med = statistics.median(took[case])
            print(f"  {case:<32} {n / med:10,.0f} items/s  {base / med:5.2f}x")


if __name__ == "__main__":
    main()
