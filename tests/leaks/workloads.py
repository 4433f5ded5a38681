"""workloads: the labelled workloads of the leak suite (see docs/leak-suite.md).

A workload mixes task kinds in one worker process, interleaved at random with a fixed seed.
Each Python workload runs twice, as a `lines` worker and as an `api` worker
(tests/leaks/pyworker.py, the same kinds); a C workload is an `api` worker of its own
(tests/leaks/c_*.c). Every kind of a workload has a label (scenarios.py): the truth the
detector's verdicts are scored against.

Task lines are "KIND N ARG": N the task's number, ARG a seeded random int (cache keys).
Every leaking kind gets at least LEAK_TASKS tasks, so "named within 300 tasks of the kind"
can be told from "named late" and from "not named".
"""
import math
import random

from scenarios import CLEAN, FD, KINDS, LEAK, PLATEAU

LEAK_TASKS = 360  # tasks of each leaking kind, at least: 300 to be named in, and a margin


class Workload:
    def __init__(self, name, mix, story, seed, fast=False, c_worker=None, labels=None,
                 held_out=False, leak_tasks=LEAK_TASKS, options=()):
        self.name = name
        # memvisor -o SECTION.KEY=VALUE of this workload's runs (recycling), before the
        # runner's own -o (which can override them)
        self.options = list(options)
        # Held out: written after the detector was designed and never used to choose anything
        # in it; scored and reported on their own, not enforced (docs/leak-suite.md). True
        # for the first set, a name ("second") for a later one: each set is scored apart.
        self.held_out = held_out
        self.mix = mix  # kind -> weight
        self.story = story
        self.seed = seed
        self.fast = fast
        self.c_worker = c_worker  # None: the Python worker
        self.labels = labels or {k: KINDS[k][1] for k in mix}
        leaky = [w for k, w in mix.items() if self.labels[k] in (LEAK, FD)]
        share = min(leaky) / sum(mix.values()) if leaky else 0.25
        self.tasks = int(math.ceil(leak_tasks / share / 100.0)) * 100

    def modes(self):
        return ["api"] if self.c_worker else ["lines", "api"]

    def task_lines(self):
        rng = random.Random(self.seed)
        kinds = list(self.mix)
        weights = [self.mix[k] for k in kinds]
        for i in range(1, self.tasks + 1):
            kind = rng.choices(kinds, weights)[0]
            yield f"{kind} {i} {rng.randrange(1_000_000)}"

    def leaking(self):
        return sorted(k for k, v in self.labels.items() if v in (LEAK, FD))


W = Workload
WORKLOADS = [
    W("newcomer", {"keep32": 1, "report": 2},
      "the newcomer's worker: 32 KiB kept by 1 task in 3, 4 x 32 KiB scratch by the others",
      seed=1, fast=True),
    W("global_list", {"append": 3, "dataset": 3, "slots_temp": 3},
      "an audit list that only grows, next to a big dataset loaded and dropped", seed=2),
    W("sessions_cycles", {"sessions": 3, "cycles": 3, "cycles_del": 3},
      "a session dict never expired, next to cyclic garbage with and without __del__", seed=3),
    W("handles", {"open_files": 1, "sockets": 1, "dataset": 1, "objs_temp": 1},
      "files and sockets never closed, next to big temporaries", seed=4),
    W("caches", {"lru_unbounded": 3, "lru_bounded": 3, "bounded_lru": 3, "dataset": 2},
      "lru_cache(maxsize=None) next to a bounded lru_cache and a hand-made LRU that plateau",
      seed=5),
    W("objects", {"objs_kept": 3, "slots_temp": 3, "objs_temp": 3},
      "many small objects kept, next to many small objects (with and without __slots__) dropped",
      seed=6),
    W("callbacks_logging", {"callbacks": 1, "log_handler": 1, "callbacks_removed": 1,
                            "dataset": 1},
      "callbacks never unsubscribed and a logging handler added per task, next to the same "
      "done right", seed=7),
    W("threads", {"tls_cache": 3, "tls_scratch": 3, "objs_temp": 3},
      "a thread-local list on pool threads that grows, next to a thread-local scratch buffer",
      seed=8),
    W("generators", {"parked_gen": 3, "consumed_gen": 3, "dataset": 3},
      "generators parked holding buffers, next to the same generators run to the end", seed=9),
    W("ctypes", {"ctypes_leak": 3, "ctypes_ok": 3, "dataset": 3},
      "a leak inside C code called through ctypes, next to C code that frees", seed=10),
    W("no_leak", {"dataset": 1, "cycles": 1, "bounded_lru": 1, "slots_temp": 1,
                  "callbacks_removed": 1},
      "nothing leaks: big temporaries, cyclic garbage, a plateauing cache", seed=11),
    W("c_intern_render", {"intern": 3, "render": 3, "tally": 3},
      "C: strings interned forever, next to a 1 MiB render scratch from the heap", seed=12,
      fast=True, c_worker="c_intern_render",
      labels={"intern": LEAK, "render": CLEAN, "tally": CLEAN}),
    W("c_session_compress", {"session": 3, "compress": 3, "lookup": 3},
      "C: many small session nodes kept, next to a compressor's 64 x 8 KiB block churn",
      seed=13, c_worker="c_session_compress",
      labels={"session": LEAK, "compress": CLEAN, "lookup": CLEAN}),
    # Held out (scenarios.py): written after the detector was designed, run as they are.
    W("memo_service", {"memo_leak": 2, "template_render": 2, "json_roundtrip": 2,
                       "closure_registry": 2},
      "held out: a memo cache keyed by request next to big temporaries and a bounded handler "
      "list", seed=15, held_out=True),
    W("event_queue", {"queue_backlog": 2, "weakref_cache": 2, "stash_tracebacks": 2,
                      "handled_errors": 2},
      "held out: a backlog consumed at half the rate, exceptions kept with their frames, next "
      "to a weak cache and errors handled", seed=16, held_out=True),
    W("c_arena_cache", {"arena": 3, "cache": 3, "scratch": 3},
      "held out, C: an arena that maps 64 KiB per task and never unmaps, a bounded cache, a "
      "growing scratch buffer freed", seed=17, c_worker="c_arena_cache",
      labels={"arena": LEAK, "cache": PLATEAU, "scratch": CLEAN}, held_out=True),
    W("c_conn_parse", {"connect": 3, "parse": 3, "render": 3},
      "C: a socket per connect never closed, next to big parse and render temporaries",
      seed=14, fast=True, c_worker="c_conn_parse",
      labels={"connect": FD, "parse": CLEAN, "render": CLEAN}),
]

# Held out, second set (scenarios_blind.py, c_names_mapper.c): shapes the first suite does not
# have, written to see how the detector generalises (docs/leak-suite.md).
WORKLOADS += [
    W("big_blobs", {"blob_keep": 1, "frag_pool": 2, "lazy_import": 2},
      "held out 2: a 160 KiB payload kept per task, next to a noisy pool of 256 random-size "
      "buffers and a kind that imports a dozen modules once", seed=21, held_out="second"),
    W("near_threshold", {"slow_leak": 1, "frag_churn": 1, "tiny": 1},
      "held out 2: 18.5 KB kept per task (13% above min_slope), next to heap fragmentation "
      "and sub-100 us lookups", seed=22, held_out="second"),
    W("conditional", {"cond_leak": 1, "frag_churn": 1, "tiny": 1},
      "held out 2: 256 KiB kept by one task in ten of its kind, next to heap fragmentation",
      seed=23, held_out="second"),
    W("late_growth", {"late_cache": 1, "steady_cache": 1, "lazy_import": 1},
      "held out 2: a cache that turns unbounded after its warm-up, next to the same cache "
      "staying bounded", seed=24, held_out="second", leak_tasks=500),
    W("rare_slow", {"rare_slow": 1, "tiny": 19},
      "held out 2: a 50 ms job keeping 24 KiB, 1 task in 20, among sub-100 us lookups",
      seed=25, held_out="second"),
    W("two_rates", {"ring_leak": 1, "intern_leak": 1, "frag_churn": 1},
      "held out 2: 64 KiB frames and 42 KB of interned metric labels kept per task, next to "
      "heap fragmentation", seed=26, held_out="second"),
    W("noisy", {"noisy_leak": 1, "late_init": 1, "tiny": 1},
      "held out 2: 24 KiB kept per task by a kind whose own pool churns +-45 KiB a task, next "
      "to a 3 MiB table built once on a kind's 80th call", seed=28, held_out="second"),
    W("c_names_mapper", {"names": 1, "mapper": 1, "shuffle": 1, "tally": 1},
      "held out 2, C: 600 strdup'd names kept per task, a 128 KiB mapping kept every 4th "
      "task, next to 2,000 blocks freed in a shuffled order", seed=27,
      c_worker="c_names_mapper", held_out="second",
      labels={"names": LEAK, "mapper": LEAK, "shuffle": CLEAN, "tally": CLEAN}),
]

# Held out, third set (scenarios_third.py, c_realloc_log.c): real-world shapes neither earlier
# set has, written before the detector was touched (docs/leak-suite.md).
WORKLOADS += [
    W("buffers", {"view_leak": 1, "view_temp": 1, "re_churn": 1},
      "held out 3: a 32 KiB array kept alive by a memoryview of its header, next to 1 MiB "
      "frames viewed and released and the re module's cache churning", seed=31,
      held_out="third"),
    W("registries", {"method_lru": 1, "id_registry": 1, "id_registry_ok": 1},
      "held out 3: lru_cache on a method (self kept) and a class registry keyed by id(), next "
      "to the registry done right", seed=32, held_out="third"),
    W("pipeline", {"produce": 2, "consume": 1, "late_start": 2},
      "held out 3: a producer whose jobs a consumer frees (clean overall), next to a kind that "
      "starts leaking after its 100th call in a process", seed=33, held_out="third",
      leak_tasks=600),
    W("small_leak", {"small_leak": 1, "checksum": 1, "view_temp": 1},
      "held out 3: 6 KiB kept per task (below min_slope), next to big temporaries", seed=34,
      held_out="third"),
    W("big_leak", {"big_leak": 1, "checksum": 2},
      "held out 3: 1 MiB kept per task; memory_soft = 64M recycles its workers every few "
      "dozen of its tasks", seed=35, held_out="third", options=["limits.memory_soft=64M"]),
    W("recycled", {"mmap_keep": 1, "checksum": 1, "mmap_temp": 1},
      "held out 3: mmap.mmap regions kept, next to small tasks and mappings closed, every "
      "worker recycled after 50 tasks (max_tasks)", seed=36, held_out="third",
      options=["limits.max_tasks=50"]),
    W("background", {"thread_leak": 1, "thread_ok": 1, "checksum": 1},
      "held out 3: a thread that keeps 24 KiB ~2 ms after its task answered, next to the same "
      "thread dropping it", seed=37, held_out="third"),
    W("c_realloc_log", {"log_append": 1, "burst": 1, "shrink": 1},
      "held out 3, C: a log buffer grown by realloc 24 KiB a task, next to 2 MiB of small "
      "blocks freed (holes) and a realloc up and down", seed=38, c_worker="c_realloc_log",
      held_out="third",
      labels={"log_append": LEAK, "burst": CLEAN, "shrink": CLEAN}),
]

# Held out, fourth set (scenarios_fourth.py, c_thread_frag.c): shapes none of the three earlier
# sets has, written before the detector was touched (docs/leak-suite.md).
WORKLOADS += [
    W("two_speeds", {"flood": 1, "drip": 3, "alloc_free": 2},
      "held out 4: 256 KiB of frames kept by 1 task in 6 and an 18 KiB profile cache keyed by "
      "a rarely repeating id, next to a kind that allocates 2 MiB and frees it all",
      seed=41, held_out="fourth"),
    W("rare_fast", {"rare_leak": 1, "alloc_free": 3, "lookup": 36},
      "held out 4: a quick kind keeping 24 KiB on 1 task in 40, among quick lookups and big "
      "temporaries", seed=42, held_out="fourth"),
    W("fd_heap", {"libc_leak": 1, "spool_keep": 1, "alloc_free": 1},
      "held out 4: libc malloc through ctypes never freed, next to a temporary file kept open "
      "per task", seed=43, held_out="fourth"),
    W("executors", {"pool_per_task": 1, "pool_shared": 1, "lookup": 1},
      "held out 4: a ThreadPoolExecutor made per task and never shut down (a thread kept), "
      "next to one executor shared", seed=44, held_out="fourth"),
    W("loggers", {"logger_per_req": 1, "log_shared": 1, "alloc_free": 1},
      "held out 4: a logger (and its handler and stream) made per request, next to one shared "
      "logger", seed=45, held_out="fourth"),
    W("spikes", {"metric_labels": 1, "spike": 1, "lookup": 1},
      "held out 4: metric labels of unbounded cardinality (19 KiB a new label), next to a 16 "
      "MiB temporary per task", seed=46, held_out="fourth"),
    W("batching", {"flush_batch": 1, "alloc_free": 1, "lookup": 1},
      "held out 4: nothing leaks: a batch buffer that grows 24 KiB a call and is flushed every "
      "32 calls (a saw-tooth), next to big temporaries", seed=47, held_out="fourth"),
    W("c_thread_frag", {"thread_keep": 1, "align_leak": 1, "frag_keep": 1, "big_spike": 1},
      "held out 4, C: 24 KiB kept from a helper thread's arena and 20 KiB posix_memalign'd "
      "blocks kept, next to small blocks pinning freed space and a 24 MiB spike", seed=48,
      c_worker="c_thread_frag", held_out="fourth",
      labels={"thread_keep": LEAK, "align_leak": LEAK, "frag_keep": CLEAN, "big_spike": CLEAN}),
    W("default_lru", {"lru_default": 2, "concat_log": 1, "alloc_free": 1},
      "held out 4: functools.lru_cache at its default maxsize (128) of 20 KiB values (a "
      "plateau at 2.6 MiB), next to a bytes log grown by concatenation", seed=49,
      held_out="fourth"),
    W("flushes", {"flush_long": 1, "shm_keep": 1, "lookup": 1},
      "held out 4: a batch flushed every 100 calls (a long saw-tooth, bounded), next to "
      "shared-memory segments never closed (fd and mapping)", seed=50, held_out="fourth"),
    W("middleware", {"mw_get": 1, "mw_post": 1, "mw_put": 1, "mw_delete": 1},
      "held out 4: every kind leaks: a middleware keeps each request's 20 KiB context", seed=51,
      held_out="fourth"),
    W("c_reserve_commit", {"commit_leak": 1, "commit_ok": 1, "tally": 1},
      "held out 4, C: 32 KiB committed by mprotect in a PROT_NONE reservation per task and "
      "kept, next to 1 MiB committed and decommitted", seed=52, c_worker="c_reserve_commit",
      held_out="fourth",
      labels={"commit_leak": LEAK, "commit_ok": CLEAN, "tally": CLEAN}),
]

# Held out, fifth set (scenarios_fifth.py, c_files_pool.c): shapes none of the four earlier
# sets has, written before the detector was touched (docs/leak-suite.md).
WORKLOADS += [
    W("error_path", {"retry_keep": 1, "validate": 1, "burst10": 1},
      "held out 5: a 64 KiB request and its exception kept when its parse fails (1 in 3), next "
      "to the same failures dropped and a 7 MiB temporary on every 10th call", seed=61,
      held_out="fifth"),
    W("heavy_tail", {"arg_sized": 1, "geo_buffer": 1, "lookup": 1},
      "held out 5: request bodies kept whose size follows the request (4 KiB mostly, up to "
      "304 KiB), next to a journal buffer doubled when full (rare big steps)", seed=62,
      held_out="fifth"),
    W("shared_helper", {"h_render": 1, "h_export": 1, "h_list": 1, "h_health": 1},
      "held out 5: a helper that memoises 20 KiB per request, called by two kinds of four",
      seed=63, held_out="fifth"),
    W("library_heap", {"sqlite_keep": 1, "sqlite_ring": 1, "env_keep": 1},
      "held out 5: rows kept in an in-memory SQLite table (SQLite's heap), next to the same "
      "table bounded to 8 rows, and a per-request environment variable (setenv)", seed=64,
      held_out="fifth"),
    W("warnings_fd", {"warn_unique": 1, "err_fd": 1, "pipe_ok": 1},
      "held out 5: unique warning texts kept by __warningregistry__, a raw fd left open on "
      "the error path (1 in 3), next to pipes closed", seed=65, held_out="fifth"),
    W("c_files_pool", {"fopen_keep": 1, "tls_pool": 1, "err_leak": 1, "scratch": 1},
      "held out 5, C: fopen without fclose, 24 KiB kept in thread-locals of a 4-thread pool, "
      "64 KiB forgotten on the error path (1 in 3), next to a 2 MiB scratch", seed=66,
      c_worker="c_files_pool", held_out="fifth",
      labels={"fopen_keep": FD, "tls_pool": LEAK, "err_leak": LEAK, "scratch": CLEAN}),
]

assert all(lab in (LEAK, FD, CLEAN, PLATEAU) for w in WORKLOADS for lab in w.labels.values())

# Held out, sixth set (scenarios_sixth.py, c_libc_queue.c): shapes none of the five earlier sets
# has, written before the detector was touched (docs/leak-suite.md).
WORKLOADS += [
    W("backlog", {"enqueue": 5, "drain": 4, "lookup": 2},
      "held out 6: a producer queues 112 KiB jobs that a consumer kind drains at four fifths "
      "of its rate: a fifth of what it queues stays, ~22 KiB a task", seed=71,
      held_out="sixth"),
    W("order", {"login": 1, "fetch": 1, "static": 1},
      "held out 6: a fetch keeps its 64 KiB response only when a login ran just before it in "
      "the process (a third of fetches): an order-dependent leak", seed=72, held_out="sixth"),
    W("registrations", {"atexit_keep": 1, "finalize_keep": 1, "finalize_ok": 1},
      "held out 6: an atexit hook and a weakref.finalize on a long-lived object per request, "
      "each holding 24 KiB, next to finalize on the request's own object", seed=73,
      held_out="sixth"),
    W("async_pickle", {"spawn_wait": 1, "gather_ok": 1, "pickler_memo": 1},
      "held out 6: asyncio tasks left pending on an event nobody sets (24 KiB each), next to "
      "the same tasks awaited, and a long-lived Pickler whose memo keeps every record",
      seed=74, held_out="sixth"),
    W("plugins", {"plugin_module": 1, "class_registry": 1, "plugin_unload": 1},
      "held out 6: a module per request left in sys.modules and a class per request "
      "registered by __init_subclass__, next to the module made and dropped", seed=75,
      held_out="sixth"),
    W("sweeps", {"stage1": 1, "stage2": 1, "lookup": 1},
      "held out 6: a 96 KiB session per call swept every 16 calls, 1 in 4 kept for ever (a "
      "saw-tooth that drifts up 24 KiB a task), next to the same sweep keeping none; the "
      "kinds' names differ by a digit", seed=76, held_out="sixth"),
    W("c_libc_state", {"memstream_keep": 1, "regex_keep": 1, "regex_ok": 1},
      "held out 6, C: open_memstream streams never closed and regcomp'd filters never "
      "regfree'd (libc's own allocations), next to the regex freed", seed=77,
      c_worker="c_libc_queue", held_out="sixth",
      labels={"memstream_keep": LEAK, "regex_keep": LEAK, "regex_ok": CLEAN}),
    W("c_queue", {"push": 1, "pop": 1, "tally": 1},
      "held out 6, C: a producer's 48 KiB messages freed by a consumer kind (up to three a "
      "task): nothing leaks", seed=78, c_worker="c_libc_queue", held_out="sixth",
      labels={"push": CLEAN, "pop": CLEAN, "tally": CLEAN}),
]

# Held out, seventh set (scenarios_seventh.py, c_ttl_swing.c): shapes none of the six earlier
# sets has, written before the detector was touched (docs/leak-suite.md).
WORKLOADS += [
    W("heavy_tail_ln", {"lognormal_keep": 1, "last_reply": 1, "swing": 1},
      "held out 7: request bodies kept whose size is lognormal (100x spread, mean ~29 KiB), "
      "next to the last reply held alone (the same sizes) and a working set held until the "
      "next call, alternately 16 MiB and 1 MiB", seed=81, held_out="seventh"),
    W("finalizers", {"del_log": 1, "cycle_file": 1, "parse_rows": 1},
      "held out 7: a __del__ that keeps a 24 KiB report when the collector frees a "
      "connection (often in another kind's task), next to a file in a cycle whose fd the "
      "collector closes and a kind whose containers start the collector's passes", seed=82,
      held_out="seventh"),
    W("contexts", {"ctxvar_leak": 1, "ctxvar_ok": 1, "deque_ring": 1},
      "held out 7: a ContextVar per request set to 24 KiB in the process's context, next to "
      "one ContextVar set per request and a deque(maxlen=50) of 20 KiB records", seed=83,
      held_out="seventh"),
    W("patterns", {"pattern_keep": 1, "parse_rows": 1, "lookup": 1},
      "held out 7: a compiled routing filter (64 alternatives, ~20 KB) kept per request, "
      "next to many small containers made and dropped", seed=84, held_out="seventh"),
    W("mixed_service", {"del_log": 1, "lognormal_keep": 1, "last_reply": 1, "swing": 1,
                        "ctxvar_ok": 1},
      "held out 7: two leaks of the set (one landing at collections, one heavy-tailed) "
      "interleaved with three clean kinds that hold memory between tasks", seed=85,
      held_out="seventh"),
    W("population", {"user_cache": 1, "byte_budget": 1, "lookup": 1},
      "held out 7: a 48 KiB profile cached per user of a heavy-tailed population (growth "
      "that slows as repeat users come back, and never stops), next to a cache bounded at "
      "1 MiB whose entries have lognormal sizes", seed=87, held_out="seventh"),
    W("warmups", {"warm_leak": 1, "fill_cache": 1, "lookup": 1},
      "held out 7: a leak that starts after its kind's 30th call in a process (inside an "
      "isolation's window), next to a table that fills in its first 30 calls and stops",
      seed=88, held_out="seventh"),
    W("c_ttl_swing", {"ttl_big": 1, "ttl_small": 1, "swing": 1, "tally": 1},
      "held out 7, C: strdup'd keys in a hash table, 9 in 10 expired at the next call and "
      "the rest kept (2,000 keys a call: ~22 KB a task; 320: ~4 KB, under min_slope), next "
      "to a working set held until the next call, alternately 16 MiB and 1 MiB", seed=86,
      c_worker="c_ttl_swing", held_out="seventh",
      labels={"ttl_big": LEAK, "ttl_small": LEAK, "swing": CLEAN, "tally": CLEAN}),
]

# Held out, eighth set (scenarios_eighth.py, c_thread_stack.c): shapes none of the seven
# earlier sets has, written before the detector was touched (docs/leak-suite.md).
WORKLOADS += [
    W("phases", {"phase_leak": 1, "churn8": 1, "lookup": 1},
      "held out 8: a tracer switched on and off every 40 calls in a process, keeping 48 KiB "
      "a call while on (a leak at half the time), next to a kind that allocates 1 MiB and "
      "frees it", seed=91, held_out="eighth"),
    W("aging", {"age_history": 2, "nan_memo": 1, "lookup": 1},
      "held out 8: an undo stack keeping a copy of the whole document at every call (a leak "
      "that grows with the process's age: 120 bytes times the calls so far), next to a memo "
      "keyed by a float that is NaN for 5 requests in 6", seed=92, held_out="eighth"),
    W("timers", {"timer_leak": 1, "timer_grace": 1, "lookup": 1},
      "held out 8: a Timer(3600) per request never cancelled (a thread and a 24 KiB session "
      "each), next to a 24 KiB session freed 30 ms later on a timer's thread", seed=93,
      held_out="eighth"),
    W("weak_caches", {"weak_pinned": 1, "weak_ok": 1, "default_arg": 1},
      "held out 8: a WeakValueDictionary whose documents pin themselves through a bound "
      "method subscribed to a signal, the same cache done right, and a mutable default "
      "argument collecting 20 KiB rows", seed=94, held_out="eighth"),
    W("subprocesses", {"popen_keep": 1, "shell_ok": 1, "lookup": 1},
      "held out 8: Popen objects kept with their stdout pipe (an fd and a zombie a call), "
      "next to subprocess.run", seed=95, held_out="eighth"),
    W("hooks_maps", {"audit_hook": 1, "mmap_file": 1, "churn8": 1},
      "held out 8: sys.addaudithook per request (never removable, a 24 KiB context each), "
      "next to a file-backed mmap kept (an fd and page-cache pages a call)", seed=96,
      held_out="eighth"),
    W("generated", {"linecache_src": 1, "tombstones": 1, "churn8": 1},
      "held out 8: generated source registered in linecache under a unique name per request, "
      "next to a session dict whose keys churn (bounded)", seed=97, held_out="eighth"),
    W("mixed8", {"phase_leak": 1, "nan_memo": 1, "timer_grace": 1, "weak_ok": 1,
                 "tombstones": 1},
      "held out 8: the phased leak and the NaN memo beside three bounded or clean kinds of "
      "the set", seed=98, held_out="eighth"),
    W("c_thread_stack", {"stack_keep": 1, "thread_ok": 1, "strdup_small": 1, "trim_late": 1,
                         "tally": 1},
      "held out 8, C: threads never joined (a 48 KiB stack touched and kept a call: no "
      "malloc, no mmap of the worker's), the same joined, a 200-byte strdup a call (under "
      "min_slope), and a heap top pinned between calls", seed=99,
      c_worker="c_thread_stack", held_out="eighth",
      labels={"stack_keep": LEAK, "thread_ok": CLEAN, "strdup_small": LEAK,
              "trim_late": CLEAN, "tally": CLEAN}),
]
