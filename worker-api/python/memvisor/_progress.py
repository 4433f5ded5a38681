"""Pool(progress=True): one status line on a terminal, redrawn at most 4 times a second."""

from __future__ import annotations

import threading
import time
# typing only for type checkers: importing it costs a Pool ~25 ms of CPU on a
# loaded 2-core machine (annotations are strings here: `from __future__ import
# annotations`), as memvisor_worker does.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Optional, TextIO

_PERIOD = 0.25  # seconds between redraws


def _size(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB"


def _duration(s: float) -> str:
    s = int(s + 0.5)
    return f"{s // 3600}h{s // 60 % 60:02d}m" if s >= 3600 else \
        f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


class Progress:
    """Items done / total (``?`` while an input's length is unknown), rate, ETA, failed and
    quarantined items, recycles, the largest worker memory after a task against the soft
    limit. Drawn only when `stream` is a terminal; every method is thread-safe."""

    def __init__(self, stream: TextIO, enabled: bool, soft_limit: int) -> None:
        try:
            tty = stream.isatty()
        except (AttributeError, ValueError):
            tty = False
        self.enabled = enabled and tty
        self._stream = stream
        self._soft = soft_limit
        self._lock = threading.Lock()
        self._t0 = time.monotonic()
        self._last = 0.0
        self._shown = False
        self.total = 0
        self.unknown = 0  # inputs whose length is not known yet
        self.done = 0
        self.failed = 0
        self.quarantined = 0
        self.recycles = 0
        self.mem = 0

    def add_total(self, n: Optional[int]) -> None:
        with self._lock:
            if n is None:
                self.unknown += 1
            else:
                self.total += n

    def input_ended(self, n: int) -> None:
        """An input of unknown length turned out to have `n` items."""
        with self._lock:
            self.unknown -= 1
            self.total += n

    def task_ended(self, items: int, status: str, mem_after: Optional[int]) -> None:
        with self._lock:
            self.done += items
            if status == "failed":
                self.failed += items
            elif status == "quarantined":
                self.quarantined += items
            if mem_after is not None:
                self.mem = max(self.mem, mem_after)
        self.draw()

    def recycled(self) -> None:
        with self._lock:
            self.recycles += 1

    def line(self) -> str:
        elapsed = max(time.monotonic() - self._t0, 1e-6)
        rate = self.done / elapsed
        total = "?" if self.unknown else str(self.total)
        eta = ""
        if not self.unknown and rate > 0 and self.total > self.done:
            eta = f"  ETA {_duration((self.total - self.done) / rate)}"
        mem = f"  worker mem {_size(self.mem)}" + (f" / soft {_size(self._soft)}"
                                                    if self._soft else "")
        return (f"memvisor {self.done}/{total} items  {rate:,.0f}/s{eta}  failed {self.failed}"
                f"  quarantined {self.quarantined}  recycles {self.recycles}{mem}")

    def draw(self, force: bool = False) -> None:
        if not self.enabled:
            return
        with self._lock:
            now = time.monotonic()
            if not force and now - self._last < _PERIOD:
                return
            self._last = now
            text = self.line()
            self._shown = True
            try:
                self._stream.write(f"\r\x1b[K{text}")
                self._stream.flush()
            except (OSError, ValueError):
                self.enabled = False

    def clear(self) -> None:
        """Takes the line away (before other output, and at the end)."""
        if not self.enabled:
            return
        with self._lock:
            if self._shown:
                try:
                    self._stream.write("\r\x1b[K")
                    self._stream.flush()
                except (OSError, ValueError):
                    self.enabled = False
                self._shown = False

    def finish(self) -> None:
        """The last figures, left on the screen (when any task ended)."""
        if self.done == 0:
            self.clear()
            return
        self.draw(force=True)
        if not self.enabled:
            return
        with self._lock:
            if self._shown:
                try:
                    self._stream.write("\n")
                    self._stream.flush()
                except (OSError, ValueError):
                    pass
                self._shown = False
