#!/usr/bin/env python3
"""measure.py: what a Python kind of the leak suite keeps per task, measured with the kind
alone (the truth its label and docstring state; docs/leak-suite.md).

    python3 tests/leaks/measure.py [KIND]...      (every kind without arguments)
    python3 tests/leaks/measure.py --mix WORKLOAD

Each kind runs in a fresh interpreter (PYTHONMALLOC=malloc, tracemalloc on): WARM tasks,
then TASKS more; it prints the traced bytes kept per task over those (the slope of the
first and the last quarter as well: a plateau or a late leak shows there), the RSS growth
per task, and the mean time of a task.

--mix runs one worker's share of a Python workload's tasks (every other task line, in the
workload's order) in one interpreter and prints, per kind, the traced bytes its tasks kept
on average: the truth of a kind that depends on its neighbours (a producer whose items
another kind frees, a leak only after a given kind). Its first WARM lines are not counted.
"""
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
WARM, TASKS = 20, 400

CHILD = r"""
import os, random, sys, time, tracemalloc
sys.path.insert(0, sys.argv[2])
import scenarios
fn = scenarios.KINDS[sys.argv[1]][0]
rng = random.Random(1)
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
tracemalloc.start()
for i in range(1, WARM + 1):
    fn(i, rng.randrange(1_000_000))
traced, r0, t0, marks = [], rss(), time.perf_counter(), []
for i in range(WARM + 1, WARM + TASKS + 1):
    fn(i, rng.randrange(1_000_000))
    marks.append(tracemalloc.get_traced_memory()[0])
dt = (time.perf_counter() - t0) / TASKS
q = TASKS // 4
print(f"{sys.argv[1]:<16} {(marks[-1] - marks[0]) / (TASKS - 1):>10.0f} B/task  "
      f"first quarter {(marks[q] - marks[0]) / q:>9.0f}  last quarter "
      f"{(marks[-1] - marks[-q - 1]) / q:>9.0f}  rss {(rss() - r0) / TASKS:>9.0f} B/task  "
      f"{dt * 1e6:>8.0f} us/task")
""".replace("WARM", str(WARM)).replace("TASKS", str(TASKS))


MIX = r"""
import sys, tracemalloc
sys.path.insert(0, sys.argv[2])
import scenarios
from workloads import WORKLOADS
w = [w for w in WORKLOADS if w.name == sys.argv[1]][0]
lines = list(w.task_lines())[::2]
kept, count = {}, {}
tracemalloc.start()
for n, line in enumerate(lines):
    kind, i, arg = line.split()
    before = tracemalloc.get_traced_memory()[0]
    scenarios.KINDS[kind][0](int(i), int(arg))
    if n >= WARM:
        kept[kind] = kept.get(kind, 0) + tracemalloc.get_traced_memory()[0] - before
        count[kind] = count.get(kind, 0) + 1
for kind in sorted(kept):
    print(f"{w.name}: {kind:<16} {kept[kind] / count[kind]:>10.0f} B/task kept  "
          f"({count[kind]} tasks of one worker's {len(lines) - WARM})")
""".replace("WARM", str(WARM))


def main(kinds):
    sys.path.insert(0, HERE)
    import scenarios
    env = dict(os.environ, PYTHONMALLOC="malloc", MV_LEAKS_CTLEAK=os.path.join(
        HERE, "..", "..", "build", "leaks", "libctleak.so"))
    if kinds[:1] == ["--mix"]:
        for name in kinds[1:]:
            subprocess.run([sys.executable, "-c", MIX, name, HERE], env=env, check=False)
        return 0
    for kind in kinds or list(scenarios.KINDS):
        subprocess.run([sys.executable, "-c", CHILD, kind, HERE], env=env, check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
