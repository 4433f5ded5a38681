"""scenarios_eighth: the eighth held-out set's task kinds (docs/leak-suite.md, "Held out,
eighth set"). Written before the detector was touched, to see how it generalises to shapes
none of the seven earlier sets has: a leak that is on and off in phases of 40 calls (a debug
trace switched by a config reload; no set has a leak that stops and starts again); a leak
whose rate grows with the process's age (an undo stack keeping a copy of the whole document
at every call: under `min_slope` on a fresh worker, over it after ~136 calls); a memo keyed
by a float that is NaN for most requests (NaN != NaN: every NaN a new key); a
`threading.Timer` per request never cancelled (a thread and its session pinned for an hour)
beside a grace-period timer that fires 30 ms later and frees its session on the timer's
thread, between tasks (memory held for a time, not a number of tasks); a
`weakref.WeakValueDictionary` cache whose values pin themselves through a bound method
subscribed to a module-level signal, beside the same cache done right; a mutable default
argument that accumulates rows; `subprocess.Popen` kept with its stdout pipe for a status
page (an fd a task, and a child process that is never waited for) beside `subprocess.run`;
`sys.addaudithook` per request (hooks cannot be removed); a file-backed `mmap` of a temp
file kept (its dup'd fd and page-cache pages: no heap); generated code's source registered
in `linecache` under a unique name (as dataclasses/attrs/templating do), beside a dict whose
keys churn (inserts and deletes: its table stays bounded). In C (`c_thread_stack.c`):
threads never joined (their stacks kept: memory no malloc or mmap of the worker made), a
200-byte strdup a call (far under `min_slope`), and a heap whose top is pinned between
calls (RSS held, live bytes not).

Same contract as scenarios.py: ``kind(i, arg) -> str``, one label each in EIGHTH_KINDS; the
figures in each docstring were measured with the kind alone (`python3 tests/leaks/measure.py
KIND`: tracemalloc under PYTHONMALLOC=malloc over 400 tasks after 20, and RSS).
"""
import linecache
import math
import mmap
import subprocess
import sys
import tempfile
import threading
import weakref

LEAK, FD, CLEAN, PLATEAU = "leak", "fd", "clean", "plateau"


def _blob(arg, size):
    return ((b"%08d" % (arg % 10 ** 8)) * (size // 8 + 1))[:size]


def churn8(i, arg):
    """A clean kind that allocates a lot and frees it all: 4,000 small dicts and a 1 MiB
    bytearray, summarised and dropped."""
    rows = [{"id": k, "v": (arg + k) % 97} for k in range(4000)]
    blob = bytearray(1024 * 1024)
    blob[-1] = len(rows) & 0xFF
    return f"rows {len(rows)} {blob[-1]}"


# ---- a leak on and off in phases ----------------------------------------------------------

_PHASE = {"calls": 0}
_TRACES = []


def phase_leak(i, arg):
    """A request tracer switched on and off by a config reload every 40 calls in a process
    (on first): while on, each call's 48 KiB trace is appended to a list nobody drains; while
    off, nothing is kept. A leak at half the time: 24 KiB a call on average, 48 KiB in its
    on phases, 0 in its off phases."""
    _PHASE["calls"] += 1
    on = ((_PHASE["calls"] - 1) // 40) % 2 == 0
    trace = _blob(arg, 48 * 1024)
    if on:
        _TRACES.append(trace)
    return f"trace {'on' if on else 'off'} {len(_TRACES)}"


# ---- a leak that speeds up with the process's age, and a NaN-keyed memo ---------------------

_EDITS = []
_UNDO = []


def age_history(i, arg):
    """A document editor's undo stack that pushes a copy of the whole document (every edit's
    120-byte record so far, joined) at every call: the n-th call in a process keeps 120*n
    bytes, so the leak grows with the process's age: under `min_slope` (16 KiB) for a
    process's first ~136 calls, 48 KiB a call by its 400th; a fresh worker's first 60 calls
    keep 0.1-7 KiB each."""
    _EDITS.append(b"edit:%08d:" % (arg % 10 ** 8) + b"e" * 106)
    _UNDO.append(b"".join(_EDITS))
    return f"undo {len(_UNDO)} {len(_EDITS)}"


_MEMO = {}


def nan_memo(i, arg):
    """A score memo: the rendered 24 KiB result cached under the request's score, a float.
    The score is a weighted ratio, and an empty sample (5 requests in 6) gives 0 * inf, a
    new NaN object each time (`math.nan`, one object, would hit: dicts try identity first);
    NaN != NaN, so every NaN is a new key and the memo never hits for them: ~20 KiB a call
    kept. The finite scores (10 values) hit."""
    hits, total = (arg % 10, 9) if arg % 6 == 0 else (0, 0)
    score = hits / total if total else hits * math.inf
    if score in _MEMO:
        return f"memo hit {len(_MEMO)}"
    _MEMO[score] = _blob(arg, 24 * 1024)
    return f"memo {len(_MEMO)}"


# ---- timers: never cancelled, and a grace period --------------------------------------------

_TIMERS = []


def _expire(session):
    session.clear()


def timer_leak(i, arg):
    """A session timeout per request: `threading.Timer(3600, expire, [session])` with a 24
    KiB session, started and never cancelled when the request ends (the hour never comes in
    a run): a sleeping thread (its stack) and its session per call."""
    session = {"id": arg, "body": _blob(arg, 24 * 1024)}
    t = threading.Timer(3600, _expire, [session])
    t.daemon = True
    t.start()
    _TIMERS.append(t)  # the registry that would let someone cancel them
    return f"timers {len(_TIMERS)}"


_GRACE = {}
_GRACE_LOCK = threading.Lock()


def _release(key):
    with _GRACE_LOCK:
        _GRACE.pop(key, None)


def timer_grace(i, arg):
    """A closed session kept for a 30 ms grace period (late retries find it), then dropped
    by a `threading.Timer` on its own thread, between or during other tasks: memory held for
    a time, not for a number of calls (a few dozen sessions of 24 KiB at a time). Bounded."""
    key = (i, arg)
    with _GRACE_LOCK:
        _GRACE[key] = _blob(arg, 24 * 1024)
        n = len(_GRACE)
    t = threading.Timer(0.03, _release, [key])
    t.daemon = True
    t.start()
    return f"grace {n}"


# ---- weak caches: pinned by a signal, and right -------------------------------------------

_SIGNAL = []  # module-level "document changed" listeners


class _Document:
    def __init__(self, arg, subscribe):
        self.body = _blob(arg, 24 * 1024)
        if subscribe:
            _SIGNAL.append(self.on_change)  # a bound method: a strong ref to self

    def on_change(self, what):
        return len(self.body) + len(what)


_WEAK_PINNED = weakref.WeakValueDictionary()
_WEAK_OK = weakref.WeakValueDictionary()


def weak_pinned(i, arg):
    """A `WeakValueDictionary` cache of parsed documents keyed by request; each document
    subscribes its bound `on_change` to a module-level signal list that nobody prunes, so
    the cache's values never die: the weak cache is in fact unbounded (24 KiB a call)."""
    doc = _WEAK_PINNED.get(arg)
    if doc is None:
        doc = _Document(arg, subscribe=True)
        _WEAK_PINNED[(i, arg)] = doc
    return f"weak {len(_WEAK_PINNED)} {doc.on_change('x')}"


def weak_ok(i, arg):
    """The same weak cache, its documents not subscribed: each dies when its request ends.
    Clean."""
    doc = _Document(arg, subscribe=False)
    _WEAK_OK[(i, arg)] = doc
    return f"weak {len(_WEAK_OK)} {doc.on_change('x')}"


def _collect(row, acc=[]):  # noqa: B006 -- the bug under test
    acc.append(row)
    return len(acc)


def default_arg(i, arg):
    """A helper with a mutable default argument (`def collect(row, acc=[])`) called without
    `acc`: every call's 20 KiB row lands in the one default list, for ever."""
    n = _collect(_blob(arg, 20 * 1024))
    return f"collected {n}"


# ---- child processes: a Popen kept, and run ----------------------------------------------

_JOBS = []


def popen_keep(i, arg):
    """A job runner keeps every `subprocess.Popen(..., stdout=PIPE)` for a status page and
    never waits for it nor closes its pipe: one fd (the pipe's read end) a call, and a
    zombie child per call. A handle leak."""
    p = subprocess.Popen(["/bin/true"], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
                         close_fds=True)
    _JOBS.append((arg, p))
    return f"jobs {len(_JOBS)}"


def shell_ok(i, arg):
    """`subprocess.run([...], capture_output=True)`: the child waited for, its pipes
    closed. Clean."""
    r = subprocess.run(["/bin/echo", str(arg)], capture_output=True, check=False)
    return f"ran {r.returncode} {len(r.stdout)}"


# ---- audit hooks and a file-backed mmap ----------------------------------------------------

_HOOKS = [0]


def audit_hook(i, arg):
    """A per-request security context installed with `sys.addaudithook`, which can never be
    removed: each hook closes over its request's 24 KiB context and stays for the process's
    life (it checks the request id first and returns). A leak."""
    ctx = {"id": (i, arg), "policy": _blob(arg, 24 * 1024)}

    def hook(event, args, ctx=ctx):
        if ctx["id"] is None:  # never: the request is long gone
            print(event, args)

    sys.addaudithook(hook)
    _HOOKS[0] += 1
    return f"hooks {_HOOKS[0]}"


_MAPS = []


def mmap_file(i, arg):
    """A 32 KiB spill file written, mapped shared with `mmap.mmap(f.fileno(), ...)`, the
    file closed and the mapping kept in an index nobody closes: mmap dup's the fd, so an fd
    a call stays open, and the file's pages (page cache, shared mapping: no heap). A handle
    leak."""
    with tempfile.TemporaryFile() as f:
        f.write(_blob(arg, 32 * 1024))
        f.flush()
        m = mmap.mmap(f.fileno(), 32 * 1024)
    _MAPS.append(m)
    return f"maps {len(_MAPS)} {m[:4]!r}"


# ---- generated code in linecache, and a dict whose keys churn -----------------------------

_GENERATED = []


def linecache_src(i, arg):
    """Generated code (a 200-field record's `__init__`, ~20 KiB of source), compiled under a
    unique file name per request and registered in `linecache.cache` so tracebacks show it,
    as dataclasses, attrs and template engines do; the names never repeat, so linecache keeps
    every source and its lines, and the compiled function is kept in a dispatch list."""
    fname = f"<generated init {i}-{arg}>"
    body = "\n".join(f"    self.f{k} = a{k} if a{k} is not None else {k + arg % 97}"
                     for k in range(200))
    args = ", ".join(f"a{k}=None" for k in range(200))
    src = f"def __init__(self, {args}):\n{body}\n"
    ns = {}
    exec(compile(src, fname, "exec"), ns)
    linecache.cache[fname] = (len(src), None, src.splitlines(True), fname)
    _GENERATED.append(ns["__init__"])
    return f"generated {len(_GENERATED)}"


_SESSIONS = {}
_SESSION_NEXT = [0]


def tombstones(i, arg):
    """A session table that adds 300 sessions a call and expires the 300 oldest once it holds
    3,000: a dict whose keys churn (deletes leave dummies; its table is rebuilt when full, at
    the same size). Bounded at 3,000 small sessions (~0.5 MiB): fills in its first 10
    calls."""
    for _ in range(300):
        _SESSIONS[_SESSION_NEXT[0]] = (arg, "s" * 48)
        _SESSION_NEXT[0] += 1
    while len(_SESSIONS) > 3000:
        del _SESSIONS[next(iter(_SESSIONS))]
    return f"sessions {len(_SESSIONS)}"


EIGHTH_KINDS = {
    "churn8": (churn8, CLEAN),
    "phase_leak": (phase_leak, LEAK),
    "age_history": (age_history, LEAK),
    "nan_memo": (nan_memo, LEAK),
    "timer_leak": (timer_leak, LEAK),
    "timer_grace": (timer_grace, PLATEAU),
    "weak_pinned": (weak_pinned, LEAK),
    "weak_ok": (weak_ok, CLEAN),
    "default_arg": (default_arg, LEAK),
    "popen_keep": (popen_keep, FD),
    "shell_ok": (shell_ok, CLEAN),
    "audit_hook": (audit_hook, LEAK),
    "mmap_file": (mmap_file, FD),
    "linecache_src": (linecache_src, LEAK),
    "tombstones": (tombstones, PLATEAU),
}
