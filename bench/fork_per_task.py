#!/usr/bin/env python3
"""fork_per_task: a process per task (`max_tasks = 1`) through memvisor with a warm template,
against `xargs -P2` starting one process per task, in one run (DESIGN §9, issue 13 #5).

    fork_per_task.py BUILD [--tasks 2000] [--runs 3] [--python /usr/bin/python3]

Two workloads, each its own peer, 2 workers / 2 processes at a time, the same task on both
sides (bench/fork_task.c and bench/fork_task.py: a hash of the task's text):
  C       xargs -P2 fork+exec of the C program      vs  the C api worker forked from a template
  Python  xargs -P2 python3 per task                vs  the Python module forked from a template
memvisor runs with [limits] max_tasks = 1, [worker] template = yes and [recycle]
max_concurrent = 2 (both slots may be replaced at once: with the default of 1 a slot waits for
the other's replacement), a memory cgroup per worker as in production (`--cgroup auto`, the
default: on v1 a slot's cgroup is reused for its next worker, docs/recycling.md; `--cgroup
off` shows memvisor without them, as the peer runs), every other setting at its default
(per-task accounting and leak detection on). The same with `[recycle] successor = yes` (each
slot's next worker started at its worker's last task), and the exec'd worker without a
template, are shown too; `--also` adds rows, and `--against BUILD` a row of another build's
memvisor (an A/B of two builds in one run; with the C worker and the Python module of BUILD's
source tree, the directory above it). Times are wall clock from start to exit, start-up
included (what a user waits for); rounds alternate peer and memvisor, and the medians are compared:
the machine is shared, so only ratios within one run mean anything. Measures, asserts nothing.
Targets (DESIGN §9): C >= 2x, Python >= 10x.

The ceiling row is what no supervisor can beat on this machine: the same program with
`--ceiling`, its start-up done once (the Python module imported, gc.freeze() as a template
does), then each task in a child forked from it, two at a time, the child writing its answer
and exiting; no exec, no IPC, no cgroup, no accounting. A target above it cannot be met.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def timed(argv, stdin_path, out_path):
    with open(stdin_path, "rb") as fin, open(out_path, "wb") as fout:
        t0 = time.monotonic()
        rc = subprocess.call(argv, stdin=fin, stdout=fout, stderr=subprocess.DEVNULL)
        took = time.monotonic() - t0
    if rc != 0:
        raise SystemExit(f"{argv[0]} exited {rc}")
    return took


def lines(path):
    with open(path, "rb") as f:
        return sum(1 for _ in f)


def peer(tmp, tasks, n, command):
    out = os.path.join(tmp, "peer.out")
    took = timed(["xargs", "-P2", "-n1", *command], tasks, out)
    assert lines(out) == n, f"the peer answered {lines(out)} of {n}"
    return took


def ceiling(tmp, tasks, n, command):
    out = os.path.join(tmp, "ceiling.out")
    took = timed([*command, "--ceiling"], tasks, out)
    assert lines(out) == n, f"the ceiling answered {lines(out)} of {n}"
    return took


def memvisor(tmp, build, tasks, n, command, template=True, cgroup="auto", extra=()):
    results = os.path.join(tmp, "results.jsonl")
    if os.path.exists(results):
        os.unlink(results)
    argv = [os.path.join(build, "memvisor"), "run", "-o", "supervisor.workers=2", "-o",
            "limits.max_tasks=1", "-o", "recycle.max_concurrent=2", "-o",
            f"worker.template={'yes' if template else 'no'}", "-o", f"supervisor.cgroup={cgroup}",
            *[a for o in extra for a in ("-o", o)],
            "-o", f"supervisor.state_dir={tmp}/state", "-o", "supervisor.keep_runs=1",
            "--tasks", tasks, "--results", results, "--", *command]
    took = timed(argv, os.devnull, os.path.join(tmp, "summary.txt"))
    assert lines(results) == n, f"memvisor answered {lines(results)} of {n}"
    return took


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("build")
    ap.add_argument("--tasks", type=int, default=2000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--cgroup", default="auto", help="memvisor's [supervisor] cgroup")
    ap.add_argument("--python", default="/usr/bin/python3" if os.path.exists("/usr/bin/python3")
                    else sys.executable, help="the interpreter both sides run (not a shim)")
    ap.add_argument("--only", choices=("c", "python"))
    ap.add_argument("--also", action="append", default=[], metavar="KEY=VALUE",
                    help="one more memvisor row, the template one with these options too "
                    "(comma-separated, e.g. recycle.spares=2,recycle.successor=no); repeatable")
    ap.add_argument("--against", metavar="BUILD",
                    help="one more row: the template one with another build's memvisor and "
                    "bench/fork_task (an A/B of two builds raced in one run)")
    args = ap.parse_args()
    build = os.path.abspath(args.build)
    tmp = tempfile.mkdtemp(prefix="memvisor-bench-fork-")
    tasks = os.path.join(tmp, "tasks.txt")
    with open(tasks, "w") as f:
        f.writelines(f"task-{i}\n" for i in range(args.tasks))
    c_prog = [os.path.join(build, "bench", "fork_task")]
    py_prog = [args.python, os.path.join(HERE, "fork_task.py")]
    workloads = [("C", c_prog), ("Python", py_prog)]
    if args.only:
        workloads = [w for w in workloads if w[0].lower() == args.only]
    print(f"fork_per_task: {args.tasks} tasks, a process each, 2 at a time; {args.runs} rounds; "
          f"memvisor cgroups {args.cgroup}; python {args.python}")
    try:
        for name, prog in workloads:
            cases = [
                ("xargs -P2, a process per task", lambda: peer(tmp, tasks, args.tasks, prog)),
                ("ceiling: no supervisor, fork per task",
                 lambda: ceiling(tmp, tasks, args.tasks, prog)),
                ("memvisor, forked from a template",
                 lambda: memvisor(tmp, build, tasks, args.tasks, prog, cgroup=args.cgroup)),
                ("memvisor, template + successors",
                 lambda: memvisor(tmp, build, tasks, args.tasks, prog, cgroup=args.cgroup,
                                  extra=("recycle.successor=yes",))),
                ("memvisor, exec'd (no template)",
                 lambda: memvisor(tmp, build, tasks, args.tasks, prog, template=False,
                                  cgroup=args.cgroup)),
            ] + [(f"memvisor, template, {o}",
                  lambda o=o: memvisor(tmp, build, tasks, args.tasks, prog, cgroup=args.cgroup,
                                       extra=o.split(",")))
                 for o in args.also]
            if args.against:
                other = os.path.abspath(args.against)
                # The other build's own Python task too, when its tree has one: it finds that
                # tree's worker-api/python, so an A/B of the Python module compares modules.
                opy = os.path.join(os.path.dirname(other), "bench", "fork_task.py")
                oprog = [os.path.join(other, "bench", "fork_task")] if name == "C" else \
                    [args.python, opy] if os.path.exists(opy) else prog
                cases.append((f"memvisor, template, build {args.against}",
                              lambda other=other, oprog=oprog: memvisor(
                                  tmp, other, tasks, args.tasks, oprog, cgroup=args.cgroup)))
            took = {c: [] for c, _ in cases}
            for i in range(args.runs):
                for case, run in cases:
                    took[case].append(run())
                print(f"  {name} round {i + 1}: " + ", ".join(
                    f"{case.split(',')[0] if not case.startswith('memvisor') else case[10:]} "
                    f"{took[case][-1]:.2f} s" for case, _ in cases), flush=True)
            base = statistics.median(took[cases[0][0]])
            print(f"{name}: medians (tasks/s, ratio to the peer in the same run)")
            for case, _ in cases:
                med = statistics.median(took[case])
                print(f"  {case:<50} {args.tasks / med:8,.0f} tasks/s  {base / med:5.2f}x")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
