"""scenarios_fifth: the fifth held-out set's task kinds (docs/leak-suite.md, "Held out, fifth
set"). Written before the detector was touched, to see how it generalises to shapes none of
the four earlier sets has: a leak on the error path only (1 task in 3 keeps its request and
its exception), a leak whose size follows the request (small mostly, big sometimes), a
shared helper that leaks for the two kinds (of four) that call it, a buffer doubled when
full (rare big steps, flat between), a leak inside a C library's own heap (an in-memory
SQLite table) beside the same table kept bounded, a leak into the C environment (setenv),
unique warning texts filling the module's `__warningregistry__`, a raw fd (`os.open`) left
open on the error path, and a clean kind whose memory rises and falls on every 10th call.

Same contract as scenarios.py: ``kind(i, arg) -> str``, one label each in FIFTH_KINDS; the
figures in each docstring were measured with the kind alone (`python3 tests/leaks/measure.py
KIND`: tracemalloc under PYTHONMALLOC=malloc over 400 tasks after 20, and RSS).
"""
import json
import logging
import os
import sqlite3
import warnings

LEAK, FD, CLEAN, PLATEAU = "leak", "fd", "clean", "plateau"

# ---- a leak on the error path only -------------------------------------------------------


class ParseError(Exception):
    pass


def _parse(payload, arg):
    if arg % 3 == 0:  # one request in three is malformed
        raise ParseError(f"bad header in request {arg}")
    return sum(payload[:: 4096])


_RETRY = []


def retry_keep(i, arg):
    """Parses a 64 KiB request; when the parse fails (1 in 3) the request and its exception
    (traceback, frames) go to a retry list nobody drains. The happy path keeps nothing."""
    payload = bytearray(64 * 1024)
    payload[arg % len(payload)] = 1
    try:
        return f"parsed {_parse(payload, arg)}"
    except ParseError as e:
        _RETRY.append((payload, e))
        return f"queued for retry {len(_RETRY)}"


def validate(i, arg):
    """The same parse of a 64 KiB request, its failures (1 in 3) logged and dropped. Clean."""
    payload = bytearray(64 * 1024)
    payload[arg % len(payload)] = 1
    try:
        return f"parsed {_parse(payload, arg)}"
    except ParseError as e:
        return f"rejected {len(str(e))}"


_BURST_CALLS = [0]


def burst10(i, arg):
    """Every 10th call in a process builds a 100,000-string index (~7 MiB), summarises and
    drops it; the other calls are quick. Clean: memory rises and falls."""
    _BURST_CALLS[0] += 1
    if _BURST_CALLS[0] % 10 == 0:
        index = [f"key-{k}-{arg}" for k in range(100_000)]
        return f"index {len(index)} {len(index[-1])}"
    return f"quick {(arg * 7) % 101}"


# ---- a leak whose size follows the request -----------------------------------------------

_BODIES = []


def arg_sized(i, arg):
    """Keeps each request body "for replay"; bodies are small (4 KiB) for 7 requests in 8 and
    16-304 KiB (by the request) for the 8th: 23.5 KiB a task on average, in uneven steps."""
    if arg % 8:
        size = 4 * 1024
    else:
        size = (16 + (arg // 8) % 289) * 1024
    _BODIES.append((b"%08d" % (arg % 10 ** 8)) * (size // 8))  # written: resident
    return f"bodies {len(_BODIES)}"


# ---- a buffer doubled when full: rare big steps, flat between -----------------------------

_GEO = {"buf": bytearray(256 * 1024), "used": 0}


def geo_buffer(i, arg):
    """Appends a 24 KiB record to a global journal buffer that doubles (a new zeroed buffer
    twice the size, the old copied in) when full, and is never trimmed: unbounded, 24 KiB a
    task on average, but the memory comes in steps (256 KiB, 512 KiB, ... 16 MiB), flat
    between them."""
    rec = (b"%08d" % (arg % 10 ** 8)) * (24 * 1024 // 8)
    g = _GEO
    if g["used"] + len(rec) > len(g["buf"]):
        bigger = bytearray(2 * len(g["buf"]))
        bigger[: g["used"]] = g["buf"][: g["used"]]
        g["buf"] = bigger
    g["buf"][g["used"]: g["used"] + len(rec)] = rec
    g["used"] += len(rec)
    return f"journal {g['used']} {len(g['buf'])}"


# ---- a shared helper that leaks for the kinds that call it -------------------------------

_ANNOTATIONS = {}


def _annotate(i, arg):
    """A helper memoising each request's annotation (20 KiB) under the request id: the cache
    that is never evicted. Only h_render and h_export call it."""
    key = (i, arg)
    note = _ANNOTATIONS.get(key)
    if note is None:
        note = _ANNOTATIONS[key] = f"<note req={i} arg={arg}>" + "n" * (20 * 1024)
    return len(note)


def h_render(i, arg):
    """Renders a page (100 KiB of temporary strings) with the shared helper's annotation:
    leaks the helper's 20 KiB."""
    parts = [f"<li>{arg + k}</li>" * 8 for k in range(800)]
    return f"render {len(''.join(parts))} {_annotate(i, arg)}"


def h_export(i, arg):
    """Exports a JSON document with the shared helper's annotation: leaks 20 KiB."""
    doc = json.dumps({"id": i, "rows": list(range(arg % 500, arg % 500 + 2000))})
    return f"export {len(doc)} {_annotate(i, arg)}"


def h_list(i, arg):
    """The same page rendering without the helper. Clean."""
    parts = [f"<li>{arg + k}</li>" * 8 for k in range(800)]
    return f"list {len(''.join(parts))}"


def h_health(i, arg):
    """A health check. Clean."""
    return f"health ok {arg % 7}"


# ---- a C library's own heap: an in-memory SQLite table -----------------------------------

_AUDIT = None


def sqlite_keep(i, arg):
    """Inserts the request's 20 KiB record into an audit table of an in-memory SQLite
    database, never deleted: the memory is SQLite's (its pages, from libc malloc), not
    Python's."""
    global _AUDIT
    if _AUDIT is None:
        _AUDIT = sqlite3.connect(":memory:")
        _AUDIT.execute("create table audit (id integer primary key, body blob)")
    _AUDIT.execute("insert into audit (body) values (?)", (bytes([arg & 0xFF]) * (20 * 1024),))
    return f"audit {i}"


_RECENT = None


def sqlite_ring(i, arg):
    """The same insert into another in-memory table that keeps the newest 8 rows (older ones
    deleted each call): SQLite reuses the freed pages. A plateau."""
    global _RECENT
    if _RECENT is None:
        _RECENT = sqlite3.connect(":memory:")
        _RECENT.execute("create table recent (id integer primary key, body blob)")
    cur = _RECENT.execute("insert into recent (body) values (?)",
                          (bytes([arg & 0xFF]) * (20 * 1024),))
    _RECENT.execute("delete from recent where id <= ?", (cur.lastrowid - 8,))
    return f"recent {cur.lastrowid}"


def env_keep(i, arg):
    """Exports the request's 12 KiB context to the environment "for the subprocesses it may
    start" under a per-request name, never unset: os.environ keeps the encoded copy, libc's
    setenv another."""
    os.environ[f"MV_REQ_{i}_{arg}"] = f"ctx:{arg}:" + "e" * (12 * 1024)
    return f"env {len(os.environ)}"


# ---- unique warning texts, and a raw fd left open on the error path ----------------------

_WARN_SETUP = [False]


def warn_unique(i, arg):
    """Warns about a slow query with the query's text (~18 KiB, unique per request) in the
    message; warnings go to logging (captureWarnings, a NullHandler: nothing printed). The
    default action remembers every (text, category, line) it has shown in this module's
    __warningregistry__, for ever: 18 KiB a task."""
    if not _WARN_SETUP[0]:
        logging.captureWarnings(True)
        lg = logging.getLogger("py.warnings")
        lg.addHandler(logging.NullHandler())
        lg.propagate = False
        _WARN_SETUP[0] = True
    sql = f"select * from t where id in ({arg}, {i}" + ", 0" * (6 * 1024) + ")"
    warnings.warn(f"slow query ({arg % 997} ms): {sql}", UserWarning)
    return f"warned {len(sql)}"


def err_fd(i, arg):
    """Opens a raw fd (os.open: no file object, no finaliser) to read a header; on the error
    path (1 request in 3) it returns early and the fd is never closed: an fd a failed task,
    nothing on the heap."""
    fd = os.open(os.devnull, os.O_RDONLY)
    if arg % 3 == 0:
        return "rejected"
    data = os.read(fd, 64)
    os.close(fd)
    return f"read {len(data)}"


def pipe_ok(i, arg):
    """A pipe made, written, read and closed (both ends). Clean."""
    r, w = os.pipe()
    try:
        os.write(w, b"%d" % arg)
        return f"piped {len(os.read(r, 64))}"
    finally:
        os.close(r)
        os.close(w)


FIFTH_KINDS = {
    "retry_keep": (retry_keep, LEAK),
    "validate": (validate, CLEAN),
    "burst10": (burst10, CLEAN),
    "arg_sized": (arg_sized, LEAK),
    "geo_buffer": (geo_buffer, LEAK),
    "h_render": (h_render, LEAK),
    "h_export": (h_export, LEAK),
    "h_list": (h_list, CLEAN),
    "h_health": (h_health, CLEAN),
    "sqlite_keep": (sqlite_keep, LEAK),
    "sqlite_ring": (sqlite_ring, PLATEAU),
    "env_keep": (env_keep, LEAK),
    "warn_unique": (warn_unique, LEAK),
    "err_fd": (err_fd, FD),
    "pipe_ok": (pipe_ok, CLEAN),
}
