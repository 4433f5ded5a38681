"""memvisor.Pool: multiprocessing.Pool's API, with memory limits that hold.

::

    import memvisor

    def work(item):                 # importable by name: top level of a module or script
        return expensive(item)

    if __name__ == "__main__":
        with memvisor.Pool(workers=4, memory_soft="256M", memory_hard="512M") as pool:
            for result in pool.imap_unordered(work, items):
                ...

Underneath, a ``memvisor run`` child process (the binary from $MEMVISOR_BIN, else PATH) runs
the workers, each in its own memory cgroup, and recycles a worker that crosses the soft
limit after its task, kills one that reaches the hard limit (the kernel does, at once), and
retries the task that worker had. Tasks are fed to memvisor's stdin and results read as they
come; arguments and results are pickled (see _codec for the wire format).

Standard library only. Same API and semantics as multiprocessing.Pool for: apply,
apply_async, map, map_async, starmap, starmap_async, imap, imap_unordered (chunksize
honoured), AsyncResult (get(timeout), wait, ready, successful), close, join, terminate, the
context manager (exit = terminate), initializer/initargs, maxtasksperchild,
multiprocessing.TimeoutError.

What memvisor adds:

- A task whose worker died (hard limit, kernel OOM kill, crash, ``task_timeout``) is retried
  on a new worker; past ``max_attempts`` it raises TaskQuarantined at its place in the
  results (with each attempt's reason and peak memory), and the pool goes on.
- An exception raised by the function is re-raised in the caller with the worker's
  traceback as its ``__cause__`` (multiprocessing.pool.RemoteTraceback, also
  memvisor.RemoteTraceback), as multiprocessing does; a result that does not pickle raises
  multiprocessing.pool.MaybeEncodingError, as there.
- Per-task memory, read by memvisor from the kernel: ``pool.last_stats`` (the task that
  ended last), ``AsyncResult.stats``, ``imap[_unordered](..., with_stats=True)`` yielding
  (result, TaskStats).
- ``return_exceptions=True`` on map, starmap and the imaps: exceptions in place of results.
- Leak suspects, warnings and errors of memvisor go to logger ``memvisor`` (suspects with
  their snapshot's path); ``pool.report()`` is ``memvisor report`` for this run;
  ``progress=True`` draws a status line on a terminal.

What differs from multiprocessing.Pool:

- Functions (and the initializer) must be importable by name, as with multiprocessing's
  spawn start method (the fork method's default on Linux lets a lambda through): a lambda,
  a nested function, or one defined in an interactive session raises NotImportable when
  submitted. Workers import the main script as ``__mp_main__``: guard the pool's creation
  with ``if __name__ == "__main__":``.
- Workers start at the first submitted task, not in Pool(); they import that function's
  module before their first task, and run the initializer then: a pool closed before any
  task never runs it.
- map and starmap without a chunksize time their items as the answers come: items that
  take 5 ms or more are one task each (memory figures, retries, quarantine and
  ``max_tasks`` per item); quicker ones are grouped into tasks of about 20 ms, and at least
  50 tasks a worker (multiprocessing's map picks len / (4 x workers) whatever the items).
  imap and imap_unordered default to 1, as in multiprocessing. A chunk fails or is
  quarantined as a whole, as in multiprocessing.
- An imap iterator raises a failed task's exception at its place and can be iterated on
  after it (multiprocessing's chunked imap ends there).
- terminate() makes tasks that did not end raise PoolTerminated (multiprocessing leaves them
  waiting forever); if memvisor itself ends early, they raise PoolBroken with its last log
  lines.
- A worker's stdout and stderr lines come out on the caller's stderr (through memvisor's
  log), not on the caller's stdout.
- A run directory (default ``.memvisor/`` in the current directory: ``state_dir=`` moves
  it) keeps events, snapshots and a copy of the results, for ``memvisor report``.
"""

import sys as _sys

from ._errors import (Attempt, MemvisorNotFound, NotImportable, PoolBroken, PoolError,
                      PoolTerminated, RemoteError, TaskQuarantined, TaskStats)

TYPE_CHECKING = False  # typing is for type checkers: importing it costs ~25 ms of CPU
if TYPE_CHECKING:
    from typing import Any

    from multiprocessing import TimeoutError
    from multiprocessing.pool import RemoteTraceback

    from ._pool import Pool
    from ._results import AsyncResult, IMapIterator

__all__ = [
    "Pool",
    "AsyncResult",
    "IMapIterator",
    "TaskStats",
    "Attempt",
    "PoolError",
    "PoolBroken",
    "PoolTerminated",
    "TaskQuarantined",
    "NotImportable",
    "MemvisorNotFound",
    "RemoteError",
    "RemoteTraceback",
    "TimeoutError",
]

_LAZY = {"Pool": "._pool", "AsyncResult": "._results", "IMapIterator": "._results",
         "TimeoutError": "multiprocessing", "RemoteTraceback": "multiprocessing.pool"}


def __getattr__(name: str) -> "Any":
    """The pool's machinery (threads, subprocess, logging, multiprocessing) is imported when
    first used: a worker imports this package too, and its start-up time is every recycle's."""
    where = _LAZY.get(name)
    if where is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib
    value = getattr(importlib.import_module(where, __name__), name)
    globals()[name] = value
    return value


# As multiprocessing does: what workers pickle from their main module (__mp_main__) unpickles
# here, in the main module.
if "__main__" in _sys.modules:
    _sys.modules.setdefault("__mp_main__", _sys.modules["__main__"])
