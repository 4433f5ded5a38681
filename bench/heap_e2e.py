#!/usr/bin/env python3
"""heap_e2e: what leak attribution costs a batch, end to end through memvisor (docs/leaks.md).

    python3 bench/heap_e2e.py --build build [--rounds 3] [--tasks 400]

The same batch, one worker, under each [leak] setting, configurations taking turns within each
round (the machine is shared: peers in one round see the same noise). The figure is the time
the tasks took (the sum of the results' duration_ms: worker start-up excluded), the median of
the rounds, with its ratio to the group's first configuration (no attribution at all:
[leak] detect = no). The worker's peak memory (the largest mem_peak in the results,
the kernel's) shows what PYTHONMALLOC=malloc costs in memory. Experiments are off
([leak] confirm = off): nothing leaks here, and the figures are about counting.

  C, bench/malloc_task_worker (api), 20,000 allocator calls per task:
      detect=no | heap=off (the worker's own mallinfo2 with each answer) | heap=preload
  Python api (memvisor_worker) and Python lines, a JSON/dict/str task:
      detect=no | heap=off (api: its own figures) | preload, pymalloc | preload +
      PYTHONMALLOC=malloc (what heap=auto does)

And what PYTHONMALLOC=malloc costs in memory: the peak RSS of a Python process that holds
500,000 small tuples, under pymalloc and under malloc (glibc's chunks are 32 bytes at least;
pymalloc packs small objects to 8 or 16 bytes).

Measures; asserts nothing.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, ".."))

PY_TASK = r'''
import json, os, sys
sys.path.insert(0, os.path.join(sys.argv[2], "worker-api", "python"))

def work(n):
    out = 0
    keep = []
    for i in range(n):
        d = {"id": i, "name": f"user{i}", "tags": [str(j) for j in range(12)],
             "score": i * 1.5, "nested": {"a": [i, i + 1], "b": "x" * (i % 50)}}
        e = json.loads(json.dumps(d))
        words = (e["name"] + "," + ",".join(e["tags"])).split(",")
        keep.append(tuple(words))
        out += len(words)
    return out

if sys.argv[1] == "lines":
    for line in sys.stdin:
        print(work(int(line)), flush=True)
else:
    import memvisor_worker
    memvisor_worker.main(lambda t: str(work(int(t.text))))
'''

BASE = ["-o", "supervisor.workers=1", "-o", "leak.confirm=off"]
NONE = ["-o", "leak.detect=no", "-o", "leak.heap=off"]
OFF = ["-o", "leak.heap=off"]
PYMALLOC = ["-o", "leak.heap=preload", "-o", "leak.python_malloc=no"]
PRELOAD = ["-o", "leak.heap=preload"]


def groups(build, script):
    c = [os.path.join(build, "bench", "malloc_task_worker")]
    py = [sys.executable, script]
    return [
        ("C malloc-heavy, api", "api", c, "20000",
         [("no attribution", NONE), ("worker's own figures", OFF), ("heap preload", PRELOAD)]),
        ("Python, api", "api", py + ["api", ROOT], "300",
         [("no attribution", NONE), ("worker's own figures", OFF),
          ("preload, pymalloc", PYMALLOC), ("preload + PYTHONMALLOC=malloc", PRELOAD)]),
        ("Python, lines", "lines", py + ["lines", ROOT], "300",
         [("no attribution", NONE), ("preload, pymalloc", PYMALLOC),
          ("preload + PYTHONMALLOC=malloc", PRELOAD)]),
    ]


def one(build, tmp, protocol, cmd, task, n, opts):
    tasks = os.path.join(tmp, "tasks.txt")
    results = os.path.join(tmp, "results.jsonl")
    with open(tasks, "w") as f:
        f.write((task + "\n") * n)
    if os.path.exists(results):
        os.unlink(results)
    argv = [os.path.join(build, "memvisor"), "run", "-o", f"supervisor.state_dir={tmp}/state",
            "-o", f"worker.protocol={protocol}"] + BASE + opts + \
        ["--tasks", tasks, "--results", results, "--"] + cmd
    env = dict(os.environ)
    env.pop("PYTHONMALLOC", None)
    t = time.monotonic()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   env=env)
    wall = time.monotonic() - t
    seconds = peak = heap = 0
    with open(results) as f:
        for line in f:
            r = json.loads(line)
            seconds += (r.get("duration_ms") or 0) / 1000.0
            peak = max(peak, r.get("mem_peak") or 0)
            heap += r.get("heap_source") is not None
    return seconds, wall, peak, heap


SMALL = ("import resource\n"
         "keep = [(i, i + 1, i + 2) for i in range(500000)]\n"
         "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n")


def small_objects_rss(pymalloc):
    env = dict(os.environ)
    env.pop("PYTHONMALLOC", None)
    if pymalloc:
        env["PYTHONMALLOC"] = pymalloc
    out = subprocess.run([sys.executable, "-c", SMALL], env=env, check=True,
                         stdout=subprocess.PIPE).stdout
    return int(out) / 1024.0  # KiB -> MiB


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--tasks", type=int, default=400)
    args = ap.parse_args()
    build = os.path.abspath(args.build)
    tmp = tempfile.mkdtemp(prefix="mv-heap-e2e-")
    script = os.path.join(tmp, "py_task.py")
    with open(script, "w") as f:
        f.write(PY_TASK)
    try:
        for title, protocol, cmd, task, cfgs in groups(build, script):
            times = {name: [] for name, _ in cfgs}
            walls = {name: [] for name, _ in cfgs}
            peaks, counted = {}, {}
            for _ in range(args.rounds):
                for name, opts in cfgs:
                    s, w, p, h = one(build, tmp, protocol, cmd, task, args.tasks, opts)
                    times[name].append(s)
                    walls[name].append(w)
                    peaks[name] = max(peaks.get(name, 0), p)
                    counted[name] = h
            base = statistics.median(times[cfgs[0][0]])
            print(f"{title}: {args.tasks} tasks, median of {args.rounds} rounds")
            for name, _ in cfgs:
                m = statistics.median(times[name])
                print(f"  {name:<30} tasks {m:6.3f} s {m / base:5.2f}x  (batch "
                      f"{statistics.median(walls[name]):6.3f} s)  worker peak "
                      f"{peaks[name] / 1048576:5.1f} MiB  heap figures {counted[name]}")
        base, mal = small_objects_rss(None), small_objects_rss("malloc")
        print(f"Python holding 500,000 small tuples: peak RSS {base:.1f} MiB under pymalloc, "
              f"{mal:.1f} MiB under PYTHONMALLOC=malloc ({mal / base:.2f}x)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
