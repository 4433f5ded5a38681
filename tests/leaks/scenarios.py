"""scenarios: the task kinds of the labelled leak suite, from the classic Python leak stories.

Each kind is a function ``kind(i, arg) -> str`` (task number, a seeded random int) and one
label in KINDS:

  leak     keeps memory every task, forever (the detector must name it, by memory)
  fd       keeps a file descriptor every task (the detector must name it as a handle leak;
           the Python objects around the fd may be named as memory too: they are kept)
  clean    keeps nothing once the task is over (its temporaries may be big)
  plateau  keeps memory at first, then stops growing (a bounded cache warming up)

Sizes are chosen to be fair to a detector at memvisor's defaults (min_slope 16 KiB per
task): every memory leak keeps 20-40 KiB per task of its kind, the way a per-request leak
of a real service does; the clean kinds allocate as much or far more, and free it. State
lives in module globals, as it does in the programs these stories come from.
"""
import collections
import concurrent.futures
import ctypes
import functools
import json
import logging
import logging.handlers
import os
import socket
import tempfile
import threading

LEAK, FD, CLEAN, PLATEAU = "leak", "fd", "clean", "plateau"

# ---- a global list or dict that only grows ----------------------------------------------

_AUDIT = []


def append(i, arg):
    """An in-memory audit log nobody trims: ~24 KiB of JSON text kept per task."""
    _AUDIT.append(json.dumps({"task": i, "user": f"u{arg}", "body": "x" * 24000}))
    return f"audited {len(_AUDIT)}"


_SESSIONS = {}


def sessions(i, arg):
    """A session table keyed by a new id every task, never expired: ~22 KiB per task."""
    _SESSIONS[f"s{i}-{arg}"] = {"user": arg, "state": bytes(20000), "seen": [i] * 200}
    return f"sessions {len(_SESSIONS)}"


# ---- reference cycles, with and without __del__ -----------------------------------------


class _Node:
    def __init__(self, parent, payload):
        self.parent = parent
        self.children = []
        self.payload = payload
        if parent is not None:
            parent.children.append(self)


class _NodeDel(_Node):
    finalized = 0

    def __del__(self):
        _NodeDel.finalized += 1


def _tree(cls, n):
    root = cls(None, bytes(2048))
    for k in range(n):
        cls(root, bytes(2048 + k))
    return root


def cycles(i, arg):
    """A parent/child tree (every child points back): cyclic garbage, ~80 KiB, that only the
    cyclic collector frees. Not a leak: gc frees it (at its own pace)."""
    root = _tree(_Node, 40)
    return f"tree {len(root.children)}"


def cycles_del(i, arg):
    """The same with __del__: collectable since Python 3.4 (PEP 442). Not a leak."""
    root = _tree(_NodeDel, 40)
    return f"tree {len(root.children)} finalized {_NodeDel.finalized}"


# ---- unclosed files and sockets ----------------------------------------------------------

_DATA = None
_HANDLES = []
_SOCKETS = []


def _data_file():
    global _DATA
    if _DATA is None:
        # In the run's directory, which the runner removes (a worker may be killed).
        fd, _DATA = tempfile.mkstemp(prefix="mv-leaks-", dir=os.environ.get("MV_LEAKS_DIR"))
        os.write(fd, b"config=1\n" * 100)
        os.close(fd)
    return _DATA


def open_files(i, arg):
    """Opens a config file per task and keeps the handle "for later": one fd per task."""
    f = open(_data_file(), "rb")
    f.read(16)
    _HANDLES.append(f)
    return f"open {len(_HANDLES)}"


def sockets(i, arg):
    """A connection object per task, parked in a pool nobody closes: two fds per task."""
    a, b = socket.socketpair()
    a.sendall(b"ping")
    b.recv(4)
    _SOCKETS.append((a, b))
    return f"sockets {len(_SOCKETS)}"


# ---- functools.lru_cache unbounded and bounded; a hand-made LRU --------------------------


@functools.lru_cache(maxsize=None)
def _render_page(key):
    return ("<li>%d</li>" % key) * 2000


def lru_unbounded(i, arg):
    """lru_cache(maxsize=None) on a key that is new every task: ~26 KiB kept per task."""
    return f"page {len(_render_page(i * 100003 + arg))}"


@functools.lru_cache(maxsize=32)
def _render_thumb(key):
    return bytes([key % 251]) * 20000


def lru_bounded(i, arg):
    """lru_cache(maxsize=32): fills with 32 entries (~640 KiB), then evicts: plateaus."""
    return f"thumb {len(_render_thumb(arg % 400))}"


class _LRU:
    def __init__(self, capacity):
        self.capacity = capacity
        self.items = collections.OrderedDict()

    def get(self, key, make):
        if key in self.items:
            self.items.move_to_end(key)
            return self.items[key]
        value = self.items[key] = make(key)
        if len(self.items) > self.capacity:
            self.items.popitem(last=False)
        return value


_PROFILES = _LRU(48)


def bounded_lru(i, arg):
    """A hand-made LRU of 48 profiles of 16 KiB: warms up, then stays the same size."""
    value = _PROFILES.get(arg % 300, lambda k: bytearray(16384))
    return f"profile {len(value)}"


# ---- big temporaries ----------------------------------------------------------------------


def dataset(i, arg):
    """Loads a "dataset" (dicts and their JSON text, ~2 MiB at its peak), summarises it, drops it."""
    rows = [{"id": k, "name": f"row-{k}-{arg}", "score": k * 0.5} for k in range(3000)]
    text = json.dumps(rows)
    total = sum(r["score"] for r in json.loads(text))
    return f"dataset {len(text)} {total:.0f}"


def report(i, arg):
    """Four 32 KiB scratch buffers, freed (the clean kind of the newcomer's worker)."""
    tmp = [bytearray(32 * 1024) for _ in range(4)]
    return f"report {len(tmp)}"


def keep32(i, arg):
    """Keeps one 32 KiB bytearray per task in a global list (the newcomer's leaky kind)."""
    _AUDIT.append(bytearray(32 * 1024))
    return f"kept {len(_AUDIT)}"


# ---- many small objects, with and without __slots__ -------------------------------------


class _Point:
    def __init__(self, x, y, label):
        self.x, self.y, self.label = x, y, label


class _SlotPoint:
    __slots__ = ("x", "y", "label")

    def __init__(self, x, y, label):
        self.x, self.y, self.label = x, y, label


_KEPT_POINTS = []


def objs_kept(i, arg):
    """Keeps 150 small objects (with a __dict__) and their labels per task: ~30 KiB."""
    _KEPT_POINTS.extend(_Point(k, arg, f"p{i}-{k}-{arg:08d}") for k in range(150))
    return f"points {len(_KEPT_POINTS)}"


def objs_temp(i, arg):
    """8,000 small objects with a __dict__ (~1 MiB), built and dropped."""
    pts = [_Point(k, k + arg, None) for k in range(8000)]
    return f"sum {sum(p.x for p in pts)}"


def slots_temp(i, arg):
    """8,000 small objects with __slots__ (~1 MiB), built and dropped."""
    pts = [_SlotPoint(k, k + arg, None) for k in range(8000)]
    return f"sum {sum(p.y for p in pts)}"


# ---- callbacks registered and never removed; logging handlers added per task ------------


class _Bus:
    def __init__(self):
        self.subscribers = []

    def subscribe(self, fn):
        self.subscribers.append(fn)
        return fn

    def unsubscribe(self, fn):
        self.subscribers.remove(fn)


_BUS = _Bus()


def callbacks(i, arg):
    """Subscribes a handler closing over the request's 24 KiB context; never unsubscribes."""
    ctx = bytearray(24 * 1024)
    _BUS.subscribe(lambda event, ctx=ctx: len(ctx) + len(event))
    return f"subscribers {len(_BUS.subscribers)}"


def callbacks_removed(i, arg):
    """The same, done right: unsubscribed at the end of the task."""
    ctx = bytearray(24 * 1024)
    fn = _BUS.subscribe(lambda event, ctx=ctx: len(ctx) + len(event))
    _BUS.unsubscribe(fn)
    return f"subscribers {len(_BUS.subscribers)}"


_LOG = logging.getLogger("mv-leaks.tasks")
_LOG.setLevel(logging.INFO)
_LOG.propagate = False  # nothing reaches stderr (memvisor's log)


def log_handler(i, arg):
    """Adds a buffering handler per task (instead of once at start-up) and logs the
    request: every handler keeps every record from then on (~20 KiB per task and growing)."""
    _LOG.addHandler(logging.handlers.MemoryHandler(capacity=1 << 30, flushLevel=100))
    _LOG.info("request %d body %s", i, "r" * 20000)
    return f"handlers {len(_LOG.handlers)}"


# ---- thread-locals ------------------------------------------------------------------------

_POOL = None
_TLS = threading.local()


def _pool():
    global _POOL
    if _POOL is None:
        _POOL = concurrent.futures.ThreadPoolExecutor(max_workers=2)
    return _POOL


def _tls_append(n):
    items = getattr(_TLS, "items", None)
    if items is None:
        items = _TLS.items = []
    items.append(bytes(n))
    return len(items)


def tls_cache(i, arg):
    """Runs on a long-lived thread pool and caches a 24 KiB result in a thread-local list
    that nothing clears: the pool's threads live forever, so does the list."""
    return f"tls {_pool().submit(_tls_append, 24000).result()}"


def _tls_scratch(n):
    buf = getattr(_TLS, "scratch", None)
    if buf is None:
        buf = _TLS.scratch = bytearray(n)
    buf[0] = (buf[0] + 1) % 256
    return buf[0]


def tls_scratch(i, arg):
    """A 512 KiB scratch buffer per pool thread, made once and reused: plateaus at two."""
    return f"scratch {_pool().submit(_tls_scratch, 512 * 1024).result()}"


# ---- parked generators --------------------------------------------------------------------

_PARKED = []


def _chunks(n):
    buf = bytearray(n)  # lives in the generator's frame until it finishes or is dropped
    for k in range(4):
        yield len(buf) + k


def parked_gen(i, arg):
    """Starts a generator holding a 24 KiB buffer, takes one item, parks it "to resume
    later", and never does."""
    g = _chunks(24 * 1024)
    first = next(g)
    _PARKED.append(g)
    return f"parked {len(_PARKED)} {first}"


def consumed_gen(i, arg):
    """The same generator, run to the end."""
    return f"consumed {sum(_chunks(24 * 1024))}"


# ---- a leak inside C code called through ctypes ------------------------------------------

_CLIB = None


def _clib():
    global _CLIB
    if _CLIB is None:
        _CLIB = ctypes.CDLL(os.environ["MV_LEAKS_CTLEAK"])
        _CLIB.ct_process.restype = ctypes.c_long
        _CLIB.ct_process.argtypes = [ctypes.c_long, ctypes.c_size_t]
        _CLIB.ct_process_free.restype = ctypes.c_long
        _CLIB.ct_process_free.argtypes = [ctypes.c_long, ctypes.c_size_t]
    return _CLIB


def ctypes_leak(i, arg):
    """A C library's parse call that mallocs 32 KiB and forgets it (tracemalloc cannot see
    it: only the process's own heap does)."""
    return f"c {_clib().ct_process(i, 32 * 1024)}"


def ctypes_ok(i, arg):
    """The same library's call that frees its 256 KiB scratch."""
    return f"c {_clib().ct_process_free(i, 256 * 1024)}"


# ---- held out: kinds added after the detector was designed (issue 12), run as they are ----
# Their workloads (workloads.py: memo_service, event_queue, c_arena_cache) were written once
# the mechanism was built and were not used to choose anything in it; docs/leak-suite.md
# says how they did.

_MEMO = {}


def memo_leak(i, arg):
    """Memoises a "query" keyed by the request (never repeats): nested lists, ~20 KiB kept."""
    key = (i, arg)
    if key not in _MEMO:
        _MEMO[key] = [[k, arg, "v" * 40] for k in range(220)]
    return f"memo {len(_MEMO)}"


def template_render(i, arg):
    """Renders a page from a template: ~1.5 MiB of strings, joined, measured, dropped."""
    rows = ["<tr><td>%d</td><td>%s</td></tr>" % (k, "x" * (k % 50)) for k in range(12000)]
    page = "".join(rows)
    return f"page {len(page)}"


def json_roundtrip(i, arg):
    """Builds a structure, dumps it, parses it back: all of it dropped."""
    doc = {"id": i, "items": [{"k": k, "tags": ["a", "b", str(arg)]} for k in range(1500)]}
    back = json.loads(json.dumps(doc))
    return f"roundtrip {len(back['items'])}"


_RECENT = []


def closure_registry(i, arg):
    """Keeps the last 64 handlers (closures over 8 KiB each), dropping older ones: plateaus
    at ~512 KiB."""
    ctx = bytearray(8 * 1024)
    _RECENT.append(lambda ctx=ctx: len(ctx))
    del _RECENT[:-64]
    return f"recent {len(_RECENT)}"


_BACKLOG = collections.deque()


def queue_backlog(i, arg):
    """Produces two 24 KiB events per task, consumes one: the backlog grows ~24 KiB a task."""
    _BACKLOG.append(bytes(24 * 1024))
    _BACKLOG.append(bytes(24 * 1024))
    _BACKLOG.popleft()
    return f"backlog {len(_BACKLOG)}"


class _Blob:
    def __init__(self, n):
        self.data = bytearray(n)


_WEAK = None


def weakref_cache(i, arg):
    """A WeakValueDictionary cache: its values go as soon as nobody holds them. Clean."""
    global _WEAK
    import weakref
    if _WEAK is None:
        _WEAK = weakref.WeakValueDictionary()
    blob = _WEAK.get(arg % 50)
    if blob is None:
        blob = _Blob(32 * 1024)
        _WEAK[arg % 50] = blob
    return f"weak {len(_WEAK)}"


_ERRORS = []


def _fails(n):
    buf = bytearray(n)  # held by the frame the traceback keeps
    raise ValueError(len(buf))


def stash_tracebacks(i, arg):
    """Keeps each caught exception "for the error report": its traceback holds the frame,
    and the frame its 24 KiB buffer. A leak."""
    try:
        _fails(24 * 1024)
    except ValueError as exc:
        _ERRORS.append(exc)
    return f"errors {len(_ERRORS)}"


def handled_errors(i, arg):
    """The same error caught and dropped: clean."""
    try:
        _fails(24 * 1024)
    except ValueError as exc:
        return f"handled {exc.args[0]}"


KINDS = {
    "append": (append, LEAK),
    "sessions": (sessions, LEAK),
    "cycles": (cycles, CLEAN),
    "cycles_del": (cycles_del, CLEAN),
    "open_files": (open_files, FD),
    "sockets": (sockets, FD),
    "lru_unbounded": (lru_unbounded, LEAK),
    "lru_bounded": (lru_bounded, PLATEAU),
    "bounded_lru": (bounded_lru, PLATEAU),
    "dataset": (dataset, CLEAN),
    "report": (report, CLEAN),
    "keep32": (keep32, LEAK),
    "objs_kept": (objs_kept, LEAK),
    "objs_temp": (objs_temp, CLEAN),
    "slots_temp": (slots_temp, CLEAN),
    "callbacks": (callbacks, LEAK),
    "callbacks_removed": (callbacks_removed, CLEAN),
    "log_handler": (log_handler, LEAK),
    "tls_cache": (tls_cache, LEAK),
    "tls_scratch": (tls_scratch, PLATEAU),
    "parked_gen": (parked_gen, LEAK),
    "consumed_gen": (consumed_gen, CLEAN),
    "ctypes_leak": (ctypes_leak, LEAK),
    "ctypes_ok": (ctypes_ok, CLEAN),
    "memo_leak": (memo_leak, LEAK),
    "template_render": (template_render, CLEAN),
    "json_roundtrip": (json_roundtrip, CLEAN),
    "closure_registry": (closure_registry, PLATEAU),
    "queue_backlog": (queue_backlog, LEAK),
    "weakref_cache": (weakref_cache, CLEAN),
    "stash_tracebacks": (stash_tracebacks, LEAK),
    "handled_errors": (handled_errors, CLEAN),
}


# ---- held out, second set (scenarios_blind.py): merged here so the workers know them ----
from scenarios_blind import BLIND_KINDS  # noqa: E402

KINDS.update(BLIND_KINDS)

# ---- held out, third set (scenarios_third.py) ----
from scenarios_third import THIRD_KINDS  # noqa: E402

KINDS.update(THIRD_KINDS)

# The fourth held-out set's kinds (scenarios_fourth.py): see docs/leak-suite.md.
from scenarios_fourth import FOURTH_KINDS  # noqa: E402

KINDS.update(FOURTH_KINDS)

# The fifth held-out set's kinds (scenarios_fifth.py): see docs/leak-suite.md.
from scenarios_fifth import FIFTH_KINDS  # noqa: E402

KINDS.update(FIFTH_KINDS)

# The sixth held-out set's kinds (scenarios_sixth.py): see docs/leak-suite.md.
from scenarios_sixth import SIXTH_KINDS  # noqa: E402

KINDS.update(SIXTH_KINDS)

# The seventh held-out set's kinds (scenarios_seventh.py): see docs/leak-suite.md.
from scenarios_seventh import SEVENTH_KINDS  # noqa: E402

KINDS.update(SEVENTH_KINDS)

# The eighth held-out set's kinds (scenarios_eighth.py): see docs/leak-suite.md.
from scenarios_eighth import EIGHTH_KINDS  # noqa: E402

KINDS.update(EIGHTH_KINDS)
