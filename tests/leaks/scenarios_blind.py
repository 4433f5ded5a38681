"""scenarios_blind: the second held-out set's task kinds (docs/leak-suite.md, "Held out, second
set"). Written to test how the detector generalises to shapes the first suite does not have:
leaks of other sizes (160 KiB and 64 KiB per task, one just above min_slope), a leak in one
task of ten, a cache that turns unbounded after a warm-up, a rare slow leaking kind among
fast clean ones, interned strings, and clean kinds that fragment the heap or grow once.

Same contract as scenarios.py: ``kind(i, arg) -> str``, one label each in BLIND_KINDS; the
bytes per task in each docstring were measured with the kind alone (tracemalloc under
PYTHONMALLOC=malloc, over 200 tasks after 20 of warm-up: `python3 tests/leaks/measure.py`).
"""
import random
import sys

LEAK, CLEAN, PLATEAU = "leak", "clean", "plateau"

# ---- big leaks ----------------------------------------------------------------------------

_BLOBS = []


def blob_keep(i, arg):
    """Keeps the request's 160 KiB payload "for a retry that never comes": 163,922 bytes per
    task (glibc serves it from mmap'd chunks: no heap hole to fill; RSS 167,936)."""
    _BLOBS.append(b"%06d" % (arg % 1000000) * (160 * 1024 // 6))
    return f"blobs {len(_BLOBS)}"


_RING = []


def ring_leak(i, arg):
    """A 64 KiB frame appended to a "ring" whose trim was forgotten: 65,642 bytes per task."""
    _RING.append(bytearray(64 * 1024))
    return f"ring {len(_RING)}"


# ---- a leak just above min_slope ----------------------------------------------------------

_HIST = []


def slow_leak(i, arg):
    """Keeps a histogram of 2,300 floats per task (array('d')): 18,529 bytes per task, 13%
    above the default min_slope (16 KiB)."""
    import array
    _HIST.append(array.array("d", [float(arg % 97)]) * 2300)
    return f"hist {len(_HIST)}"


# ---- interned strings ----------------------------------------------------------------------

_METRICS = {}


def intern_leak(i, arg):
    """A metrics registry keyed by interned label strings (sys.intern, as a symbol table),
    with the request id in the labels (unbounded cardinality): 220 new 60-character keys
    and their counters per task, many small blocks: 41,992 bytes per task on average
    (~26 KB of strings; the rest is the dict's table, which doubles: 38 KB to 62 KB a task
    over a quarter of the run; RSS 68,751)."""
    for k in range(220):
        label = sys.intern(f"requests{{id={i:08d},shard={k:04d},user={arg:08d}}}" + "n" * 14)
        _METRICS[label] = _METRICS.get(label, 0) + 1
    return f"series {len(_METRICS)}"


# ---- a leak on a conditional path ---------------------------------------------------------

_DUMPS = []


def cond_leak(i, arg):
    """Parses a 256 KiB request; one request in ten (ARG % 10 == 0) "fails" and its buffer is
    kept for a post-mortem nobody reads: 262 KiB on one task in ten (at random), none on
    the others; 21,727 bytes per task measured over 400 tasks (26.2 KiB expected)."""
    buf = bytearray(256 * 1024)
    buf[arg % len(buf)] = 1
    if arg % 10 == 0:
        _DUMPS.append(buf)
    return f"dumps {len(_DUMPS)}"


# ---- a cache bounded until a warm-up ends, unbounded after --------------------------------

_LATE = {}
_LATE_CALLS = [0]


def late_cache(i, arg):
    """A results cache keyed by ARG % 64 for its first 50 calls in a process; then (a
    "config reload" adds the request id to the key) every call is a miss, nothing evicted:
    24,856 bytes per task over tasks 320-420 (at most 64 x 24 KiB before)."""
    _LATE_CALLS[0] += 1
    key = arg % 64 if _LATE_CALLS[0] <= 50 else (i, arg)
    if key not in _LATE:
        _LATE[key] = bytes(24 * 1024)
    return f"late {len(_LATE)}"


_STEADY = {}


def steady_cache(i, arg):
    """The same cache without the reload: 64 entries of 24 KiB keyed by ARG % 64, then only
    hits. Plateaus at ~1.5 MiB (0 bytes per task after its warm-up)."""
    key = arg % 64
    if key not in _STEADY:
        _STEADY[key] = bytes(24 * 1024)
    return f"steady {len(_STEADY)}"


# ---- a rare, slow leaking kind among fast clean ones --------------------------------------

_AUDIT = []


def rare_slow(i, arg):
    """A 50 ms batch job (a busy loop over small temporaries) that keeps a 24 KiB summary:
    24,658 bytes per task, ~50 ms a task here (PYTHONMALLOC=malloc). Runs once in 20 tasks
    in its workload."""
    rng = random.Random(arg)
    total = 0.0
    # ~50 ms of pure Python work on this machine, temporaries freed as it goes
    for _ in range(750):
        row = [rng.random() for _ in range(1000)]
        total += sum(row)
    _AUDIT.append(bytes(24 * 1024))
    return f"job {total:.0f} {len(_AUDIT)}"


_OWN_POOL = []
_NOISY = []


def noisy_leak(i, arg):
    """Keeps a 24 KiB record per task, and in the same task replaces 12 of its own pool of
    128 buffers of 1-32 KiB at random (a plateau of its own: +-45 KiB a task of noise around
    the leak): 24,598 bytes per task on average (RSS 28,252), its own pool's noise on top."""
    rng = random.Random(arg)
    if not _OWN_POOL:
        _OWN_POOL.extend(bytearray(rng.randrange(1024, 32 * 1024)) for _ in range(128))
    for _ in range(12):
        _OWN_POOL[rng.randrange(128)] = bytearray(rng.randrange(1024, 32 * 1024))
    _NOISY.append(bytes(24 * 1024))
    return f"noisy {len(_NOISY)}"


_LATE_TABLE = []
_LATE_INIT_CALLS = [0]


def late_init(i, arg):
    """Builds a 3 MiB lookup table on its 80th call in a process (a feature first used late,
    long after any warm-up) and keeps it: one step of growth, then nothing. Clean."""
    _LATE_INIT_CALLS[0] += 1
    if _LATE_INIT_CALLS[0] == 80:
        _LATE_TABLE.extend("%08d" % k for k in range(40000))
    return f"late_init {len(_LATE_TABLE)}"


def tiny(i, arg):
    """A lookup: a few small temporaries, well under 100 us. Clean."""
    d = {"a": arg, "b": i}
    return f"tiny {d['a'] % 7 + d['b'] % 3}"


# ---- clean kinds that fragment the heap or grow once --------------------------------------


def frag_churn(i, arg):
    """2,000 buffers of 16 B-8 KiB, freed in a random order interleaved with new ones
    (glibc's free lists and top chunk move; nothing is kept): 0 bytes per task."""
    rng = random.Random(arg)
    live = [bytearray(rng.randrange(16, 8 * 1024)) for _ in range(1000)]
    rng.shuffle(live)
    del live[::2]
    live.extend(bytearray(rng.randrange(16, 8 * 1024)) for _ in range(1000))
    rng.shuffle(live)
    n = len(live)
    while live:
        live.pop()
    return f"churned {n}"


_POOL = []


def frag_pool(i, arg):
    """A pool of 256 buffers of 1-32 KiB; each task replaces 20 at random with new ones of a
    random size. Live bytes wander around ~4.2 MiB (a random walk held to its mean, +-60 KiB
    per task): a plateau, but a noisy one that fragments the heap."""
    rng = random.Random(arg)
    if not _POOL:
        _POOL.extend(bytearray(rng.randrange(1024, 32 * 1024)) for _ in range(256))
    for _ in range(20):
        _POOL[rng.randrange(256)] = bytearray(rng.randrange(1024, 32 * 1024))
    return f"pool {sum(len(b) for b in _POOL) >> 10}"


_TABLE = []


def lazy_import(i, arg):
    """The first call imports a dozen big standard modules (several MiB, once); the first
    call with ARG % 25 == 0 builds a 2 MiB lookup table, once. Both are one-time growth;
    then it keeps nothing: 0 bytes per task after the first few."""
    import asyncio  # noqa: F401
    import decimal
    import difflib
    import email.mime.multipart  # noqa: F401
    import http.client  # noqa: F401
    import xml.dom.minidom  # noqa: F401
    if not _TABLE and arg % 25 == 0:
        _TABLE.extend(str(k) for k in range(60000))
    a = ["line %d %d" % (k, arg % 5) for k in range(20)]
    b = ["line %d %d" % (k, arg % 3) for k in range(20)]
    ratio = difflib.SequenceMatcher(None, a, b).ratio()
    return f"lazy {decimal.Decimal(ratio).quantize(decimal.Decimal('0.01'))} {len(_TABLE)}"


BLIND_KINDS = {
    "blob_keep": (blob_keep, LEAK),
    "ring_leak": (ring_leak, LEAK),
    "slow_leak": (slow_leak, LEAK),
    "intern_leak": (intern_leak, LEAK),
    "cond_leak": (cond_leak, LEAK),
    "late_cache": (late_cache, LEAK),
    "steady_cache": (steady_cache, PLATEAU),
    "rare_slow": (rare_slow, LEAK),
    "noisy_leak": (noisy_leak, LEAK),
    "late_init": (late_init, CLEAN),
    "tiny": (tiny, CLEAN),
    "frag_churn": (frag_churn, CLEAN),
    "frag_pool": (frag_pool, PLATEAU),
    "lazy_import": (lazy_import, CLEAN),
}
