"""memvisor.Pool: multiprocessing.Pool's API on memvisor's workers (see the package's
docstring for what it adds and what differs)."""

from __future__ import annotations

import atexit
import collections
import importlib.util
import itertools
import json
import logging
import os
import pickle
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import weakref
# typing only for type checkers: importing it costs a Pool ~25 ms of CPU on a
# loaded 2-core machine (annotations are strings here: `from __future__ import
# annotations`), as memvisor_worker does.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Deque, Dict, Iterable, Iterator, List, Optional, Set, Tuple

from . import _codec, _handoff, _run
from ._errors import PoolBroken, PoolError, PoolTerminated, TaskStats
from ._progress import Progress
from ._results import AsyncResult, IMapIterator, _Job

log = logging.getLogger("memvisor")

RUN, CLOSE, TERMINATE = "RUN", "CLOSE", "TERMINATE"
_LEVELS = {"debug": logging.DEBUG, "info": logging.DEBUG, "warn": logging.WARNING,
           "error": logging.ERROR}
# A leak's story (suspected, the experiment's verdict, confirmed) at memvisor's own levels.
_LEAK_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING,
                "error": logging.ERROR}
_SKIP_FIELDS = ("ts", "level", "event")
_live: "weakref.WeakSet[Pool]" = weakref.WeakSet()

# map and starmap without a chunksize: an item that takes AUTO_ALONE_SECONDS or more stays a
# task of its own (its memory figures, retries and quarantine its own; a task's round trip,
# ~0.1-0.2 ms of memvisor's and this process's CPU, is then under 4% of it); quicker items go
# in tasks of about AUTO_TASK_SECONDS (a task per 10-us item is ~10x slower than
# multiprocessing's chunks; tasks of 5 ms cost 2-ms items ~10% of the time the workers had:
# 2,000 of them went in 1,000-1,400 tasks); and there are at least AUTO_TASKS_PER_WORKER
# tasks a worker, so leak windows and recycling still have tasks to work with. How long an
# item takes is what the worker timed (the function alone), and at most AUTO_AHEAD_PER_WORKER
# tasks a worker are in flight, so that each task is sized on recent answers (single items
# before the first): memvisor's input would take thousands of tasks sized on the first, cold,
# answer before the second came.
AUTO_ALONE_SECONDS = 0.005
AUTO_TASK_SECONDS = 0.02
AUTO_TASKS_PER_WORKER = 50
AUTO_AHEAD_PER_WORKER = 2


def _chunks(iterable: Iterable[Any], size: int) -> Iterator[Tuple[List[Any], int]]:
    """(items, index of the first) for each chunk of `size` items."""
    it = iter(iterable)
    index = 0
    while True:
        chunk = list(itertools.islice(it, size))
        if not chunk:
            return
        yield chunk, index
        index += len(chunk)


def _auto_size(n: int, workers: int, item_seconds: Optional[float]) -> int:
    """Items in the next task of a map of n items without a chunksize: one until the first
    results say how long an item takes."""
    if item_seconds is None or item_seconds >= AUTO_ALONE_SECONDS:
        return 1
    cap = max(1, n // (workers * AUTO_TASKS_PER_WORKER))
    return max(1, min(cap, int(AUTO_TASK_SECONDS / max(item_seconds, 1e-7))))


def _auto_chunks(job: _Job, items: Iterable[Any], n: int, workers: int,
                 next_answer: Callable[[_Job, int], None]) -> Iterator[Tuple[List[Any], int]]:
    """(items, index of the first) for each task of a map without a chunksize, sized as the
    feeder makes it from how long this call's items took so far (job.item_seconds); with
    AUTO_AHEAD_PER_WORKER tasks a worker in flight, next_answer(job, n) waits for one more
    answer than n."""
    it = iter(items)
    index = sent = 0
    while index < n:  # n: len(items), so no wait comes after the last task
        if sent - job.timed >= AUTO_AHEAD_PER_WORKER * workers:
            next_answer(job, sent - AUTO_AHEAD_PER_WORKER * workers)
        sent += 1
        chunk = list(itertools.islice(it, _auto_size(n, workers, job.item_seconds)))
        if not chunk:
            return
        yield chunk, index
        index += len(chunk)


def _main_spec() -> Dict[str, Optional[str]]:
    """How a worker imports the caller's main module, as multiprocessing's spawn does."""
    main = sys.modules.get("__main__")
    name = getattr(getattr(main, "__spec__", None), "name", None)
    if name:
        if name == "__main__" or name.endswith(".__main__"):
            name = None  # python -m package: its __main__ is not re-run in workers
        return {"main_name": name, "main_path": None}
    path = getattr(main, "__file__", None)
    if path and os.path.splitext(os.path.basename(path))[0] != "ipython":
        return {"main_name": None, "main_path": os.path.abspath(path)}
    return {"main_name": None, "main_path": None}


def _authkey() -> Optional[bytes]:
    """This process's multiprocessing authkey, which workers take as spawn's children do: a
    manager's proxy given to a worker authenticates with it (a worker's own, random, was
    rejected: AuthenticationError). None when multiprocessing is not imported (_results
    imports it)."""
    process = sys.modules.get("multiprocessing.process")
    return bytes(process.current_process().authkey) if process is not None else None


def _python_path() -> List[str]:
    """Where the workers find this package and memvisor_worker."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    spec = importlib.util.find_spec("memvisor_worker")
    other = os.path.dirname(os.path.abspath(spec.origin)) if spec and spec.origin else here
    return [here] if other == here else [here, other]


class Pool:
    """A pool of worker processes run by memvisor, with multiprocessing.Pool's API.

    ``Pool(workers=None, initializer=None, initargs=(), maxtasksperchild=None, *,
    memory_soft=None, memory_hard=None, max_tasks=None, progress=False, config=None,
    memvisor=None, options=None, **settings)``

    workers (alias ``processes``): worker processes, default one per CPU. memory_soft: a
    worker above it finishes its task and is replaced; memory_hard: a worker reaching it is
    killed by the kernel at once and its task retried (sizes: bytes or "256M"). max_tasks
    (alias maxtasksperchild): tasks per worker before it is replaced. Any other memvisor
    setting is a keyword named after its key (``task_timeout="30s"``, ``max_attempts=2``,
    ``state_dir=...``; `memvisor check` lists them), or ``options={"section.key": value}``;
    config names an INI file. memvisor names the binary (default $MEMVISOR_BIN, else PATH).
    Settings are checked when the Pool is made: a bad value raises ValueError with
    memvisor's message, an unknown keyword TypeError.
    """

    def __init__(self, workers: Optional[int] = None,
                 initializer: Optional[Callable[..., Any]] = None, initargs: Iterable[Any] = (),
                 maxtasksperchild: Optional[int] = None, *, memory_soft: Any = None,
                 memory_hard: Any = None, max_tasks: Optional[int] = None,
                 progress: bool = False, config: Optional[str] = None,
                 memvisor: Optional[str] = None, options: Optional[Dict[str, Any]] = None,
                 processes: Optional[int] = None, **settings: Any) -> None:
        self._state = RUN
        self._sv: Optional[_run.Supervisor] = None
        self._owner = os.getpid()  # a process forked from this one does not own the pool
        w = sys.modules.get("memvisor._worker")
        if w is not None and getattr(w, "bootstrapping", False):
            raise RuntimeError(
                "a memvisor.Pool was made while a worker imported the main module: guard the "
                "code that makes the pool with `if __name__ == \"__main__\":` (workers import "
                "the main module, as multiprocessing's spawn start method does)")
        if processes is not None and workers is not None and processes != workers:
            raise TypeError("give workers or processes (the same thing), not both")
        workers = workers if workers is not None else processes
        if workers is not None and workers < 1:
            raise ValueError("Number of processes must be at least 1")
        if max_tasks is not None and maxtasksperchild is not None and \
                max_tasks != maxtasksperchild:
            raise TypeError("give max_tasks or maxtasksperchild (the same thing), not both")
        max_tasks = max_tasks if max_tasks is not None else maxtasksperchild
        if max_tasks is not None and (not isinstance(max_tasks, int) or max_tasks < 1):
            raise ValueError("maxtasksperchild must be a positive int or None")
        # A warm template imports fn's module once and forks the workers (docs/templates.md);
        # template=False starts a fresh interpreter per worker instead.
        given: Dict[str, Any] = {"workers": workers, "memory_soft": memory_soft,
                                 "memory_hard": memory_hard, "max_tasks": max_tasks,
                                 "template": True}
        given.update(settings)
        given.update(options or {})
        self._binary = _run.find_binary(memvisor)
        self._args, effective = _run.build_options(self._binary, config, given)
        self._effective = effective
        if effective.get("control", {}).get("socket", "") == "":
            # Two pools in one directory would share STATE_DIR/control.sock: none unless asked.
            self._args += ["-o", "control.socket=none"]
        self.workers = int(effective["supervisor"]["workers"]) or (os.cpu_count() or 1)
        self._max_line = _run.parse_size(effective["tasks"]["max_size"])
        self._max_message = _run.parse_size(effective["worker"]["max_message"])
        soft = _run.parse_size(effective["limits"]["memory_soft"])
        self._initializer: Optional[bytes] = None
        if initializer is not None:
            _codec.function_token(initializer)  # NotImportable now, not in every worker
            self._initializer = pickle.dumps((initializer, tuple(initargs)),
                                             _codec.PICKLE_PROTOCOL)
        self._lock = threading.Lock()
        self._start_lock = threading.Lock()
        self._taskq: "queue.Queue[Any]" = queue.Queue()
        self._pending: Dict[int, Tuple[_Job, int, int, Optional[int]]] = {}
        self._next_id = 1
        self._broken: Optional[BaseException] = None
        self._feeder: Optional[threading.Thread] = None
        self._tmpdir: Optional[str] = None
        self._run_dir: Optional[str] = None
        self._run_known = threading.Event()
        self._copy: Any = None  # results.jsonl in the run directory
        self._worker_pids: Set[int] = set()
        self._errors: Deque[str] = collections.deque(maxlen=8)
        self._output: Deque[str] = collections.deque(maxlen=12)  # a traceback's end
        self._cleaned = False
        self.last_stats: Optional[TaskStats] = None
        # How the first template came: "fork" (from this process: _handoff), "exec" (started
        # by memvisor), None (not yet). memvisor's template_adopted event says it was taken.
        self.template_start: Optional[str] = None
        self._progress = Progress(sys.stderr, progress, soft)
        _live.add(self)

    # ---- multiprocessing.Pool's API ------------------------------------------------------

    def apply(self, func: Callable[..., Any], args: Iterable[Any] = (),
              kwds: Optional[Dict[str, Any]] = None) -> Any:
        """func(*args, **kwds) in a worker; waits for the result."""
        return self.apply_async(func, args, kwds).get()

    def apply_async(self, func: Callable[..., Any], args: Iterable[Any] = (),
                    kwds: Optional[Dict[str, Any]] = None,
                    callback: Optional[Callable[[Any], Any]] = None,
                    error_callback: Optional[Callable[[BaseException], Any]] = None
                    ) -> AsyncResult:
        job = AsyncResult(1, True, callback, error_callback)
        items = [((tuple(args), dict(kwds or {})), None)]
        self._submit(func, _codec.MODE_CALL, job, iter(items), 1)
        return job

    def map(self, func: Callable[[Any], Any], iterable: Iterable[Any],
            chunksize: Optional[int] = None, *, return_exceptions: bool = False) -> List[Any]:
        """[func(x) for x in iterable], in workers; raises the first failure (unless
        return_exceptions: then exceptions take their items' places)."""
        return self._map_async(func, iterable, _codec.MODE_MAP, chunksize, None, None,
                               return_exceptions).get()

    def map_async(self, func: Callable[[Any], Any], iterable: Iterable[Any],
                  chunksize: Optional[int] = None,
                  callback: Optional[Callable[[Any], Any]] = None,
                  error_callback: Optional[Callable[[BaseException], Any]] = None, *,
                  return_exceptions: bool = False) -> AsyncResult:
        return self._map_async(func, iterable, _codec.MODE_MAP, chunksize, callback,
                               error_callback, return_exceptions)

    def starmap(self, func: Callable[..., Any], iterable: Iterable[Iterable[Any]],
                chunksize: Optional[int] = None, *,
                return_exceptions: bool = False) -> List[Any]:
        """[func(*args) for args in iterable], in workers."""
        return self._map_async(func, iterable, _codec.MODE_STAR, chunksize, None, None,
                               return_exceptions).get()

    def starmap_async(self, func: Callable[..., Any], iterable: Iterable[Iterable[Any]],
                      chunksize: Optional[int] = None,
                      callback: Optional[Callable[[Any], Any]] = None,
                      error_callback: Optional[Callable[[BaseException], Any]] = None, *,
                      return_exceptions: bool = False) -> AsyncResult:
        return self._map_async(func, iterable, _codec.MODE_STAR, chunksize, callback,
                               error_callback, return_exceptions)

    def imap(self, func: Callable[[Any], Any], iterable: Iterable[Any], chunksize: int = 1, *,
             with_stats: bool = False, return_exceptions: bool = False) -> IMapIterator:
        """func(x) for each x, in input order, as results come (the input is read lazily)."""
        return self._imap(func, iterable, chunksize, True, with_stats, return_exceptions)

    def imap_unordered(self, func: Callable[[Any], Any], iterable: Iterable[Any],
                       chunksize: int = 1, *, with_stats: bool = False,
                       return_exceptions: bool = False) -> IMapIterator:
        """func(x) for each x, in the order tasks end. with_stats: (result, TaskStats)."""
        return self._imap(func, iterable, chunksize, False, with_stats, return_exceptions)

    def close(self) -> None:
        """No more tasks: the workers finish those submitted, then exit (join() waits)."""
        if self._forgotten():
            return
        with self._start_lock:
            if self._state == RUN:
                self._state = CLOSE
                if self._sv is not None:
                    self._taskq.put(None)

    def terminate(self) -> None:
        """Stops now: running tasks are killed with their workers, tasks not ended raise
        PoolTerminated. Returns once memvisor and every worker are gone."""
        if self._forgotten():
            return
        with self._start_lock:
            was = self._state
            self._state = TERMINATE
            sv = self._sv
            if sv is not None and was == RUN:
                self._taskq.put(None)
        if sv is not None:
            sv.terminate()
        self._finish()

    def join(self) -> None:
        """Waits for the workers to exit; after close() or terminate()."""
        if self._forgotten():
            return
        if self._state == RUN:
            raise ValueError("Pool is still running")
        self._finish()

    def __enter__(self) -> "Pool":
        self._check_running()  # a closed or terminated pool: ValueError, as multiprocessing's
        return self

    def __exit__(self, *exc: Any) -> None:
        self.terminate()

    def __reduce__(self) -> Any:
        raise NotImplementedError("pool objects cannot be passed between processes or pickled")

    def __repr__(self) -> str:
        pid = self._sv.pid if self._sv else None
        return f"<memvisor.Pool state={self._state} workers={self.workers} memvisor_pid={pid}>"

    # ---- what memvisor adds --------------------------------------------------------------

    @property
    def pid(self) -> Optional[int]:
        """memvisor's process id (None before the first task is submitted)."""
        return self._sv.pid if self._sv else None

    @property
    def worker_pids(self) -> Set[int]:
        """The worker processes alive now, as memvisor's log says."""
        with self._lock:
            return set(self._worker_pids)

    @property
    def run_dir(self) -> Optional[str]:
        """This run's directory (events, snapshots, run.json, results.jsonl)."""
        return self._run_dir

    def report(self) -> str:
        """`memvisor report` of this run: leak suspects with their evidence, recycles,
        per-task memory by kind, suggested limits."""
        if not self._run_dir:
            raise PoolError("no run directory yet: the pool has run no task (or memvisor "
                            "could not create its state directory)")
        with self._lock:
            if self._copy is not None:
                self._copy.flush()
        cp = subprocess.run([self._binary, "report", self._run_dir], capture_output=True,
                                 text=True, timeout=120, stdin=subprocess.DEVNULL)
        if cp.returncode != 0:
            raise PoolError(f"memvisor report failed: {cp.stderr.strip()}")
        return cp.stdout

    # ---- submitting ----------------------------------------------------------------------

    def _map_async(self, func: Callable[..., Any], iterable: Iterable[Any], mode: bytes,
                   chunksize: Optional[int], callback: Optional[Callable[[Any], Any]],
                   error_callback: Optional[Callable[[BaseException], Any]],
                   return_exceptions: bool) -> AsyncResult:
        self._check_running()
        items = iterable if hasattr(iterable, "__len__") else list(iterable)
        if chunksize is not None and chunksize < 1:
            raise ValueError("Chunksize must be 1+, not {0:n}".format(chunksize))
        n = len(items)  # type: ignore[arg-type]
        job = AsyncResult(n, False, callback, error_callback, return_exceptions)
        if n == 0:
            _codec.function_token(func)  # a lambda is refused, whatever the input
        elif chunksize is None:
            self._submit(func, mode, job,
                         _auto_chunks(job, items, n, self.workers, self._next_answer), n)
        else:
            self._submit(func, mode, job, _chunks(items, chunksize), n)
        return job


    def _imap(self, func: Callable[[Any], Any], iterable: Iterable[Any], chunksize: int,
              ordered: bool, with_stats: bool, return_exceptions: bool) -> IMapIterator:
        self._check_running()
        if chunksize < 1:
            raise ValueError("Chunksize must be 1+, not {0:n}".format(chunksize))
        n = len(iterable) if hasattr(iterable, "__len__") else None  # type: ignore[arg-type]
        job = IMapIterator(ordered, with_stats, return_exceptions)
        self._submit(func, _codec.MODE_MAP, job, _chunks(iterable, chunksize), n)
        return job

    def _next_answer(self, job: _Job, timed: int) -> None:
        """Waits (in the feeder) until job has more than `timed` answers, or the pool ended."""
        with job.answered:
            while job.timed <= timed and self._broken is None and self._state != TERMINATE:
                job.answered.wait(0.05)

    def _forgotten(self) -> bool:
        """In a process forked from the one that made the pool: the pool is not this
        process's (memvisor, its threads and its temporary directory are the maker's), so it
        is marked terminated here and left alone. Its calls hung (no thread here feeds
        memvisor) and its end, at exit, hung or removed the maker's temporary directory."""
        if self._owner == os.getpid():
            return False
        self._state = TERMINATE
        _live.discard(self)
        return True

    def _check_running(self) -> None:
        if self._forgotten():
            raise RuntimeError(
                f"this memvisor.Pool was made by process {self._owner}: a process forked from "
                f"it (this one, {os.getpid()}) cannot use it; make a Pool here")
        if self._state != RUN:
            raise ValueError("Pool not running")

    def _submit(self, func: Callable[..., Any], mode: bytes, job: _Job,
                chunks: Iterator[Tuple[Any, Optional[int]]], nitems: Optional[int]) -> None:
        token = _codec.function_token(func)  # NotImportable here, before anything runs
        job.kind = _codec.kind_of(func)
        self._check_running()  # in a forked process, before a lock its maker may hold
        with self._start_lock:
            self._check_running()
            if self._sv is None:
                self._start(func)
            self._progress.add_total(nitems)
            self._taskq.put((job, token, mode, chunks, nitems is None))

    def _start(self, func: Callable[..., Any]) -> None:
        """memvisor and its workers, at the first task: the workers then import `func`'s
        module before their first task (the warm template imports it once for all)."""
        self._tmpdir = tempfile.mkdtemp(prefix="memvisor-pool-")
        module = getattr(getattr(func, "func", func), "__module__", None)
        spec = dict(_main_spec(), sys_path=list(sys.path), sys_argv=list(sys.argv),
                    initializer=self._initializer, max_message=self._max_message,
                    authkey=_authkey(),
                    preload=[module] if module and module not in ("__main__", "__mp_main__")
                    else [])
        spec_path = os.path.join(self._tmpdir, "spec.pickle")
        with open(spec_path, "wb") as f:
            pickle.dump(spec, f, _codec.PICKLE_PROTOCOL)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(_python_path() + (
            [env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
        env["MEMVISOR_POOL_SPEC"] = spec_path
        env["PYTHONUNBUFFERED"] = "1"  # a worker's print() shows when it happens
        sv = _run.Supervisor(self._binary, self._args, env, self._tmpdir, self._on_result,
                             self._on_log, self._on_end)
        try:
            sv.start(_run.worker_command(), self._handoff(spec, env))
        except BaseException:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            raise
        self._sv = sv
        self._feeder = threading.Thread(target=self._feed, name="memvisor-feeder", daemon=True)
        self._feeder.start()

    def _handoff(self, spec: Dict[str, Any], env: Dict[str, str]) -> Optional[_handoff.Handoff]:
        """The first template forked from this process (_handoff), or None (memvisor starts
        it: why at DEBUG)."""
        why = _handoff.unusable(self._effective)
        if why is not None:
            log.debug("memvisor.Pool: the template is started by memvisor: %s", why)
            self.template_start = "exec"
            return None
        self.template_start = "fork"
        return _handoff.Handoff(spec, env)

    # ---- the feeder thread: task lines to memvisor ---------------------------------------

    def _feed(self) -> None:
        assert self._sv is not None
        while True:
            item = self._taskq.get()
            if item is None:
                break
            try:
                self._feed_job(*item)
            except Exception:  # noqa: BLE001 - a bug here must not stop the other calls
                log.exception("memvisor.Pool: feeding a call's tasks failed")
            # Not held while the next call is awaited: the call's job holds its results (a
            # map's list), which lived on here until the next call (CPython's
            # test_release_task_refs).
            item = None
        self._sv.end_input()

    def _feed_job(self, job: _Job, token: bytes, mode: bytes,
                  chunks: Iterator[Tuple[Any, Optional[int]]], unknown: bool) -> None:
        """Sends one call's tasks. An item that cannot be sent (it does not pickle, or is too
        long for a task line) fails at its place; an input that raises ends there."""
        assert self._sv is not None
        kind = _codec.kind_word(job.kind)
        sent = items = 0
        while True:
            try:
                chunk = next(chunks, None)
            except Exception as exc:  # noqa: BLE001 - the caller's iterable raised
                job._set(sent, False, exc, None, 1)
                sent += 1
                break
            if chunk is None:
                break
            batch, first = chunk
            nitems = len(batch) if mode != _codec.MODE_CALL else 1
            try:
                line = _codec.encode_task(kind, token, mode, batch)
                if len(line) >= self._max_line:
                    raise ValueError(
                        f"the arguments of item {first or 0} pickle to {len(line)} bytes, more "
                        f"than memvisor's longest task line ([tasks] max_size "
                        f"{self._max_line} bytes; raise it with Pool(max_size=...))")
            except Exception as exc:  # noqa: BLE001 - pickling can raise anything
                job._set(sent, False, exc, None, nitems)
                job.ended()  # an answer of sorts: an auto-sized map's feeder may wait for one
                sent, items = sent + 1, items + nitems
                continue
            with self._lock:
                broken = self._broken
                if broken is None and self._state == TERMINATE:
                    broken = PoolTerminated("the pool was terminated before this task ran")
                if broken is None:
                    task_id = self._next_id
                    self._next_id += 1
                    self._pending[task_id] = (job, sent, nitems, first)
            if broken is not None:
                job._abort(sent, broken, items)
                self._input_ended(job, unknown, items)
                return
            try:
                self._sv.write(line + b"\n")
            except OSError:
                pass  # memvisor is gone: _on_end fails what is pending, this task included
            sent, items = sent + 1, items + nitems
        job._set_length(sent)
        self._input_ended(job, unknown, items)

    def _input_ended(self, job: _Job, unknown: bool, items: int) -> None:
        if unknown:
            self._progress.input_ended(items)

    # ---- the results thread --------------------------------------------------------------

    def _on_result(self, raw: bytes) -> None:
        try:
            obj = json.loads(raw)
            task_id = obj["task"]
        except (ValueError, KeyError, TypeError):
            log.error("memvisor.Pool: a result line that does not parse: %.200r", raw)
            return
        self._keep_copy(raw)
        with self._lock:
            entry = self._pending.pop(task_id, None)
        if entry is None:
            log.error("memvisor.Pool: a result for task %s, which is not pending", task_id)
            return
        job, ci, nitems, first = entry
        ok, value, stats, seconds = _codec.decode_result(obj, nitems, first, job.kind)
        self.last_stats = stats
        if ok:  # the worker's own timing; memvisor's duration (a round trip more) if none
            job.time_items(seconds if seconds is not None else stats.duration, nitems)
        else:
            job.ended()
        self._progress.task_ended(nitems, stats.status, stats.mem_after)
        job._set(ci, ok, value, stats, nitems)

    def _keep_copy(self, raw: bytes) -> None:
        """The result line, appended to results.jsonl in the run directory: the results go
        to a FIFO, which `memvisor report` cannot re-read."""
        if self._copy is None:
            self._run_known.wait(10.0)  # memvisor logs its start before any result
            if not self._run_dir:
                return
            with self._lock:
                if self._copy is None and not self._cleaned:
                    try:
                        self._copy = open(os.path.join(self._run_dir, "results.jsonl"), "ab")
                    except OSError as exc:
                        log.warning("memvisor.Pool: no copy of the results in %s: %s",
                                    self._run_dir, exc)
                        self._run_dir = None
                        return
        with self._lock:
            if self._copy is not None:
                self._copy.write(raw if raw.endswith(b"\n") else raw + b"\n")

    def _on_end(self, code: int) -> None:
        """memvisor exited and every result was read: whatever is still pending fails."""
        tail = "\n".join(list(self._errors) + [f"worker: {o}" for o in self._output])
        with self._lock:
            if self._state == TERMINATE:
                err: BaseException = PoolTerminated(
                    "the pool was terminated before this task ended")
            else:
                err = PoolBroken(f"memvisor exited with status {code} before this task ended",
                                 code, tail)
            self._broken = err
            pending, self._pending = self._pending, {}
        for job, ci, nitems, _first in pending.values():
            job._set(ci, False, err, None, nitems)
            job.ended()
        self._run_known.set()

    # ---- the log thread ------------------------------------------------------------------

    def _on_log(self, obj: Any) -> None:
        """memvisor's JSON log: worker output to our stderr, leak suspects and warnings to
        logger "memvisor", the rest at DEBUG; pids, the run directory, recycles noted."""
        if not isinstance(obj, dict):
            self._errors.append(str(obj))
            log.error("memvisor: %s", obj)
            return
        event, level = obj.get("event"), obj.get("level")
        if event == "output":
            line = str(obj.get("line", ""))
            self._output.append(line)
            self._progress.clear()
            if sys.stderr is not None:
                sys.stderr.write(f"{line}\n")
            return
        if event == "start":
            run = obj.get("run")
            self._run_dir = run if isinstance(run, str) and os.path.isabs(run) else None
            self._run_known.set()
        elif event == "spawn" and isinstance(obj.get("pid"), int):
            with self._lock:
                self._worker_pids.add(obj["pid"])
        elif event == "exit":
            with self._lock:
                self._worker_pids.discard(obj.get("pid"))  # type: ignore[arg-type]
            if obj.get("reason") not in ("shutdown", "fatal"):
                self._progress.recycled()
        elif event == "signal":
            if self._sv is not None:
                self._sv.signal_seen.set()
            if self._state == TERMINATE:
                level = "debug"  # ours: terminate() sent it
        fields = " ".join(f"{k}={v}" for k, v in obj.items() if k not in _SKIP_FIELDS)
        if level == "error":
            self._errors.append(f"{event} {fields}")
        if event == "leak_suspect":
            # At memvisor's level: a suspect queued for its experiment is info, a confirmed
            # one (or one the experiment could not confirm) a warning.
            lvl = _LEAK_LEVELS.get(str(level), logging.WARNING)
            if lvl >= logging.WARNING:
                self._progress.clear()
            log.log(lvl, "leak suspect: %s", _suspect_words(obj), extra={"memvisor": obj})
            return
        if event == "leak_experiment" and (obj.get("step") == "verdict" or obj.get("why")):
            # memvisor's own line is key=value; a Pool's user reads a sentence. A verdict
            # answers a suspect said at info: at memvisor's level too (a clearing one is info);
            # the experiment's other steps, its info at DEBUG as any other event's.
            levels = _LEAK_LEVELS if obj.get("step") == "verdict" else _LEVELS
            lvl = levels.get(str(level), logging.INFO)
            if lvl >= logging.WARNING:
                self._progress.clear()
            per = obj.get("per_task")
            if obj.get("step") == "verdict":
                log.log(lvl, "leak experiment on %s (%s, %s tasks): %s%s (%s)", obj.get("kind"),
                        obj.get("mode"), obj.get("tasks"), obj.get("verdict"),
                        f", {per} bytes a task" if isinstance(per, int) and per else "",
                        obj.get("why"), extra={"memvisor": obj})
            else:
                log.log(lvl, "leak experiment %s (%s): %s", obj.get("step"), obj.get("mode"),
                        obj.get("why"), extra={"memvisor": obj})
            return
        lvl = _LEVELS.get(str(level), logging.INFO)
        if log.isEnabledFor(lvl):
            if lvl >= logging.WARNING:
                self._progress.clear()
            log.log(lvl, "%s %s", event, fields, extra={"memvisor": obj})

    # ---- the end -------------------------------------------------------------------------

    def _finish(self) -> None:
        """After close() or terminate(): waits for memvisor, its threads and the feeder, then
        removes the temporary directory (once)."""
        sv = self._sv
        if sv is not None:
            sv.wait()
            # Not the thread calling: terminate() from a callback, which runs in the results
            # thread or, for an item that does not pickle, in the feeder (as multiprocessing's
            # does from its result handler; join() raised "cannot join current thread").
            if self._feeder is not None and self._feeder is not threading.current_thread():
                self._feeder.join(10.0)
        with self._lock:
            if self._cleaned:
                return
            self._cleaned = True
            copy, self._copy = self._copy, None
        if copy is not None:
            copy.close()
        if self._tmpdir:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
        self._progress.finish()
        _live.discard(self)


def _suspect_words(obj: Dict[str, Any]) -> str:
    """A leak_suspect event in words. Said when suspected and again when an experiment
    (memvisor runs the function alone: pool.report() has the evidence) confirmed it or could
    not say; which one this is, in words. An inconclusive experiment's event says why, and
    carries the figures the kind was suspected on (none, per_task 0, for a kind queued on
    other evidence, and in an older memvisor's), no snapshot."""
    kind, how = obj.get("kind"), obj.get("experiment")
    if how == "inconclusive" and not obj.get("confirmed"):
        per = obj.get("per_task")
        seen = f", suspected at {per} bytes a task" if isinstance(per, int) and per > 0 else ""
        return (f"tasks of {kind} not confirmed: the experiment was inconclusive after "
                f"{obj.get('tasks')} tasks ({obj.get('why')}); still a suspect{seen}")
    if obj.get("rule") == "fd_trend":
        fds = obj.get("fds_per_task")
        kept = f"{fds:.2f} fds" if isinstance(fds, (int, float)) else f"{fds} fds"
    else:
        kept = f"{obj.get('per_task')} bytes"
    state = (f"confirmed by {obj.get('evidence')}" if obj.get("confirmed")
             else "to be confirmed by running it alone" if how == "queued"
             else f"not confirmed ({how})" if how else "not confirmed")
    snap, why_none = obj.get("snapshot"), obj.get("snapshot_reason")
    return (f"tasks of {kind} keep {kept} each (rule {obj.get('rule')}, confidence "
            f"{obj.get('confidence')}, over {obj.get('tasks')} tasks), {state}"
            + (f"; snapshot {snap}" if isinstance(snap, str)
               else f"; no snapshot: {why_none}" if isinstance(why_none, str) else ""))


@atexit.register
def _terminate_live_pools() -> None:
    """A pool left running at exit is terminated (memvisor would otherwise go on)."""
    for pool in list(_live):
        try:
            pool.terminate()
        except Exception:  # noqa: BLE001 - at exit, best effort
            pass
