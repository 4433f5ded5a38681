#!/usr/bin/env python3
"""W1 for two builds in one run: bench/w1.py's memvisor cases, build A and build B alternating
case by case, multiprocessing.Pool raced at the start and end of each round, so that a change
is compared in the same conditions on a shared host (docs/benchmarks.md).

    w1_ab.py BUILD_A BUILD_B [--tasks 20000] [--runs 3] [--python /usr/bin/python3] [--only TEXT]

--only keeps the cases whose name holds TEXT (e.g. `--only lines`, `--only "prefetch 64"`).

Prints each case's median tasks/s and its ratio to Pool's median, for A and B. Measures,
asserts nothing.
"""

import argparse
import os
import shutil
import statistics
import tempfile

import w1

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--tasks", type=int, default=20000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--python", default="/usr/bin/python3")
    ap.add_argument("--only", default="", help="run only the cases whose name holds this")
    args = ap.parse_args()
    n, builds = args.tasks, [os.path.abspath(args.a), os.path.abspath(args.b)]
    tmp = tempfile.mkdtemp(prefix="memvisor-bench-w1ab-")
    tasks = os.path.join(tmp, "tasks.txt")
    with open(tasks, "w") as f:
        f.writelines(f"{i}\n" for i in range(n))
    module = [args.python, os.path.join(HERE, "w1_worker.py")]
    lines = [args.python, os.path.join(HERE, "w1_lines.py")]
    cases = []
    for soft in ("128M", "32M"):
        for name, cmd, extra in (("module + template", module, ["worker.template=yes"]),
                                 ("lines", lines, ["worker.protocol=lines"])):
            for p in (1, 64):
                cases.append((f"{name}, prefetch {p}, soft {soft}", cmd,
                              [f"limits.memory_soft={soft}", f"worker.prefetch={p}", *extra]))
    cases = [c for c in cases if args.only in c[0]]
    took = {"pool": []}
    try:
        for r in range(args.runs):
            took["pool"].append(w1.run_pool(n)["took"])
            for name, cmd, opts in cases:
                for b in builds:
                    took.setdefault((name, b), []).append(
                        w1.run_memvisor(b, tmp, tasks, n, cmd, opts)["took"])
            took["pool"].append(w1.run_pool(n)["took"])
            print(f"round {r + 1} done", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    pool = n / statistics.median(took["pool"])
    print(f"multiprocessing.Pool: {pool:,.0f} tasks/s (median of {len(took['pool'])})")
    print(f"{'':42s}  {'A':>18s}  {'B':>18s}")
    for name, _, _ in cases:
        row = [f"{name:42s}"]
        for b in builds:
            t = n / statistics.median(took[(name, b)])
            row.append(f"{t:9,.0f}/s {t / pool:5.2f}x")
        print("  ".join(row))


if __name__ == "__main__":
    main()
