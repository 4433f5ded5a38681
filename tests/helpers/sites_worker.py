"""sites_worker: a Python api worker for tests/check_experiment.c. Task lines "KIND N":

    keep    keeps a 48 KiB bytes object in a global list (a leak, at one line: THE LEAK)
    stash   keeps a 32 KiB bytearray in another global list (a second leak, another line)
    hold    keeps a 32 KiB bytearray in a third list (a third leak)
    pin     keeps a 32 KiB bytearray in a fourth list (a fourth leak)
    defer   adds 64 KiB of garbage to a pool a "collector" empties at the start of any task
            once it holds 8 (as a cyclic collector would): the pool's growth shows in the
            defer tasks, its frees in whatever task comes next
    ok      nothing

The kind is the line's first word (the worker names none). SITES_SNAPSHOT_SLEEP=S in the
environment: the worker takes S seconds more to answer a heap snapshot request.
"""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "worker-api", "python"))
import memvisor_worker  # noqa: E402

KEPT = []
STASH = []
HELD = []
PINNED = []
POOL = []


def handle(task):
    if len(POOL) >= 8:
        POOL.clear()
    kind = task.text.split()[0]
    if kind == "keep":
        KEPT.append(b"k" * (48 * 1024 + len(KEPT) % 7))  # THE LEAK
    elif kind == "stash":
        STASH.append(bytearray(32 * 1024))  # THE SECOND LEAK
    elif kind == "hold":
        HELD.append(bytearray(32 * 1024))
    elif kind == "pin":
        PINNED.append(bytearray(32 * 1024))
    elif kind == "defer":
        POOL.append(bytearray(64 * 1024))
    return kind


SLEEP = float(os.environ.get("SITES_SNAPSHOT_SLEEP", "0"))
if SLEEP > 0:
    _snapshot = memvisor_worker.Worker.snapshot

    def slow_snapshot(self):
        time.sleep(SLEEP)
        return _snapshot(self)

    memvisor_worker.Worker.snapshot = slow_snapshot

memvisor_worker.main(handle)
