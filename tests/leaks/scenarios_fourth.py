"""scenarios_fourth: the fourth held-out set's task kinds (docs/leak-suite.md, "Held out,
fourth set"). Written before the detector was touched, to see how it generalises to shapes
none of the three earlier sets has: two kinds leaking at very different rates in one worker, a
leaking kind that is 1 task in 40, a cache keyed by a rarely repeating key, libc malloc called
through ctypes, a file object kept open beside a heap leak, a ThreadPoolExecutor made per task
and never shut down, a logger made per request, metric labels of unbounded cardinality beside
a 16 MiB spike per task, a batch buffer flushed every 32 calls (a saw-tooth, bounded), and a
clean kind that allocates a lot per task and frees it all.

Same contract as scenarios.py: ``kind(i, arg) -> str``, one label each in FOURTH_KINDS; the
figures in each docstring were measured with the kind alone (`python3 tests/leaks/measure.py
KIND`: tracemalloc under PYTHONMALLOC=malloc over 400 tasks after 20, and RSS).
"""
import array
import concurrent.futures
import ctypes
import functools
import io
import json
import logging
import tempfile

LEAK, FD, CLEAN, PLATEAU = "leak", "fd", "clean", "plateau"

# ---- two rates: a flood and a drip ------------------------------------------------------

_HISTORY = []


def flood(i, arg):
    """Keeps the request's four 64 KiB frames in a replay history that nobody trims (a
    debugging aid left on). 262,xxx bytes per task."""
    frames = [bytearray(64 * 1024) for _ in range(4)]
    for f in frames:
        f[0] = arg & 0xFF
    _HISTORY.append(frames)
    return f"history {len(_HISTORY)}"


_PROFILES = {}


def drip(i, arg):
    """A profile cache keyed by user id from a large id space (1 in 10^6: keys almost never
    repeat) and never evicted; each value a ~18 KiB rendered string. The cache that never
    evicts."""
    key = f"user:{arg}"
    if key not in _PROFILES:
        _PROFILES[key] = (f"<profile id={arg}>" + "x" * (18 * 1024))
    return f"profile {len(_PROFILES[key])} {len(_PROFILES)}"


def alloc_free(i, arg):
    """A clean kind that allocates a lot and frees it all: 5,000 small dicts, their JSON
    (~0.2 MiB), a 2 MiB bytearray; summarised and dropped."""
    rows = [{"id": k, "v": (arg + k) % 97, "name": f"n{k}"} for k in range(5000)]
    text = json.dumps(rows)
    blob = bytearray(2 * 1024 * 1024)
    blob[-1] = len(text) & 0xFF
    return f"rows {len(rows)} {len(text)} {blob[-1]}"


def lookup(i, arg):
    """A quick clean kind: a dict lookup and a string."""
    return f"lookup {(arg * 2654435761) % 1000003}"


# ---- a rare leaking kind ------------------------------------------------------------------

_RARE = []


def rare_leak(i, arg):
    """A quick admin task that keeps 24 KiB (an audit blob) in a list; 1 task in 40 of its
    workload."""
    _RARE.append(bytes(24 * 1024))
    return f"rare {len(_RARE)}"


# ---- libc malloc through ctypes, beside a file kept open -------------------------------

_LIBC = None


def _libc():
    global _LIBC
    if _LIBC is None:
        _LIBC = ctypes.CDLL(None)
        _LIBC.malloc.restype = ctypes.c_void_p
        _LIBC.malloc.argtypes = [ctypes.c_size_t]
        _LIBC.free.argtypes = [ctypes.c_void_p]
    return _LIBC


def libc_leak(i, arg):
    """Gets a 24 KiB buffer from libc's malloc through ctypes (a C API that hands the caller a
    buffer to free), fills it, and never frees it: invisible to tracemalloc."""
    libc = _libc()
    p = libc.malloc(24 * 1024)
    ctypes.memset(p, arg & 0x7F, 24 * 1024)
    return f"cbuf {ctypes.string_at(p, 1)[0]}"


_SPOOLS = []


def spool_keep(i, arg):
    """Spools the request to a temporary file (tempfile.TemporaryFile) and keeps the file
    object "for a retry": an fd per task, and ~1 KiB of Python objects."""
    f = tempfile.TemporaryFile()
    f.write(b"%08d\n" % arg * 64)
    f.flush()
    _SPOOLS.append(f)
    return f"spools {len(_SPOOLS)}"


# ---- a ThreadPoolExecutor per task, never shut down -------------------------------------

_EXECUTORS = []


def pool_per_task(i, arg):
    """A per-request helper makes its own ThreadPoolExecutor(max_workers=1), submits one job,
    and is registered "for cancellation"; nobody calls shutdown(), so each task leaves an idle
    thread (its stack, its thread state) waiting on the executor's queue."""
    ex = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    r = ex.submit(sum, range(arg % 1000)).result()
    _EXECUTORS.append(ex)
    return f"pool {r} {len(_EXECUTORS)}"


_SHARED = None


def pool_shared(i, arg):
    """The same job on one executor made once. Clean."""
    global _SHARED
    if _SHARED is None:
        _SHARED = concurrent.futures.ThreadPoolExecutor(max_workers=2)
    return f"pool {_SHARED.submit(sum, range(arg % 1000)).result()}"


# ---- a logger per request -----------------------------------------------------------------


def logger_per_req(i, arg):
    """Makes a logger per request (logging.getLogger(f"svc.req.{i}")) with its own handler
    writing the request's debug dump (~20 KiB) to an in-memory stream: logging's manager keeps
    every logger, its handler and its stream, forever."""
    log = logging.getLogger(f"svc.req.{i}.{arg}")
    log.propagate = False
    log.setLevel(logging.DEBUG)
    h = logging.StreamHandler(io.StringIO())
    log.addHandler(h)
    log.debug("request %d body %s", i, "b" * (20 * 1024))
    return f"logged {i}"


_SHARED_LOG = None


def log_shared(i, arg):
    """The same dump through one module logger with one handler to a stream truncated after
    each write. Clean."""
    global _SHARED_LOG
    if _SHARED_LOG is None:
        _SHARED_LOG = logging.getLogger("svc.shared")
        _SHARED_LOG.propagate = False
        _SHARED_LOG.setLevel(logging.DEBUG)
        _SHARED_LOG.addHandler(logging.StreamHandler(io.StringIO()))
    _SHARED_LOG.debug("request %d body %s", i, "b" * (20 * 1024))
    stream = _SHARED_LOG.handlers[0].stream
    stream.seek(0)
    stream.truncate()
    return f"logged {i}"


# ---- metric labels of unbounded cardinality beside a big spike ---------------------------

_METRICS = {}


def metric_labels(i, arg):
    """Records latencies under a label that includes the request's client id (cardinality
    explosion): each new label gets an array('d') of 2,400 buckets (~19 KiB), never dropped."""
    label = f"latency{{client={arg}}}"
    series = _METRICS.get(label)
    if series is None:
        series = _METRICS[label] = array.array("d", bytes(8 * 2400))
    series[arg % 2400] += 1.0
    return f"series {len(_METRICS)}"


def spike(i, arg):
    """A big temporary: a 16 MiB bytearray (an upload buffered whole), touched and dropped.
    Clean."""
    buf = bytearray(16 * 1024 * 1024)
    for off in range(0, len(buf), 1 << 20):
        buf[off] = (arg + off) & 0xFF
    return f"spike {sum(buf[:: 1 << 20])}"


# ---- a batch buffer flushed every 32 calls: a saw-tooth --------------------------------

_BATCH = []


def flush_batch(i, arg):
    """Buffers 24 KiB of rows a call and flushes (clears) the batch every 32 calls in a
    process: grows 24 KiB a task for 31 tasks, then drops ~750 KiB. Bounded (a saw-tooth)."""
    _BATCH.append(bytes(24 * 1024))
    if len(_BATCH) >= 32:
        n = sum(len(b) for b in _BATCH)
        _BATCH.clear()
        return f"flushed {n}"
    return f"batched {len(_BATCH)}"


# ---- the default lru_cache (maxsize=128) of big values: a plateau ------------------------


@functools.lru_cache  # maxsize=128, the default: bounded
def _render_card(key):
    return f"<card {key}>" + "c" * (20 * 1024)


def lru_default(i, arg):
    """Renders a card through functools.lru_cache with its default maxsize (128) on keys that
    rarely repeat: ~20 KiB kept a task until 128 are cached, then one evicted per miss. A
    plateau at ~2.6 MiB."""
    return f"card {len(_render_card(arg))}"


_CONCAT = [b""]


def concat_log(i, arg):
    """Appends a 20 KiB record to an immutable bytes log by concatenation (log = log +
    record): each task allocates the whole log anew and frees the old one, keeping 20 KiB
    more."""
    _CONCAT[0] = _CONCAT[0] + (b"%08d" % arg) * (20 * 1024 // 8)
    return f"log {len(_CONCAT[0])}"


# ---- a batch flushed every 100 calls: a long saw-tooth ----------------------------------

_BIG_BATCH = []


def flush_long(i, arg):
    """Buffers 24 KiB of rows a call and flushes the batch every 100 calls in a process:
    grows 24 KiB a task for 99 tasks, then drops ~2.4 MiB. Bounded."""
    _BIG_BATCH.append(bytes(24 * 1024))
    if len(_BIG_BATCH) >= 100:
        _BIG_BATCH.clear()
        return "flushed"
    return f"batched {len(_BIG_BATCH)}"


_SHMS = []


def shm_keep(i, arg):
    """Publishes the result through multiprocessing.shared_memory (a 16 KiB segment), unlinks
    its name once "the reader has it", and keeps the SharedMemory object "until the reader is
    done"; nobody closes it: an fd and a shared mapping per task."""
    from multiprocessing import shared_memory
    shm = shared_memory.SharedMemory(create=True, size=16 * 1024)
    shm.buf[:8] = b"%08d" % (arg % 10 ** 8)
    shm.unlink()  # the name is gone (the reader has it open); the fd and mapping stay
    _SHMS.append(shm)
    return f"shm {len(_SHMS)}"

# ---- every kind leaks: a middleware keeps each request's context -------------------------

_REQUESTS = []


def _middleware(i, arg):
    _REQUESTS.append(bytes(20 * 1024))  # the request context, kept "for tracing"


def mw_get(i, arg):
    """Every kind of this worker goes through a middleware that keeps the request's 20 KiB
    context; get: a lookup."""
    _middleware(i, arg)
    return f"get {(arg * 31) % 977}"


def mw_post(i, arg):
    """The middleware's 20 KiB kept; post: 200 KiB of temporaries."""
    _middleware(i, arg)
    tmp = [bytes(1024) for _ in range(200)]
    return f"post {len(tmp)}"


def mw_put(i, arg):
    """The middleware's 20 KiB kept; put: a JSON round trip."""
    _middleware(i, arg)
    return f"put {len(json.loads(json.dumps({'k': list(range(500))}))['k'])}"


def mw_delete(i, arg):
    """The middleware's 20 KiB kept; delete: nothing else."""
    _middleware(i, arg)
    return "deleted"


FOURTH_KINDS = {
    "flood": (flood, LEAK),
    "drip": (drip, LEAK),
    "alloc_free": (alloc_free, CLEAN),
    "lookup": (lookup, CLEAN),
    "rare_leak": (rare_leak, LEAK),
    "libc_leak": (libc_leak, LEAK),
    "spool_keep": (spool_keep, FD),
    "pool_per_task": (pool_per_task, LEAK),
    "pool_shared": (pool_shared, CLEAN),
    "logger_per_req": (logger_per_req, LEAK),
    "log_shared": (log_shared, CLEAN),
    "metric_labels": (metric_labels, LEAK),
    "spike": (spike, CLEAN),
    "flush_batch": (flush_batch, PLATEAU),
    "lru_default": (lru_default, PLATEAU),
    "concat_log": (concat_log, LEAK),
    "flush_long": (flush_long, PLATEAU),
    "shm_keep": (shm_keep, FD),
    "mw_get": (mw_get, LEAK),
    "mw_post": (mw_post, LEAK),
    "mw_put": (mw_put, LEAK),
    "mw_delete": (mw_delete, LEAK),
}
