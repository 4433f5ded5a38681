#!/usr/bin/env python3
"""truth_worker: a worker that measures itself, for the tests that hold memvisor's per-task
figures against ground truth (tests/check_truth.c).

For every task it reads, at the start and at the end of the task, its own cgroup's usage and
peak and its own /proc/self/statm (private = resident - shared, as memvisor computes it), and
answers with them as JSON:

    {"task": "spike 50", "start": {...}, "end": {...}, "cgroup": "v1", "pid": N}

with each reading {"usage": B, "peak": B, "priv": B, "rss": B, "heap": B, "free": B}
(usage/peak: -1 when it has no memory cgroup of its own; heap: glibc's mallinfo2() uordblks +
hblkhd, the bytes malloc has handed out; free: its fordblks, the free bytes it holds; -1 when
unknown). The end reading is taken after the work, just before the answer
is written. On v1 "peak" is memory.max_usage_in_bytes, which memvisor resets at each task's
start: the worker sees memvisor's window. On v2, memory.peak read through a new fd is the
cgroup's peak since its creation. The worker never writes it: on 6.12 a write through any fd
resets the watermark every fd's window is kept from, so it would erase memvisor's.

Task lines:
    ok            nothing
    spike MIB     touch MIB MiB and free it again (a peak, nothing retained)
    leak MIB      touch MIB MiB and keep it
    say TEXT      write TEXT on stdout first (a stray line, lines mode only), then answer
    answer MIB    keep nothing and answer MIB MiB: the answer's JSON gets "pad", MIB MiB of
                  "x" (made after the end reading: the answer is no part of what the task
                  kept; the worker drops it once written)
    sleep MS      sleep MS milliseconds

Modes: `truth_worker.py` is a `lines` worker (one task per stdin line, one answer per stdout
line, flushed); `truth_worker.py --api` uses memvisor_worker (the api protocol).
`--no-flush` leaves stdout buffered (a lines worker that forgets to flush);
`--print-at-start` writes a line on stdout before reading any task.
"""
import json
import os
import sys
import time

PAGE = os.sysconf("SC_PAGE_SIZE")
MIB = 1 << 20
kept = []


def cgroup_dir():
    """This process's memory cgroup directory, or None."""
    with open("/proc/self/cgroup") as f:
        lines = f.read().splitlines()
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            return "/sys/fs/cgroup/memory" + path
    for line in lines:
        if line.startswith("0::"):
            for root in ("/sys/fs/cgroup", "/sys/fs/cgroup/unified"):
                d = root + line[3:]
                if os.path.exists(d + "/memory.current"):
                    return d
    return None


CG = cgroup_dir()
VERSION = None
if CG and os.path.exists(CG + "/memory.usage_in_bytes"):
    USAGE, PEAK, VERSION = CG + "/memory.usage_in_bytes", CG + "/memory.max_usage_in_bytes", "v1"
elif CG:
    USAGE, PEAK, VERSION = CG + "/memory.current", CG + "/memory.peak", "v2"
else:
    USAGE = PEAK = None



def number(path):
    if not path:
        return -1
    try:
        with open(path) as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return -1


def mallinfo2():
    """glibc's mallinfo2 through ctypes (2.33+), as memvisor_worker reads it, or None."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                    "worker-api", "python"))
    from memvisor_worker import _mallinfo2  # noqa: PLC0415

    return _mallinfo2() or None


MALLINFO2 = mallinfo2()


def heap():
    """(live, free) heap bytes as glibc's allocator counts them."""
    if MALLINFO2 is None:
        return -1, -1
    mi = MALLINFO2()
    return mi.uordblks + mi.hblkhd, mi.fordblks


def reading():
    with open("/proc/self/statm") as f:
        fields = f.read().split()
    resident, shared = int(fields[1]), int(fields[2])
    live, free = heap()
    return {"usage": number(USAGE), "peak": number(PEAK),
            "priv": max(resident - shared, 0) * PAGE, "rss": resident * PAGE, "heap": live,
            "free": free}


def touch(mib):
    return b"\x01" * (mib * MIB)  # written, so every page is charged


def work(line, out):
    # The task's words first, and only what is used of them: a big task's padding (a third
    # word) is the task's carrier, not part of what it does (the readings must not hold it).
    words = line.split(None, 2)
    cmd, arg = (words[0] if words else ""), (words[1] if len(words) > 1 else "0")
    said = " ".join(words[1:]) if cmd == "say" else ""
    del words
    start = reading()
    if cmd == "spike":
        block = touch(int(arg))
        del block
    elif cmd == "leak":
        kept.append(touch(int(arg)))
    elif cmd == "say" and out is not None:
        out.write(said + "\n")
        out.flush()
    elif cmd == "sleep":
        time.sleep(int(arg) / 1000)
    end = reading()
    answer = {"task": line, "start": start, "end": end, "cgroup": VERSION, "pid": os.getpid()}
    if cmd == "answer":
        answer["pad"] = "x" * (int(arg) * MIB)
    return json.dumps(answer)


def lines_main(flush):
    if "--print-at-start" in sys.argv:
        print("hello from start-up", flush=True)
    out = sys.stdout
    for raw in sys.stdin:
        out.write(work(raw.strip(), out) + "\n")  # nothing of the answer kept
        if flush:
            out.flush()


def api_main():
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path.insert(0, os.path.join(here, "..", "..", "worker-api", "python"))
    import memvisor_worker

    memvisor_worker.main(lambda task: work(task.text.strip(), None))


if __name__ == "__main__":
    if "--api" in sys.argv:
        api_main()
    else:
        lines_main("--no-flush" not in sys.argv)
