"""What Pool calls return: AsyncResult (apply_async, map_async, starmap_async) and the
iterators of imap and imap_unordered. Results are set by the Pool's results thread, one task
(chunk) at a time, through _set(); a task that never ran is failed through _set() too, so
that nothing waits forever."""

from __future__ import annotations

import collections
import logging
import threading
import time
from multiprocessing import TimeoutError
# typing only for type checkers: importing it costs a Pool ~25 ms of CPU on a
# loaded 2-core machine (annotations are strings here: `from __future__ import
# annotations`), as memvisor_worker does.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Deque, Dict, List, Optional, Tuple

from ._errors import TaskStats

log = logging.getLogger("memvisor")

# One item as it is handed out: (raise it?, value or exception, stats).
if TYPE_CHECKING:
    _Entry = Tuple[bool, Any, Optional[TaskStats]]


class _Job:
    """A call's tasks: chunk i carries `nitems` items. Subclasses say what ready means."""

    def __init__(self, return_exceptions: bool) -> None:
        self._return_exceptions = return_exceptions
        # Its function's task kind (module.qualname), set when it is submitted: what
        # TaskStats.kind says for its tasks, answered or not (_codec.decode_result).
        self.kind: Optional[str] = None
        # How long one of its items takes (seconds, from its answers so far: time_items;
        # None before the first): what sizes a map's tasks without a chunksize.
        self.item_seconds: Optional[float] = None
        self.timed = 0  # answers that said how long their items took
        self._secs = self._items_timed = 0.0
        self.answered = threading.Condition(threading.Lock())  # notified at each answer
        self._cond = threading.Condition(threading.Lock())

    def time_items(self, seconds: float, nitems: int) -> None:
        """A task of nitems items took `seconds` in its function: item_seconds is the mean of
        the answers so far, weighted by their items (a single item's cold first call, the
        first answer, weighs little once a chunk has answered), older answers decaying."""
        with self.answered:
            self._secs = 0.7 * self._secs + seconds
            self._items_timed = 0.7 * self._items_timed + nitems
            self.item_seconds = self._secs / self._items_timed
            self.timed += 1
            self.answered.notify_all()

    def ended(self) -> None:
        """A task ended without timing (failed, quarantined, never ran): wakes the feeder."""
        with self.answered:
            self.timed += 1
            self.answered.notify_all()

    def _set(self, ci: int, ok: bool, value: Any, stats: Optional[TaskStats],
             nitems: int) -> None:
        raise NotImplementedError

    def _set_length(self, chunks: int) -> None:
        """The input ended after `chunks` tasks (only iterators learn it late)."""

    def _abort(self, ci: int, exc: BaseException, first: int) -> None:
        """Tasks ci.. (items first..) were never sent (memvisor ended, or terminate()): the
        input ends there, with exc in its place."""
        self._set(ci, False, exc, None, 1)
        self._set_length(ci + 1)


class AsyncResult(_Job):
    """The result of apply_async, map_async or starmap_async, as multiprocessing's: get(),
    wait(), ready(), successful(); plus ``stats`` (TaskStats, a list of one per item for
    map). As in multiprocessing, a map is ready (and failed) at its first failed task, unless
    return_exceptions is set: then exceptions take their items' places in the list."""

    def __init__(self, items: int, single: bool, callback: Optional[Callable[[Any], Any]],
                 error_callback: Optional[Callable[[BaseException], Any]],
                 return_exceptions: bool = False) -> None:
        super().__init__(return_exceptions)
        self._single = single
        # Task ci's answer, with the items it carried (tasks are sized as they are sent).
        self._chunks: Dict[int, Tuple[bool, Any, Optional[TaskStats], int]] = {}
        self._items = items
        self._left = items  # items without an answer
        self._event = threading.Event()
        self._callback = callback
        self._error_callback = error_callback
        self._success: Optional[bool] = None
        self._value: Any = None
        self._stats: Any = None
        if items == 0:
            self._success, self._value, self._stats = True, [], []
            self._event.set()

    def ready(self) -> bool:
        return self._event.is_set()

    def successful(self) -> bool:
        if not self.ready():
            raise ValueError(f"{self!r} not ready")
        return bool(self._success)

    def wait(self, timeout: Optional[float] = None) -> None:
        self._event.wait(timeout)

    def get(self, timeout: Optional[float] = None) -> Any:
        """The result; raises the task's exception (TaskQuarantined, the function's own with
        the worker's traceback as __cause__, ...) or multiprocessing.TimeoutError."""
        self.wait(timeout)
        if not self.ready():
            raise TimeoutError
        if self._success:
            return self._value
        raise self._value

    @property
    def stats(self) -> Any:
        """TaskStats of the call (apply), or a list of one per item (map; None for items of a
        task that never ran); None until ready."""
        return self._stats

    def _set(self, ci: int, ok: bool, value: Any, stats: Optional[TaskStats],
             nitems: int) -> None:
        with self._cond:
            # _success is set once, under this lock: a failure arriving while the first
            # one's callback runs (the feeder's and the results thread's) changes nothing.
            if self._success is not None or ci in self._chunks or nitems > self._left:
                return
            self._chunks[ci] = (ok, value, stats, nitems)
            self._left -= nitems
            if not ok and not self._return_exceptions:
                self._success, self._value = False, value
                self._stats = stats if self._single else None
            elif self._left == 0:
                self._assemble()
            else:
                return
        self._finish()

    def _abort(self, ci: int, exc: BaseException, first: int) -> None:
        """Tasks ci.. were never sent: their items, first.., fail with exc (one task's place:
        they were not divided into tasks yet)."""
        self._set(ci, False, exc, None, self._items - first)

    def _assemble(self) -> None:
        if self._single:
            ok, value, stats, _n = self._chunks[0]
            self._success, self._value, self._stats = True, value[0] if ok else value, stats
            return
        values: List[Any] = []
        stats_list: List[Optional[TaskStats]] = []
        for _ci, (ok, value, stats, nitems) in sorted(self._chunks.items()):
            values.extend(value if ok else [value] * nitems)
            stats_list.extend([stats] * nitems)
        self._success, self._value, self._stats = True, values, stats_list

    def _finish(self) -> None:
        callback = self._callback if self._success else self._error_callback
        self._chunks = {}
        if callback is not None:
            try:
                callback(self._value)
            except Exception:  # noqa: BLE001 - the caller's callback must not stop results
                log.exception("memvisor.Pool: exception in a result callback")
        self._event.set()


class IMapIterator(_Job):
    """The iterator of imap (ordered: results in input order) and imap_unordered (as they
    end). ``next(timeout)`` as multiprocessing's. A failed task raises its exception at its
    place (once for a chunk) and iteration can go on after it; with return_exceptions the
    exception is yielded instead, once per item. With with_stats, items are (result, stats).
    """

    def __init__(self, ordered: bool, with_stats: bool, return_exceptions: bool,
                 on_length: Optional[Callable[[int], None]] = None) -> None:
        super().__init__(return_exceptions)
        self._ordered = ordered
        self._with_stats = with_stats
        self._ready: Deque[_Entry] = collections.deque()
        self._waiting: Dict[int, List[_Entry]] = {}  # ordered: chunks ahead of their turn
        self._next_ci = 0
        self._received = 0
        self._length: Optional[int] = None
        self._on_length = on_length

    def __iter__(self) -> "IMapIterator":
        return self

    def next(self, timeout: Optional[float] = None) -> Any:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._ready:
                if self._length is not None and self._received >= self._length:
                    raise StopIteration
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise TimeoutError
                self._cond.wait(left)
            raises, value, stats = self._ready.popleft()
        if raises:
            raise value
        return (value, stats) if self._with_stats else value

    __next__ = next

    def _entries(self, ok: bool, value: Any, stats: Optional[TaskStats],
                 nitems: int) -> List[_Entry]:
        if ok:
            return [(False, v, stats) for v in value]
        if self._return_exceptions:
            return [(False, value, stats)] * nitems
        return [(True, value, stats)]

    def _set(self, ci: int, ok: bool, value: Any, stats: Optional[TaskStats],
             nitems: int) -> None:
        entries = self._entries(ok, value, stats, nitems)
        with self._cond:
            self._received += 1
            if not self._ordered:
                self._ready.extend(entries)
            else:
                self._waiting[ci] = entries
                while self._next_ci in self._waiting:
                    self._ready.extend(self._waiting.pop(self._next_ci))
                    self._next_ci += 1
            self._cond.notify_all()

    def _set_length(self, chunks: int) -> None:
        with self._cond:
            if self._length is None:
                self._length = chunks
            self._cond.notify_all()
