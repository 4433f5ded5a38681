"""scenarios_sixth: the sixth held-out set's task kinds (docs/leak-suite.md, "Held out, sixth
set"). Written before the detector was touched, to see how it generalises to shapes none of
the five earlier sets has: a producer whose queue a consumer kind drains at four fifths of
its rate (the third set's pair is balanced; the first set's backlog is one kind), a leak only
when a kind runs right after another given kind in the same process (order-dependent),
`atexit` and `weakref.finalize` registrations per task, asyncio tasks left pending on an event
nobody sets, a long-lived `pickle.Pickler` whose memo keeps every object it dumped, a module
made per request into `sys.modules`, a class made per request and registered by
`__init_subclass__`, and a saw-tooth with an upward drift (a sweep that frees three entries
in four) beside the same sweep freeing all, their names differing only by a digit.

Same contract as scenarios.py: ``kind(i, arg) -> str``, one label each in SIXTH_KINDS; the
figures in each docstring were measured with the kind alone (`python3 tests/leaks/measure.py
KIND`: tracemalloc under PYTHONMALLOC=malloc over 400 tasks after 20, and RSS) and, for the
kinds whose truth depends on their neighbours, in their workload's order in one process
(`measure.py --mix WORKLOAD`).
"""
import asyncio
import atexit
import collections
import gc
import io
import pickle
import sys
import types
import weakref

LEAK, FD, CLEAN, PLATEAU = "leak", "fd", "clean", "plateau"

# ---- a producer faster than its consumer (another kind) ---------------------------------

_JOBS = collections.deque()


def enqueue(i, arg):
    """Queues a 112 KiB job for the drain kind. Alone it keeps every job (112 KiB a task);
    in `backlog` the drain kind runs 4 times for its 5 and takes one job each: ~22 KiB a
    task of it stays (the backlog grows without end)."""
    _JOBS.append((b"%08d" % (arg % 10 ** 8)) * (112 * 1024 // 8))
    return f"queued {len(_JOBS)}"


def drain(i, arg):
    """Takes the oldest job off the queue (if any), checksums and frees it. Clean: it frees
    what another kind allocated."""
    if not _JOBS:
        return "idle"
    job = _JOBS.popleft()
    return f"drained {job[:: 8192].count(b'0')}"


# ---- a leak only when a kind runs right after another ------------------------------------

_LAST = [None]
_WARM = {}


def _after(kind):
    prev, _LAST[0] = _LAST[0], kind
    return prev


def login(i, arg):
    """Authenticates (a token, ~1 KiB of work) and marks the connection as warm. Clean."""
    _after("login")
    token = f"tok-{arg:08d}-" + "t" * 200
    return f"login {len(token)}"


def fetch(i, arg):
    """Builds a 64 KiB response; when the task before it in this process was a login, it
    keeps the response in the warm-session table keyed by the request (the bug: a session
    'prefetch' never evicted), else drops it. Alone: nothing kept (the task before is always
    a fetch); in `order`, where a login precedes about a third of fetches in a worker: ~21 KiB
    a task of it."""
    prev = _after("fetch")
    body = (b"%08d" % (arg % 10 ** 8)) * (64 * 1024 // 8)
    if prev == "login":
        _WARM[(i, arg)] = body
    return f"fetch {len(body)} {len(_WARM)}"


def static(i, arg):
    """Serves a small static page. Clean."""
    _after("static")
    return f"static {(arg * 31) % 997}"


# ---- registrations per task: atexit and weakref.finalize --------------------------------


def _flush_on_exit(ctx):
    return len(ctx)


def atexit_keep(i, arg):
    """Registers an exit hook per request to flush its 24 KiB context 'on shutdown': the
    atexit module keeps the callable and its arguments until the interpreter exits."""
    ctx = (b"%08d" % (arg % 10 ** 8)) * (24 * 1024 // 8)
    atexit.register(_flush_on_exit, ctx)
    return f"exit hook {len(ctx)}"


class _Service:
    """A long-lived object (the process's service): whatever is finalised on it lives as long
    as the process does."""


_SERVICE = _Service()


def finalize_keep(i, arg):
    """Registers `weakref.finalize(service, cleanup, ctx)` per request, with a 24 KiB context:
    the service never dies, so finalize's registry keeps every context."""
    ctx = (b"%08d" % (arg % 10 ** 8)) * (24 * 1024 // 8)
    weakref.finalize(_SERVICE, _flush_on_exit, ctx)
    return f"finalizer {len(ctx)}"


def finalize_ok(i, arg):
    """The same finalizer on the request's own object, which dies at the task's end: the
    callback runs and the registry drops the context. Clean."""
    req = _Service()
    ctx = (b"%08d" % (arg % 10 ** 8)) * (24 * 1024 // 8)
    weakref.finalize(req, _flush_on_exit, ctx)
    del req
    return f"finalized {len(ctx)}"


# ---- asyncio tasks left pending, and a pickler's memo -----------------------------------

_LOOP = None
_SHUTDOWN = None


def _loop():
    global _LOOP, _SHUTDOWN
    if _LOOP is None:
        _LOOP = asyncio.new_event_loop()
        # the pending tasks are destroyed at the interpreter's exit: not worth a line each
        _LOOP.set_exception_handler(lambda loop, ctx: None)
        _SHUTDOWN = asyncio.Event()
    return _LOOP


async def _audit_later(buf):
    await _SHUTDOWN.wait()  # nobody sets it: the task stays pending with its buffer
    return len(buf)


async def _handle(arg, wait):
    buf = (b"%08d" % (arg % 10 ** 8)) * (24 * 1024 // 8)
    t = asyncio.ensure_future(_audit_later(buf) if not wait else asyncio.sleep(0, len(buf)))
    if wait:
        return await t
    await asyncio.sleep(0)
    return len(buf)


def spawn_wait(i, arg):
    """On a long-lived event loop, each request spawns a 'fire and forget' audit task that
    waits for a shutdown event nobody sets, holding the request's 24 KiB buffer: a pending
    task per request (the event's waiters keep it)."""
    n = _loop().run_until_complete(_handle(arg, wait=False))
    return f"spawned {n}"


def gather_ok(i, arg):
    """The same request whose spawned task is awaited before the handler returns. Clean."""
    n = _loop().run_until_complete(_handle(arg, wait=True))
    return f"awaited {n}"


_PICKLER = {"out": io.BytesIO(), "p": None}


def pickler_memo(i, arg):
    """Streams each request's record (a dict with a 20 KiB payload) through one long-lived
    `pickle.Pickler`, its output buffer truncated after each record is shipped; the pickler's
    memo (`clear_memo()` never called) keeps every object it has dumped alive."""
    st = _PICKLER
    if st["p"] is None:
        st["p"] = pickle.Pickler(st["out"], protocol=pickle.HIGHEST_PROTOCOL)
    rec = {"id": i, "payload": (b"%08d" % (arg % 10 ** 8)) * (20 * 1024 // 8)}
    st["p"].dump(rec)
    n = st["out"].tell()
    st["out"].seek(0)
    st["out"].truncate()
    return f"pickled {n}"


# ---- a module per request, and a class per request ---------------------------------------

_PLUGIN_SRC = """
TABLE = [{k!r} * 64 for _ in range(1)] + [bytes(16 * 1024)]

def run(x):
    return sum(len(t) for t in TABLE) + x

def describe():
    return NAME + ":" + str(len(TABLE))
"""


def _make_plugin(name, arg):
    mod = types.ModuleType(name)
    mod.NAME = name
    exec(compile(_PLUGIN_SRC.format(k=f"p{arg % 1000}"), f"<{name}>", "exec"), mod.__dict__)
    return mod


def plugin_module(i, arg):
    """Loads a per-tenant plugin under a name unique per request, registered in sys.modules
    and never removed: a module, its functions, code objects and a 16 KiB table each."""
    name = f"mv_plugin_{i}_{arg}"
    sys.modules[name] = mod = _make_plugin(name, arg)
    return f"plugin {mod.run(arg % 7)} {mod.describe()[:12]}"


def plugin_unload(i, arg):
    """The same plugin made, used and dropped from sys.modules (its functions and module dict
    refer to each other: the cyclic collector frees them). Clean."""
    name = f"mv_tmp_plugin_{i}_{arg}"
    sys.modules[name] = mod = _make_plugin(name, arg)
    out = f"plugin {mod.run(arg % 7)}"
    del sys.modules[name], mod
    if i % 16 == 0:
        gc.collect()
    return out


class Model:
    """A base class whose subclasses register themselves (an ORM's model registry)."""

    registry = {}

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        Model.registry[cls.__name__] = cls


def class_registry(i, arg):
    """Makes a model class per request (a dynamic schema) with a 20 KiB schema attribute; the
    base's __init_subclass__ registers each by its unique name, for ever."""
    schema = (b"%08d" % (arg % 10 ** 8)) * (20 * 1024 // 8)
    cls = type(f"Model_{i}_{arg}", (Model,), {"schema": schema, "fields": ("a", "b")})
    return f"model {cls.__name__[:10]} {len(Model.registry)}"


# ---- a saw-tooth with a drift, and one without ------------------------------------------

def stage1(i, arg):
    """A session table: each request adds a 96 KiB session; every 16th call a sweep expires
    the sessions added since the last one except those still 'active' (1 in 4, by the
    request's arg), which are never expired after: a saw-tooth of ~1.4 MiB that drifts up
    ~24 KiB a task."""
    return _stage(i, arg, "stage1", keep=lambda a: a % 4 == 0)


def stage2(i, arg):
    """The same sessions table, every session expired by the sweep: a saw-tooth, bounded.
    Its name differs from the leaking kind's by its digit only."""
    return _stage(i, arg, "stage2", keep=lambda a: False)


_PENDING = {"stage1": [], "stage2": []}
_KEPT = {"stage1": [], "stage2": []}


def _stage(i, arg, kind, keep):
    pend = _PENDING[kind]
    pend.append((arg, (b"%08d" % (arg % 10 ** 8)) * (96 * 1024 // 8)))
    if len(pend) >= 16:
        _KEPT[kind].extend(e for e in pend if keep(e[0]))
        pend.clear()
    return f"{kind} {len(pend)} {len(_KEPT[kind])}"


SIXTH_KINDS = {
    "enqueue": (enqueue, LEAK),
    "drain": (drain, CLEAN),
    "login": (login, CLEAN),
    "fetch": (fetch, LEAK),
    "static": (static, CLEAN),
    "atexit_keep": (atexit_keep, LEAK),
    "finalize_keep": (finalize_keep, LEAK),
    "finalize_ok": (finalize_ok, CLEAN),
    "spawn_wait": (spawn_wait, LEAK),
    "gather_ok": (gather_ok, CLEAN),
    "pickler_memo": (pickler_memo, LEAK),
    "plugin_module": (plugin_module, LEAK),
    "plugin_unload": (plugin_unload, CLEAN),
    "class_registry": (class_registry, LEAK),
    "stage1": (stage1, LEAK),
    "stage2": (stage2, PLATEAU),
}
