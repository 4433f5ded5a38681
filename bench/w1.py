#!/usr/bin/env python3
"""W1, the leaky Python batch (issue 13 #5, DESIGN §9): memvisor against
multiprocessing.Pool(2, maxtasksperchild=20).imap_unordered(chunksize=50) in one run.

    w1.py BUILD [--tasks 20000] [--runs 3] [--python /usr/bin/python3]

Each task: the SHA-256 of a 1 KiB buffer made from the task number, and 64 KiB (touched)
kept for good in a global list (the leak). 2 workers. memvisor runs `memvisor run` on a task
file of numbers with the results to a file, every setting at its default but the ones named:
  module + template   the Python module (bench/w1_worker.py), [worker] template = yes: the
                      interpreter and its imports start once, each replacement is forked
  lines               bench/w1_lines.py, one interpreter per worker (no template: lines)
each lock-step (prefetch 1) and with prefetch 64, at a 128 MiB soft limit and at 32 MiB
(frequent recycling). Times are wall clock from start to exit, start-up included; rounds
alternate the peer and memvisor; medians are compared (the machine is shared: only ratios
within one run mean anything). Measures, asserts nothing. Targets: module + template >= 1.5x
the peer, lines >= 1.0x, at either limit.

The ceiling rows are what no supervisor can beat on this machine: 2 processes forked from
this script run the task in a loop, a fresh fork every time a worker would reach the limit
(the limit less a 10 MiB interpreter, in 64 KiB tasks), with no IPC, no results and no
accounting at all. A target above the ceiling cannot be met by any supervisor here. The
lines ceiling is the same for a worker that cannot be forked from a template: this script
starts a fresh `python3 w1_lines.py` at every limit, 2 at a time, writes it all its lines at
once and reads its answers from a pipe (no supervisor, no results file, no accounting).
"""

import argparse
import concurrent.futures
import hashlib
import json
import multiprocessing
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
KEPT = []
MiB = 1 << 20


def leaky(n):
    buf = n.to_bytes(8, "little") * 128
    KEPT.append(buf * 64)
    return hashlib.sha256(buf).hexdigest()


def run_pool(n):
    t0 = time.monotonic()
    done = 0
    with multiprocessing.Pool(2, maxtasksperchild=20) as pool:
        for _ in pool.imap_unordered(leaky, range(n), chunksize=50):
            done += 1
    took = time.monotonic() - t0
    assert done == n
    return {"took": took, "recycles": None, "peak": None}


def run_ceiling(n, soft):
    per = max(1, (soft - 10 * MiB) // (64 << 10))
    t0 = time.monotonic()
    start, running = 0, 0
    while start < n or running:
        while running < 2 and start < n:
            count = min(per, n - start)
            if os.fork() == 0:
                for i in range(start, start + count):
                    leaky(i)
                os._exit(0)
            start += count
            running += 1
        _, status = os.wait()
        assert status == 0
        running -= 1
    return {"took": time.monotonic() - t0, "recycles": None, "peak": None}


def run_lines_ceiling(command, n, soft):
    per = max(1, (soft - 10 * MiB) // (64 << 10))

    def one(start):
        lines = "".join(f"{i}\n" for i in range(start, min(n, start + per))).encode()
        p = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        out, _ = p.communicate(lines)
        assert p.returncode == 0 and out.count(b"\n") == lines.count(b"\n")
        return out.count(b"\n")

    t0 = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(2) as ex:
        done = sum(ex.map(one, range(0, n, per)))
    assert done == n
    return {"took": time.monotonic() - t0, "recycles": None, "peak": None}


def run_memvisor(build, tmp, tasks, n, command, opts):
    results = os.path.join(tmp, "results.jsonl")
    if os.path.exists(results):
        os.unlink(results)
    argv = [os.path.join(build, "memvisor"), "run", "-o", "supervisor.workers=2", "-o",
            f"supervisor.state_dir={tmp}/state", "-o", "supervisor.keep_runs=1"]
    for o in opts:
        argv += ["-o", o]
    argv += ["--tasks", tasks, "--results", results, "--", *command]
    t0 = time.monotonic()
    rc = subprocess.call(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    took = time.monotonic() - t0
    pids, peak, ok = set(), 0, 0
    with open(results) as f:
        for line in f:
            r = json.loads(line)
            ok += r["status"] == "ok"
            pids.add(r["pid"])
            peak = max(peak, r.get("mem_peak") or 0)
    if rc != 0 or ok != n:
        raise SystemExit(f"memvisor exited {rc} with {ok} of {n} tasks ok")
    return {"took": took, "recycles": len(pids) - 2, "peak": peak}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("build")
    ap.add_argument("--tasks", type=int, default=20000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--python", default="/usr/bin/python3" if os.path.exists("/usr/bin/python3")
                    else sys.executable, help="the interpreter of memvisor's workers")
    args = ap.parse_args()
    build = os.path.abspath(args.build)
    tmp = tempfile.mkdtemp(prefix="memvisor-bench-w1-")
    tasks = os.path.join(tmp, "tasks.txt")
    with open(tasks, "w") as f:
        f.writelines(f"{i}\n" for i in range(args.tasks))
    module = [args.python, os.path.join(HERE, "w1_worker.py")]
    lines = [args.python, os.path.join(HERE, "w1_lines.py")]
    cases = [("multiprocessing.Pool maxtasksperchild=20 chunk 50", lambda: run_pool(args.tasks))]
    for soft in ("128M", "32M"):
        cases.append((f"ceiling: no supervisor, fork every {soft}",
                      lambda s=int(soft[:-1]) * MiB: run_ceiling(args.tasks, s)))
        cases.append((f"lines ceiling: no supervisor, python3 every {soft}",
                      lambda s=int(soft[:-1]) * MiB: run_lines_ceiling(lines, args.tasks, s)))
        for name, cmd, extra in (("module + template", module, ["worker.template=yes"]),
                                 ("lines", lines, ["worker.protocol=lines"])):
            for prefetch in (1, 64):
                opts = [f"limits.memory_soft={soft}", f"worker.prefetch={prefetch}", *extra]
                cases.append((f"{name}, prefetch {prefetch}, soft {soft}",
                              lambda c=cmd, o=opts: run_memvisor(build, tmp, tasks, args.tasks,
                                                                 c, o)))
    took = {name: [] for name, _ in cases}
    print(f"W1: {args.tasks} tasks (sha256 of 1 KiB, 64 KiB kept each), 2 workers; "
          f"{args.runs} rounds; python {args.python}")
    try:
        for i in range(args.runs):
            print(f"round {i + 1}")
            for name, run in cases:
                r = run()
                took[name].append(r["took"])
                extra = ""
                if r["recycles"] is not None:
                    extra = f"  {r['recycles']} recycles, worker peak {r['peak'] / MiB:.1f} MiB"
                print(f"  {name:<52} {args.tasks / r['took']:9,.0f} tasks/s{extra}", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    peer = statistics.median(took[cases[0][0]])
    print("medians (ratio to the peer in the same run)")
    for name, _ in cases:
        med = statistics.median(took[name])
        print(f"  {name:<52} {args.tasks / med:9,.0f} tasks/s  {peer / med:5.2f}x")


if __name__ == "__main__":
    main()
