#!/usr/bin/env python3
"""memvisor.Pool's start-up: `Pool(2)` and its first `map(f, range(10))`, this tree against
another, alternating, each sample a fresh interpreter (what a short script pays).

    python3 bench/pool_map_start.py --against /path/to/other/tree [--rounds 10] [--hold N]
        [--file-handler] [--imports asyncio,decimal,...]

A tree is a source tree (worker-api/python and build/memvisor under it); --against-bin
picks the other side's binary (default: this tree's, so that only the Python side differs).
Each side runs from a copy of its worker-api/python with byte code compiled (an installed
package has it; a tree run with PYTHONDONTWRITEBYTECODE=1 compiles every module at each
import). --hold N: the caller holds N small lists (a program with data) when it makes the
pool. --file-handler: the caller's main module opens a logging FileHandler at its import (on
fd 3: a fresh interpreter's first fd; before the fd-move change its Pool started its
template rather than fork it, which imported the caller's modules again). --imports M1,M2:
the caller imports those modules first (a program's own imports, which a started template
pays again). Prints, per side, the medians and ranges of: Pool() (its import included), the
first map, the two together, and multiprocessing.Pool(2) and its first map in the same rounds.
Measures, asserts nothing. Use /usr/bin/python3 (a pyenv shim adds its own start-up).
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.normpath(os.path.join(HERE, ".."))

CHILD = r'''
import os, sys, time
sys.path.insert(0, sys.argv[1])
hold = [[i] for i in range(int(sys.argv[3]))]
for name in sys.argv[5].split(","):  # --imports: a program's modules
    if name:
        __import__(name)
if sys.argv[4] != "-":  # --file-handler: a logging FileHandler opened at import (fd 3)
    import logging
    logging.getLogger("start").addHandler(logging.FileHandler(sys.argv[4]))


def f(x):
    return x * x


if __name__ == "__main__":
    t0 = time.monotonic()
    if sys.argv[2] == "mp":
        import multiprocessing
        p = multiprocessing.get_context("fork").Pool(2)
    else:
        import memvisor
        p = memvisor.Pool(2)
    t1 = time.monotonic()
    assert p.map(f, range(10)) == [x * x for x in range(10)]
    t2 = time.monotonic()
    p.close()
    p.join()
    print(f"{(t1 - t0) * 1e3:.2f} {(t2 - t1) * 1e3:.2f}")
'''


def side(tree, work, name):
    """A copy of tree's worker-api/python, byte-compiled: its path."""
    dst = os.path.join(work, name)
    shutil.copytree(os.path.join(tree, "worker-api", "python"), dst,
                    ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "compileall", "-q", dst], check=True,
                   stdout=subprocess.DEVNULL)
    return dst


def sample(script, pydir, kind, binary, hold, cwd, log="-", imports=""):
    env = dict(os.environ, MEMVISOR_BIN=binary)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    out = subprocess.run([sys.executable, script, pydir, kind, str(hold), log, imports],
                         env=env, cwd=cwd,
                         capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        raise SystemExit(f"{kind} {pydir}: {out.stderr}")
    return [float(x) for x in out.stdout.split()]


def show(label, rows):
    cols = list(zip(*rows))
    total = [a + b for a, b in rows]
    parts = []
    for name, xs in (("Pool()", cols[0]), ("first map", cols[1]), ("both", total)):
        parts.append(f"{name} {statistics.median(xs):6.1f} ({min(xs):.0f}-{max(xs):.0f})")
    print(f"{label:8} " + "   ".join(parts) + " ms")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--against", required=True, help="the other source tree")
    ap.add_argument("--against-bin", help="its memvisor (default: this tree's build)")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--hold", type=int, default=0, help="small lists the caller holds")
    ap.add_argument("--imports", default="", help="modules the caller imports (comma-separated)")
    ap.add_argument("--file-handler", action="store_true",
                    help="the caller opens a logging FileHandler at its import")
    args = ap.parse_args()
    binary = os.environ.get("MEMVISOR_BIN", os.path.join(SOURCE, "build", "memvisor"))
    other_bin = args.against_bin or binary
    work = tempfile.mkdtemp(prefix="memvisor-bench-start-")
    try:
        script = os.path.join(work, "start.py")
        with open(script, "w") as f:
            f.write(CHILD)
        this, other = side(SOURCE, work, "this"), side(args.against, work, "other")
        runs = os.path.join(work, "runs")
        os.mkdir(runs)
        log = os.path.join(work, "caller.log") if args.file_handler else "-"
        got = {"this": [], "other": [], "mp": []}
        for i in range(args.rounds):
            order = [("this", this, binary), ("other", other, other_bin)]
            if i % 2:
                order.reverse()
            for name, pydir, b in order:
                got[name].append(sample(script, pydir, "memvisor", b, args.hold, runs, log,
                                          args.imports))
            got["mp"].append(sample(script, this, "mp", binary, args.hold, runs, log,
                                    args.imports))
        print(f"{args.rounds} rounds, alternating, {sys.executable}, caller holding "
              f"{args.hold} lists{', a FileHandler at import' if args.file_handler else ''}"
              f"{', importing ' + args.imports if args.imports else ''}; this: {SOURCE} "
              f"({binary}); other: {args.against} "
              f"({other_bin})")
        for name in ("this", "other", "mp"):
            show(name, got[name])
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
