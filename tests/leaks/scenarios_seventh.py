"""scenarios_seventh: the seventh held-out set's task kinds (docs/leak-suite.md, "Held out,
seventh set"). Written before the detector was touched, to see how it generalises to shapes
none of the six earlier sets has: a leak whose size per task is lognormal (a 100x spread:
its mean is carried by rare big tasks; the fifth set's `arg_sized` has two sizes) beside a
clean kind holding only its last reply, of the same sizes (a one-slot cache: swings of the
same size, no drift); a clean kind that holds its working set until its next call,
alternately 16 MiB and 1 MiB (the memory held between tasks swings by 15 MiB); a leak that
lands when the cyclic collector runs, mostly in another kind's task (a `__del__` that
records every unclosed connection) beside a file in a reference cycle whose fd the collector
closes (fds up in its tasks, down in others'); a `contextvars.ContextVar` made per request
and set in the process's context, beside one module-level variable set per request; a
`collections.deque(maxlen=50)` of 20 KiB records (fills in 50 calls: right at an
isolation's 60) and compiled `re` patterns kept per tenant and request; a cache per user of
a heavy-tailed population (unbounded, but its growth slows as a process ages: repeat users)
beside a cache bounded in bytes whose entries have lognormal sizes; a leak that starts after
its kind's 30th call in a process (inside an isolation's first window; the third set's
`late_start` starts after 100, beyond it) beside a table that fills in its first 30 calls
and stops. In C
(`c_ttl_swing.c`): keys strdup'd into a hash table, 9 in 10 expired at the next call (a leak
ten times smaller than its churn; and one under `min_slope`), beside the 16 MiB / 1 MiB
working set held between calls.

Same contract as scenarios.py: ``kind(i, arg) -> str``, one label each in SEVENTH_KINDS; the
figures in each docstring were measured with the kind alone (`python3 tests/leaks/measure.py
KIND`: tracemalloc under PYTHONMALLOC=malloc over 400 tasks after 20, and RSS) and, for the
kinds whose truth depends on their neighbours, in their workload's order in one process
(`measure.py --mix WORKLOAD`).
"""
import collections
import contextvars
import math
import random
import re
import tempfile

LEAK, FD, CLEAN, PLATEAU = "leak", "fd", "clean", "plateau"


def _blob(arg, size):
    return ((b"%08d" % (arg % 10 ** 8)) * (size // 8 + 1))[:size]


# ---- a heavy-tailed leak, and a one-slot holder of the same sizes ------------------------

# A body's size: lognormal, median 8 KiB, sigma 1.6 (the 5th to the 95th percentile span
# 140x: 0.6 KiB to 111 KiB), at most 2 MiB; mean ~29 KiB, half of it from the biggest 7%.
_LN_MU, _LN_SIGMA, _LN_MAX = math.log(8 * 1024), 1.6, 2 * 1024 * 1024


def _ln_size(arg):
    return min(_LN_MAX, max(64, int(random.Random(arg).lognormvariate(_LN_MU, _LN_SIGMA))))


_BODIES = []


def lognormal_keep(i, arg):
    """Keeps every request's body for a replay log nobody trims; the body's size is
    lognormal (median 8 KiB, 100x spread, mean ~29 KiB): most tasks keep little, a few keep
    hundreds of KiB."""
    body = _blob(arg, _ln_size(arg))
    _BODIES.append(body)
    return f"kept {len(body)} {len(_BODIES)}"


_LAST = [b""]


def last_reply(i, arg):
    """Keeps the last reply only (for a 'repeat' command): the same lognormal sizes as
    lognormal_keep's bodies, each replacing the one before. Clean: one reply held at a
    time; its per-task figures swing by a reply's size either way."""
    reply = _blob(arg ^ 0x5A5A, _ln_size(arg ^ 0x5A5A))
    _LAST[0] = reply
    return f"reply {len(reply)}"


# ---- a working set held until the next call, alternately 16 MiB and 1 MiB ----------------

_WS = {"n": 0, "buf": None}


def swing(i, arg):
    """Builds its working set and holds it until its next call (a double-buffered frame):
    16 MiB on every other call in a process, 1 MiB between (a bytearray, touched). Clean:
    what it holds between tasks swings by 15 MiB, up and down, never more than 16 MiB."""
    _WS["n"] += 1
    size = (16 if _WS["n"] % 2 else 1) * 1024 * 1024
    _WS["buf"] = None  # the old frame goes before the new one is made
    buf = bytearray(size)
    for k in range(0, size, 4096):
        buf[k] = (k >> 12) & 0xFF
    _WS["buf"] = buf
    return f"swing {size >> 20}"


# ---- growth when the collector runs: a __del__ that records, and a file in a cycle ------

_UNCLOSED = []


class _Conn:
    """A connection whose __del__ records a 'not closed' report (24 KiB: the request's
    headers and a stack) in a global list, for a health page nobody reads."""

    def __init__(self, arg):
        self.arg = arg
        self.on_close = self.close  # a bound method: a reference cycle
        self.headers = [{"h": k, "v": arg + k} for k in range(120)]

    def close(self):
        pass

    def __del__(self):
        _UNCLOSED.append(_blob(self.arg, 24 * 1024))


def del_log(i, arg):
    """Opens a connection object that refers to itself (its close callback) and drops it
    unclosed: it is freed by the cyclic collector, whose pass runs when enough containers
    were made, often during another kind's task; its __del__ then appends 24 KiB to a global
    list. The leak: 24 KiB a task of it, landing at collections."""
    c = _Conn(arg)
    return f"conn {len(c.headers)} {len(_UNCLOSED)}"


def cycle_file(i, arg):
    """Opens a temporary file, writes the request to it and drops it inside a reference
    cycle (a dict that refers to itself): the file's fd is closed when the collector frees
    the cycle, often in another kind's task. Clean: the fds open stay bounded (a few
    collections' worth) and its memory is garbage, freed."""
    f = tempfile.TemporaryFile()
    f.write(_blob(arg, 2048))
    f.flush()
    holder = {"file": f, "rows": [[k] for k in range(120)]}
    holder["self"] = holder
    return f"spooled {f.tell()}"


def parse_rows(i, arg):
    """Parses 6,000 small rows (lists and dicts) and drops them: its containers trigger the
    cyclic collector's passes. Clean."""
    rows = [{"id": k, "v": [k, arg]} for k in range(6000)]
    return f"rows {sum(r['v'][0] for r in rows) % 9973}"


# ---- contextvars: a variable per request, and one variable ------------------------------

_CTX_VARS = []


def ctxvar_leak(i, arg):
    """Makes a `ContextVar` per request (a 'request-scoped' variable named after it) and sets
    it to the request's 24 KiB context in the process's context, never reset: the context
    keeps a value for every variable ever set in it. (The variable list here only names
    them; the context's mapping holds the 24 KiB.)"""
    var = contextvars.ContextVar(f"req_{i}_{arg}")
    var.set(_blob(arg, 24 * 1024))
    _CTX_VARS.append(var.name)
    return f"ctx {len(_CTX_VARS)}"


_CURRENT = contextvars.ContextVar("current_request")


def ctxvar_ok(i, arg):
    """Sets one module-level `ContextVar` to the request's 24 KiB context: each set replaces
    the value before. Clean."""
    _CURRENT.set(_blob(arg, 24 * 1024))
    return f"ctx {len(_CURRENT.get())}"


_RECENT = collections.deque(maxlen=50)


def deque_ring(i, arg):
    """Keeps the last 50 requests' 20 KiB records for a debug page in a
    `deque(maxlen=50)`: ~1 MiB, full after 50 calls in a process, then each call evicts
    one. A plateau."""
    _RECENT.append(_blob(arg, 20 * 1024))
    return f"recent {len(_RECENT)}"


# ---- compiled patterns kept per tenant and request --------------------------------------

_FILTERS = {}


def pattern_keep(i, arg):
    """Compiles the request's routing filter (64 alternatives naming the tenant's paths and
    the request's number) and keeps it in a per-tenant table under the filter's text, which
    is unique per request (the request id is in it): a compiled pattern kept a task."""
    tenant = arg % 50
    alts = "|".join(f"/t{tenant}/r{i}/p{k}/[a-z]{{2,8}}/(?P<id{k}>\\d+)" for k in range(64))
    _FILTERS.setdefault(tenant, {})[alts] = re.compile(alts)
    return f"filter {len(_FILTERS[tenant])}"


# ---- a cache per user, users from a heavy-tailed population; a cache bounded in bytes ----

_PROFILES = {}


def _user(arg):
    """A user of a population of a million with Zipf-like popularity (P(rank > x) = x^-0.2):
    a few users make many requests, most users appear once."""
    rng = random.Random(arg)
    while True:
        rank = int(rng.paretovariate(0.2))
        if rank <= 1_000_000:
            return rank


def user_cache(i, arg):
    """Caches a 48 KiB profile per user, never evicted: a repeat user costs nothing, a new one
    48 KiB. Unbounded (a million users), but the share of new users falls as a process ages:
    ~30 KB a task over a fresh process's first 100 calls, ~18 KB a task by its 400th (growth
    that slows, like a cache filling, and never stops)."""
    u = _user(arg)
    if u not in _PROFILES:
        _PROFILES[u] = _blob(u, 48 * 1024)
    return f"profile {len(_PROFILES)}"


_BUDGET = collections.OrderedDict()
_BUDGET_BYTES = [0]


def byte_budget(i, arg):
    """A response cache bounded in bytes (1 MiB) whose entries have the lognormal sizes of
    lognormal_keep (median 8 KiB, 100x spread): it evicts its oldest entries until the new one
    fits. Full after ~35 calls in a process; then each call frees about what it adds, in
    uneven amounts. A plateau."""
    key = (i, arg)
    body = _blob(arg ^ 0x3C3C, min(_ln_size(arg ^ 0x3C3C), 512 * 1024))
    while _BUDGET and _BUDGET_BYTES[0] + len(body) > 1024 * 1024:
        _, old = _BUDGET.popitem(last=False)
        _BUDGET_BYTES[0] -= len(old)
    _BUDGET[key] = body
    _BUDGET_BYTES[0] += len(body)
    return f"budget {len(_BUDGET)} {_BUDGET_BYTES[0] >> 10}"


# ---- a leak after a warm-up of 30 calls, and a cache that fills in 30 calls --------------

_WARM_CALLS = {"warm_leak": 0, "fill_cache": 0}
_WARM_KEPT = []
_FILLED = {}


def warm_leak(i, arg):
    """A connection's statement cache that works for its first 30 calls in a process, then
    (once the pool is 'warm') keeps every request's 24 KiB prepared plan under a new key: a
    leak that starts inside an isolation's first window (the third set's `late_start` starts
    after 100 calls, beyond it). ~0 for 30 calls, then 24 KiB a call."""
    _WARM_CALLS["warm_leak"] += 1
    plan = _blob(arg, 24 * 1024)
    if _WARM_CALLS["warm_leak"] > 30:
        _WARM_KEPT.append(plan)
    return f"plan {len(_WARM_KEPT)}"


def fill_cache(i, arg):
    """A table of 30 reference entries of 24 KiB, loaded one a call on the first 30 calls in
    a process, then only read: 24 KiB a call for 30 calls, then nothing. A plateau (the
    mirror of warm_leak)."""
    _WARM_CALLS["fill_cache"] += 1
    slot = len(_FILLED)
    if slot < 30:
        _FILLED[slot] = _blob(arg, 24 * 1024)
    return f"ref {len(_FILLED)} {len(_FILLED[arg % len(_FILLED)])}"


SEVENTH_KINDS = {
    "lognormal_keep": (lognormal_keep, LEAK),
    "last_reply": (last_reply, CLEAN),
    "swing": (swing, CLEAN),
    "del_log": (del_log, LEAK),
    "cycle_file": (cycle_file, CLEAN),
    "parse_rows": (parse_rows, CLEAN),
    "ctxvar_leak": (ctxvar_leak, LEAK),
    "ctxvar_ok": (ctxvar_ok, CLEAN),
    "deque_ring": (deque_ring, PLATEAU),
    "pattern_keep": (pattern_keep, LEAK),
    "user_cache": (user_cache, LEAK),
    "byte_budget": (byte_budget, PLATEAU),
    "warm_leak": (warm_leak, LEAK),
    "fill_cache": (fill_cache, PLATEAU),
}
