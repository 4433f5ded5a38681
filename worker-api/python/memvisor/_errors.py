"""The exceptions memvisor.Pool raises, and the figures it gives per task."""

from __future__ import annotations

import collections

TYPE_CHECKING = False  # typing is for type checkers: importing it costs ~25 ms of CPU
if TYPE_CHECKING:
    from typing import List, NamedTuple, Optional

    class _TaskStats(NamedTuple):
        task: int
        status: str
        worker: Optional[int]
        pid: Optional[int]
        attempts: int
        mem_before: Optional[int]
        mem_after: Optional[int]
        mem_peak: Optional[int]
        retained: Optional[int]
        duration: float
        items: int
        kind: Optional[str]

    class _Attempt(NamedTuple):
        reason: str
        worker: Optional[int]
        pid: Optional[int]
        signal: Optional[int]
        exit: Optional[int]
        mem_peak: Optional[int]
else:  # the same fields, without typing at run time
    _TaskStats = collections.namedtuple(
        "TaskStats", "task status worker pid attempts mem_before mem_after mem_peak retained "
        "duration items kind")
    _Attempt = collections.namedtuple("Attempt", "reason worker pid signal exit mem_peak")


class TaskStats(_TaskStats):
    """What memvisor measured of one task (one chunk of items, with chunksize > 1).

    Memory figures are bytes, read by memvisor from the kernel (never by the worker):
    ``mem_before``/``mem_after`` the worker's private memory (per ``[limits] metric``) when the
    task started and ended, ``retained`` their difference, ``mem_peak`` the worker cgroup's
    highest usage during the task (page cache included). They are None for a task that never
    ended on a worker (quarantined). ``duration`` is in seconds; ``worker`` is the slot
    (1-based), ``pid`` the worker process, ``attempts`` how many workers it took (more than 1:
    earlier ones died on it), ``items`` how many items the task carried, ``task`` memvisor's
    task id (the line number of the task in the run), ``kind`` the task kind memvisor's leak
    detector judged it under (the function's name), ``status`` ok, failed or quarantined.
    """

    __slots__ = ()


class Attempt(_Attempt):
    """One attempt at a task that ended with its worker's death: why (memvisor's reason:
    ``kernel_oom``, ``hard_limit``, ``crash``, ``task_timeout``, ...), the worker slot and pid,
    the signal or exit status, and the peak memory the worker reached (bytes, or None)."""

    __slots__ = ()


class PoolError(Exception):
    """Base class of memvisor.Pool's own errors."""


class MemvisorNotFound(PoolError, FileNotFoundError):
    """The memvisor binary is not on PATH and $MEMVISOR_BIN does not name it."""


class NotImportable(PoolError, TypeError):
    """A function a worker could not import by name (a lambda, a nested function, a function
    of an interactive session): raised at submit time, before anything runs."""


class PoolBroken(PoolError):
    """memvisor ended before these tasks did: it could not run (e.g. a worker failed to start,
    or workers kept crashing), or it was killed. ``exit_code`` is memvisor's exit status and
    ``log`` its last error lines and the workers' last output."""

    def __init__(self, message: str, exit_code: Optional[int] = None, log: str = "") -> None:
        super().__init__(message + (f"\n{log}" if log else ""))
        self.exit_code = exit_code
        self.log = log


class PoolTerminated(PoolBroken):
    """terminate() stopped the pool before this task ended."""


class TaskQuarantined(PoolError):
    """A task whose workers died on it (hard limit, kernel OOM kill, crash, timeout) on each
    of ``[tasks] max_attempts`` attempts: memvisor gave up on it rather than lose the pool.

    ``attempts`` lists every attempt (``Attempt``: reason, worker, pid, signal or exit status,
    peak memory); ``task`` is memvisor's task id, ``stats`` its TaskStats; ``index`` is the
    position in the input of the task's first item (None for apply).
    """

    def __init__(self, message: str, task: int, attempts: List[Attempt],
                 stats: Optional[TaskStats] = None, index: Optional[int] = None) -> None:
        super().__init__(message)
        self.task = task
        self.attempts = attempts
        self.stats = stats
        self.index = index


class RemoteError(PoolError):
    """An exception raised by the function in a worker that could not be re-created here (it
    did not pickle, or does not unpickle): its type name, message and traceback as text."""

    def __init__(self, type_name: str, message: str, tb: str) -> None:
        super().__init__(f"{type_name}: {message}")
        self.type_name = type_name
        self.message = message
        self.traceback = tb


# Shown as memvisor.X in tracebacks and reprs, where users import them from.
for _cls in (TaskStats, Attempt, PoolError, MemvisorNotFound, NotImportable, PoolBroken,
             PoolTerminated, TaskQuarantined, RemoteError):
    _cls.__module__ = "memvisor"
