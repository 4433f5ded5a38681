"""scenarios_third: the third held-out set's task kinds (docs/leak-suite.md, "Held out, third
set"). Written before the detector was touched, to see how it generalises to real-world shapes
neither earlier set has: a buffer kept alive through a memoryview slice, lru_cache on a method
(self kept), a class registry keyed by id(), the re module's cache churning, a leak that starts
after a kind's 100th call, a producer whose items another kind frees, a leak below min_slope,
a 1 MiB leak that recycles its workers, leaks under max_tasks, a thread that keeps memory after
its task returned, mmap.mmap regions kept.

Same contract as scenarios.py: ``kind(i, arg) -> str``, one label each in THIRD_KINDS; the
figures in each docstring were measured with the kind alone (`python3 tests/leaks/measure.py
KIND`: tracemalloc under PYTHONMALLOC=malloc over 400 tasks after 20, and RSS).
"""
import array
import functools
import mmap
import re
import threading
import time

LEAK, CLEAN, PLATEAU = "leak", "clean", "plateau"

# ---- a buffer kept alive by a view of a few bytes ----------------------------------------

_VIEWS = []


def view_leak(i, arg):
    """Decodes a 32 KiB frame of doubles (array('d'), a numpy-like buffer) and keeps a
    memoryview of its 4-value header "for the index": the view keeps the whole buffer (the
    exporter) alive. 33,209 bytes per task (RSS 32,983)."""
    frame = array.array("d", [float(arg % 251)]) * 4096
    _VIEWS.append(memoryview(frame)[:4])
    return f"views {len(_VIEWS)}"


def view_temp(i, arg):
    """The same decoding done right on a 1 MiB frame: slices through memoryviews, a
    cast, a sum; views released, nothing kept. Clean."""
    frame = array.array("d", [float(arg % 13)]) * (128 * 1024)
    with memoryview(frame) as mv:
        head = mv[:1024].tolist()
        with mv.cast("B") as raw:
            total = sum(raw[:4096])
    return f"view {len(head)} {total}"


# ---- lru_cache on a method: every instance kept -----------------------------------------


class _Pricer:
    def __init__(self, arg):
        self.table = bytes(24 * 1024)  # the per-request state the instance carries
        self.arg = arg

    @functools.lru_cache(maxsize=None)  # noqa: B019 (the leak this kind is about)
    def price(self, qty):
        return (self.arg * qty) % 9973


def method_lru(i, arg):
    """A per-request object whose method is wrapped in lru_cache(maxsize=None): the cache
    keys on self, so every request's object (and its 24 KiB table) is kept. 25,015 bytes per
    task (RSS 23,644)."""
    p = _Pricer(arg)
    return f"price {p.price(3) + p.price(5)}"


# ---- a class registry keyed by id() ------------------------------------------------------


class _Conn:
    registry = {}

    def __init__(self, arg):
        self.buf = bytearray(20 * 1024)
        self.peer = f"10.0.{arg % 256}.{arg // 256 % 256}"
        _Conn.registry[id(self)] = self  # "for the admin page"; close() forgets to remove it

    def close(self):
        self.buf = bytearray(20 * 1024)  # reset, not freed: the object stays registered


def id_registry(i, arg):
    """A connection object registers itself in a class-level dict keyed by id(self); close()
    never removes it: ~21 KiB kept per task. 20,802 bytes per task (RSS 20,849)."""
    c = _Conn(arg)
    c.close()
    return f"conns {len(_Conn.registry)}"


class _Conn2:
    registry = {}

    def __init__(self, arg):
        self.buf = bytearray(20 * 1024)
        _Conn2.registry[id(self)] = self

    def close(self):
        del _Conn2.registry[id(self)]


def id_registry_ok(i, arg):
    """The same registry, close() removes the entry. Clean."""
    c = _Conn2(arg)
    n = len(_Conn2.registry)
    c.close()
    return f"conns {n}"


# ---- the re module's cache: bounded, churned ----------------------------------------------


def re_churn(i, arg):
    """Compiles 12 patterns that embed the request's values (re.match with a new pattern
    string each time: the module's cache, 512 entries in CPython 3.11, fills in ~43 tasks,
    then evicts its oldest). A plateau. 813 bytes per task over 400 tasks (3,128 in the first
    quarter, 39 in the last; RSS 1,731): ~1.3 MiB at most, ~57 ms a task."""
    hits = 0
    for k in range(12):
        pat = rf"^user-{arg}-{k}-(\d+)\.(json|xml|csv)$|^(?P<alt>[a-z]{{3,9}})-{arg % 97}$"
        hits += re.match(pat, f"user-{arg}-{k}-12.json") is not None
    return f"re {hits}"


# ---- a leak that starts late --------------------------------------------------------------

_LATE_CALLS = [0]
_LATE_KEPT = []


def late_start(i, arg):
    """Well behaved for its first 100 calls in a process; then (a feature flag flips) keeps
    each request's 24 KiB context. 19,783 bytes per task over tasks 20-420
    (5,208 in the first quarter, 24,658 in the last)."""
    _LATE_CALLS[0] += 1
    ctx = bytes(24 * 1024)
    if _LATE_CALLS[0] > 100:
        _LATE_KEPT.append(ctx)
    return f"late {len(_LATE_KEPT)}"


# ---- producer / consumer: one kind's allocations freed by another's tasks --------------

_QUEUE = []


def produce(i, arg):
    """Enqueues a 24 KiB job; `consume` tasks drain the queue. Alone it grows (24 KiB a
    task: 24,658 bytes measured); in its workload, beside `consume` (drains
    every job, 1 task in 5 against its 2), the queue stays short: clean."""
    _QUEUE.append(bytes(24 * 1024))
    return f"queued {len(_QUEUE)}"


def consume(i, arg):
    """Drains every queued job (frees what `produce` allocated). Clean."""
    n = len(_QUEUE)
    _QUEUE.clear()
    return f"consumed {n}"


# ---- a leak below min_slope ---------------------------------------------------------------

_CRUMBS = []


def small_leak(i, arg):
    """Keeps a 6 KiB trace per task: about a third of memvisor's default min_slope (16
    KiB). 6,226 bytes per task (RSS 5,519)."""
    _CRUMBS.append(bytes(6 * 1024))
    return f"crumbs {len(_CRUMBS)}"


# ---- a big leak -----------------------------------------------------------------------------

_BIG = []


def big_leak(i, arg):
    """Keeps a 1 MiB decoded image per task (bytearray, touched): its workers recycle on
    memory (the workload's memory_soft) every few dozen of its tasks. 1,048,682 bytes per
    task (RSS 1,052,672)."""
    b = bytearray(1024 * 1024)
    for k in range(0, len(b), 4096):
        b[k] = k & 0xFF
    _BIG.append(b)
    return f"big {len(_BIG)}"


def checksum(i, arg):
    """A small CPU task over a few temporaries. Clean."""
    data = ("%d," % arg * 200).encode()
    return f"sum {sum(data) % 65521}"


# ---- a thread that keeps memory after its task returned ---------------------------------

_BG_KEPT = []


def _bg_keep(n):
    time.sleep(0.002)
    _BG_KEPT.append(bytes(n))


def thread_leak(i, arg):
    """Hands its 24 KiB result to a background thread that stores it ~2 ms later, after the
    task has answered (the allocation lands in whatever task runs then); the thread ends.
    24,770 bytes per task (RSS 10,209: the threads' stacks come and go)."""
    threading.Thread(target=_bg_keep, args=(24 * 1024,), daemon=True).start()
    return f"bg {len(_BG_KEPT)}"


def _bg_drop(n):
    time.sleep(0.002)
    b = bytes(n)
    del b


def thread_ok(i, arg):
    """The same thread, which drops its 24 KiB. Clean."""
    threading.Thread(target=_bg_drop, args=(24 * 1024,), daemon=True).start()
    return "bg ok"


# ---- mmap.mmap regions kept ---------------------------------------------------------------

_MAPS = []


def mmap_keep(i, arg):
    """Writes a 32 KiB spill region (mmap.mmap(-1, ...): anonymous, no fd) and keeps it in
    a list "for a retry": a mapping per task, no malloc. 145 bytes per task
    in tracemalloc (the mmap object), RSS 32,768."""
    m = mmap.mmap(-1, 32 * 1024)
    m.write(b"%08d" % arg * 4096)
    _MAPS.append(m)
    return f"maps {len(_MAPS)}"


def mmap_temp(i, arg):
    """A 512 KiB mapping written, read and closed. Clean."""
    m = mmap.mmap(-1, 512 * 1024)
    m.write(b"%08d" % arg * 65536)
    m.seek(0)
    head = m.read(16)
    m.close()
    return f"map {head[:8].decode()}"


THIRD_KINDS = {
    "view_leak": (view_leak, LEAK),
    "view_temp": (view_temp, CLEAN),
    "method_lru": (method_lru, LEAK),
    "id_registry": (id_registry, LEAK),
    "id_registry_ok": (id_registry_ok, CLEAN),
    "re_churn": (re_churn, PLATEAU),
    "late_start": (late_start, LEAK),
    "produce": (produce, CLEAN),
    "consume": (consume, CLEAN),
    "small_leak": (small_leak, LEAK),
    "big_leak": (big_leak, LEAK),
    "checksum": (checksum, CLEAN),
    "thread_leak": (thread_leak, LEAK),
    "thread_ok": (thread_ok, CLEAN),
    "mmap_keep": (mmap_keep, LEAK),
    "mmap_temp": (mmap_temp, CLEAN),
}
