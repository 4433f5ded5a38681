"""memvisor_worker: the memvisor `api` worker protocol in pure Python (standard library only).

A worker started by ``memvisor run`` finds memvisor's end of a unix stream socket in the
environment variable ``MEMVISOR_FD``. This module speaks the protocol declared in
``include/memvisor/protocol.h`` over it and behaves like the C worker API
(``worker-api/mvw.c``): the same handshake, STOP and SNAPSHOT handling, and answer batching.

A batch worker::

    import memvisor_worker

    def handle(task):
        task.kind = task.text.split(" ", 1)[0] or None   # optional: names the task's kind
        return task.text.upper()     # str, bytes, None, or a dict or list (sent as JSON)

    if __name__ == "__main__":
        memvisor_worker.main(handle)   # an exception fails the task: its type, message and
                                       # traceback (last frames) are the task's error

or, answering explicitly::

    with memvisor_worker.Worker() as worker:
        for task in worker:            # ends when memvisor says STOP
            if task.data.startswith(b"bad"):
                worker.fail("no good")
            else:
                worker.done(task.data)

Run it with ``memvisor run --tasks tasks.txt -- python3 my_worker.py``. Try the handler
without memvisor, in this process (a debugger works), with ``run_local``::

    for result in memvisor_worker.run_local(handle, ["parse a", "render b"]):
        print(result)    # {"task": 1, "status": "ok", "kind": "parse", "result": "PARSE A"}

Which line leaks? Run the worker with ``MEMVISOR_TRACEMALLOC=1`` in its environment: the
snapshots memvisor takes of a leak suspect then name the allocation sites that grew, and
``memvisor report`` prints the top one (see below).

A service with its own loop marks requests with ``begin()``/``end()`` (no round trip), and
watches ``fileno()`` for readability; ``poll()`` then handles STOP and SNAPSHOT requests and
says whether memvisor asked the service to drain::

    worker = memvisor_worker.Worker()
    sel.register(worker.fileno(), selectors.EVENT_READ)
    ...
    worker.begin("GET /users"); handle_request(); worker.end(0)
    ...
    if worker.poll():      # STOP: finish what is in hand, then exit 0
        ...

Heap snapshots: memvisor may send a SNAPSHOT request at any time; it is answered between
tasks (and while the worker waits for input) with a JSON object described in
docs/run-files.md: object-type growth (objgraph-style), gc counters and, when the environment
variable ``MEMVISOR_TRACEMALLOC=N`` is set, the ``tracemalloc`` allocation sites that grew
most (tracing N frames). Subclasses may override ``Worker.snapshot()``. A snapshot runs a
full gc.collect() and walks gc.get_objects(): about 0.15 s per million live objects here, plus
about 1 s per million traced blocks with tracemalloc on.

Leak attribution (protocol version 2): when memvisor has no heap preload in the worker, GO
asks for the worker's own heap figures, and every answer carries them (glibc's mallinfo2()
through ctypes, and sys.getallocatedblocks()), or in a service every begin() and end(); a TASK of a leak experiment asks for a
gc.collect() before its answer, so that garbage waiting for the collector is not read as
growth. Nothing to do in the handler (docs/leaks.md).

Errors are MemvisorError subclasses: NotUnderMemvisor (no usable $MEMVISOR_FD; main() exits
78, which memvisor does not respawn), ProtocolError (malformed input from memvisor) and
SupervisorGone (memvisor closed the channel; also an EOFError). After the last two the
channel is dead: every later call raises the same error, and the worker should exit.

Not thread-safe: use one Worker from one thread.
"""

from __future__ import annotations

import collections
import errno
import gc
import os
import select
import socket
import struct
import sys
import time

# Imported where they are used (json, traceback, tracemalloc, heapq, base64) or only by type
# checkers (typing): a worker's start-up (a template's, or every recycle's without one) pays
# for what every task needs, not for failures, snapshots and dict results (about 15 ms of CPU
# less here, on top of the interpreter's own 10 ms).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import (Any, Callable, Deque, Dict, Iterable, Iterator, List, NoReturn,
                        Optional, Tuple, Union)

__all__ = [
    "Worker",
    "Task",
    "main",
    "run_local",
    "format_error",
    "MemvisorError",
    "NotUnderMemvisor",
    "ProtocolError",
    "SupervisorGone",
    "PROTOCOL_VERSION",
    "EXIT_FATAL",
]

# ---- The wire protocol: a copy of include/memvisor/protocol.h, which is the one declaration.
# ---- Keep these in step with it.

PROTOCOL_VERSION = 2  # MVW_PROTOCOL_VERSION
PROTOCOL_MIN = 1  # MVW_PROTOCOL_MIN: GO may say any version from here to PROTOCOL_VERSION
HEADER_SIZE = 16  # MVW_HEADER_SIZE: u32 length, u16 type, u16 flags, u64 task
MAX_PAYLOAD = 64 << 20  # MVW_MAX_PAYLOAD
ENV_FD = "MEMVISOR_FD"  # MVW_ENV_FD
EXIT_FATAL = 78  # MVW_EXIT_FATAL: memvisor does not respawn a worker that exits with it

# enum mvw_msg_type
MSG_HELLO = 1  # w->s {u32 version, u32 flags}
MSG_GO = 2  # s->w {u32 version, u32 slot, u32 prefetch, u32 mode}
MSG_TASK = 3  # s->w task id, payload: the task line
MSG_DONE = 4  # w->s task id, payload: the result
MSG_FAIL = 5  # w->s task id, payload: the error
MSG_STOP = 6  # s->w no payload
MSG_BEGIN = 7  # w->s service mode, worker-chosen task id
MSG_END = 8  # w->s service mode, payload: u32 status
MSG_SNAPSHOT = 9  # s->w request (no payload); w->s reply (JSON)
MSG_FORK = 10  # s->w template: {u32 slot, u32 nfds, u32 flags, u32 reserved} + fds
MSG_FORKED = 11  # w->s template: {i32 pid, i32 error, u32 flags, u32 reserved}
MSG_TEMPLATE = 12  # w->s template ready: {u32 pid, u32 features}

F_KIND = 0x0001  # MVW_F_KIND: payload starts with u8 n + n bytes of task kind
F_HEAP = 0x0002  # MVW_F_HEAP (v2): DONE/FAIL carry struct mvw_heap after the kind
F_COLLECT = 0x0004  # MVW_F_COLLECT (v2): TASK: collect garbage before answering
F_HEAP_LATE = 0x0008  # MVW_F_HEAP_LATE: with F_HEAP, struct mvw_heap ends the payload
F_VALID = 0x000F  # MVW_F_VALID

MODE_BATCH = 0  # MVW_MODE_BATCH
MODE_SERVICE = 1  # MVW_MODE_SERVICE
MODE_TEMPLATE = 2  # MVW_MODE_TEMPLATE

HELLO_TEMPLATE = 0x1  # MVW_HELLO_TEMPLATE
HELLO_HEAP_LATE = 0x2  # MVW_HELLO_HEAP_LATE: this worker can send F_HEAP_LATE answers
FORK_CGROUP_DIR = 0x1  # MVW_FORK_CGROUP_DIR
FORK_CGROUP_PROCS = 0x2  # MVW_FORK_CGROUP_PROCS
FORK_MAX_FDS = 64  # MVW_FORK_MAX_FDS
FORKED_IN_CGROUP = 0x1  # MVW_FORKED_IN_CGROUP
TEMPLATE_TID = 0x1  # MVW_TEMPLATE_TID
MODE_MASK = 0x00FF  # MVW_MODE_MASK
GO_HEAP = 0x0100  # MVW_GO_HEAP (v2): answer every task with heap figures
GO_HEAP_LATE = 0x0200  # MVW_GO_HEAP_LATE: F_HEAP_LATE allowed (our HELLO said so)
GO_VALID = 0x03FF  # MVW_GO_VALID

# Host byte order, standard sizes, no padding ("=" in struct): the socket never leaves the host.
_HEADER = struct.Struct("=IHHQ")
_HELLO = struct.Struct("=II")
_GO = struct.Struct("=IIII")
_END = struct.Struct("=I")
_FORK = struct.Struct("=IIII")
_FORKED = struct.Struct("=iiII")
_TEMPLATE = struct.Struct("=II")
_HEAP = struct.Struct("=qq")  # struct mvw_heap: live_bytes, blocks (-1 = unknown)
_HEAP_LATE = _HEAP.pack(-1, -1)  # _queue's heap: at the answer's end, measured when sent
_HEADER_HEAP = struct.Struct("=IHHQqq")  # a header, then struct mvw_heap (an answer, no kind)
# Payload sizes fixed for what memvisor sends (its SNAPSHOT is a request: empty); TASK varies.
_FIXED_SIZE = {MSG_GO: _GO.size, MSG_STOP: 0, MSG_SNAPSHOT: 0, MSG_FORK: _FORK.size}
_FROM_SUPERVISOR = (MSG_GO, MSG_TASK, MSG_STOP, MSG_SNAPSHOT, MSG_FORK)
_NAMES = {MSG_GO: "GO", MSG_TASK: "TASK", MSG_STOP: "STOP", MSG_SNAPSHOT: "SNAPSHOT",
          MSG_FORK: "FORK"}

# ---- Buffering, as in worker-api/mvw.c.

_RECV_SIZE = 64 << 10  # one read takes up to this much
_FLUSH_COUNT = 64  # answers buffered
_FLUSH_BYTES = 64 << 10  # bytes buffered
_FLUSH_AGE_NS = 200_000  # since the last flush
_FLUSH_SLOW_NS = 50_000  # a task this slow is answered at once
_DIRECT_BYTES = 64 << 10  # answers this big bypass the write buffer
# An answer this big goes out but for its last byte, sent when the worker is back for its
# next task (see _queue): glibc's default mmap threshold, the smallest block whose free()
# gives memory back at once (Python's objects above 512 bytes are malloc's).
_SETTLE_BYTES = 128 << 10
_KIND_MAX = 255
_TB_FRAMES = 8  # a failed task's error keeps the traceback's last frames...
_TB_BYTES = 4096  # ...and at most this much of it (the head line, then the end)
_SNAPSHOT_TOP = 10
_MSG_NOSIGNAL = getattr(socket, "MSG_NOSIGNAL", 0)  # a dead peer gives EPIPE, never SIGPIPE
_monotonic_ns = time.monotonic_ns  # per task: no attribute lookup

if TYPE_CHECKING:
    Payload = Union[str, bytes, bytearray, memoryview, None]
    Result = Union[Payload, dict, list, tuple]
    Handler = Callable[["Task"], Result]


class MemvisorError(Exception):
    """Base class of the errors this module raises about the channel to memvisor."""


class NotUnderMemvisor(MemvisorError):
    """The process was not started by memvisor (no usable $MEMVISOR_FD)."""


class ProtocolError(MemvisorError):
    """memvisor sent a malformed, oversized or unexpected message; the worker should exit."""


class SupervisorGone(MemvisorError, EOFError):
    """memvisor closed the channel (EOF, EPIPE): nobody is left to answer; exit."""


def _to_bytes(value: Payload, what: str) -> bytes:
    """A result, error or kind as bytes: str is UTF-8 (surrogateescape: bytes that came in
    undecodable go out unchanged), None is empty."""
    if value is None:
        return b""
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"{what} must be str, bytes or None, not {type(value).__name__}")


def _result_bytes(value: Result) -> bytes:
    """A handler's result as bytes: a dict, list or tuple is sent as JSON (compact, UTF-8);
    str, bytes and None as _to_bytes() says."""
    if isinstance(value, (dict, list, tuple)):
        import json  # noqa: PLC0415 - see the imports

        try:
            text = json.dumps(value, separators=(",", ":"), ensure_ascii=False,
                              allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"a {type(value).__name__} result is sent as JSON: {exc}") from exc
        return text.encode("utf-8", "surrogateescape")
    if value is None or isinstance(value, (str, bytes, bytearray, memoryview)):
        return _to_bytes(value, "result")
    raise TypeError(f"result must be str, bytes, None, or a dict or list (sent as JSON), "
                    f"not {type(value).__name__}")


def format_error(exc: BaseException) -> str:
    """A failed task's error: ``ExcType: message`` on the first line, then the traceback's
    last frames (frames of this module left out) and its final line, at most 4 KiB: the head
    line is always kept, and a long traceback keeps its end, where the error is."""
    import traceback  # noqa: PLC0415 - see the imports

    head = f"{type(exc).__name__}: {exc}".rstrip()
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    body = "".join(traceback.format_exception(type(exc), exc, tb, limit=-_TB_FRAMES))
    text = f"{head}\n{body}".rstrip("\n")
    raw = text.encode("utf-8", "surrogateescape")
    if len(raw) <= _TB_BYTES:
        return text
    first = head.encode("utf-8", "surrogateescape")[:_TB_BYTES // 4]
    mark = b"\n[...]\n"
    tail = raw[len(raw) - (_TB_BYTES - len(first) - len(mark)):]
    return (first + mark + tail).decode("utf-8", "ignore")


def _check_kind(kind: Union[str, bytes, None]) -> Optional[bytes]:
    """A task kind as 1..255 bytes, or None."""
    if kind is None:
        return None
    raw = _to_bytes(kind, "kind")
    if not 1 <= len(raw) <= _KIND_MAX:
        raise ValueError(f"a task kind is 1..{_KIND_MAX} bytes, not {len(raw)}")
    return raw


def _clean(text: str) -> str:
    """Text that JSON parsers accept: lone surrogates (undecodable bytes) become escapes."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


class Task:
    """One batch task: ``id`` (memvisor's id, the line number), ``data`` (the task line's
    bytes), ``text`` (the same, decoded as UTF-8 with surrogateescape) and ``kind``
    (None, or a 1..255-byte name sent with the answer for leak attribution)."""

    __slots__ = ("id", "data", "_kind", "_collect")

    def __init__(self, task_id: int, data: bytes, collect: int = 0) -> None:
        self.id = task_id
        self.data = data
        self._kind: Optional[bytes] = None
        self._collect = collect  # memvisor asked: gc.collect() before the answer (F_COLLECT)

    @property
    def text(self) -> str:
        return self.data.decode("utf-8", "surrogateescape")

    @property
    def kind(self) -> Optional[str]:
        if self._kind is None:
            return None
        return self._kind.decode("utf-8", "surrogateescape")

    @kind.setter
    def kind(self, value: Union[str, bytes, None]) -> None:
        # Checked here, so that a bad kind fails where it is set, not in done().
        self._kind = _check_kind(value)

    def __repr__(self) -> str:
        return f"Task(id={self.id}, data={self.data[:64]!r}, kind={self.kind!r})"


class Worker:
    """The worker's end of the memvisor channel.

    ``Worker()`` takes the socket named by $MEMVISOR_FD (made non-inheritable so that the
    worker's own children do not hold memvisor's channel open), sends HELLO and waits for GO.
    Raises NotUnderMemvisor when the process was not started by memvisor, ProtocolError when
    memvisor speaks another protocol version, SupervisorGone when memvisor went away. A STOP
    before GO is a clean stop: ``stop_requested`` is true and iteration yields nothing.

    `fd` names the channel instead of $MEMVISOR_FD (for a wrapper that moved it).
    Attributes from GO: ``slot`` (1-based), ``prefetch``, ``mode`` (MODE_BATCH, MODE_SERVICE).

    When memvisor runs the pool with a warm template (``[worker] template = yes``,
    docs/templates.md), the first process to make a Worker serves as the template: the code
    before it ran once, and this constructor returns in each worker forked from it
    (``forked`` is then true), connected on its own channel. A template that memvisor
    retires returns from here with ``stop_requested`` true, as after STOP.
    """

    def __init__(self, fd: Optional[int] = None) -> None:
        self._sock: Optional[socket.socket] = None
        self.forked = False  # forked from a warm template (docs/templates.md)
        self._prev_types: Dict[str, int] = {}  # for the next snapshot's growth figures
        self._prev_sites: Dict[Tuple[str, int], Tuple[int, int]] = {}
        self._init_channel_state()
        self._sock = _open_channel(fd)
        _start_tracemalloc()
        try:
            self._connect()
            if self.mode != MODE_TEMPLATE:
                # The census the first snapshot's type growth is measured against: what this
                # process holds once started, so that a snapshot shows what grew since. Not
                # in a template (memvisor_template.serve: its start-up's objects are frozen,
                # which a census does not see): gc.get_objects() takes a reference to every
                # object, and a template forked from memvisor.Pool's caller then wrote (and
                # copied) every page of the caller's heap that holds one.
                self._type_growth()
            # Asked to be the warm template: everything before Worker() was the workers'
            # start-up; each child comes back here as a new worker (memvisor_template).
            # Its channel lands on the fd $MEMVISOR_FD names: when that is this socket's, the
            # socket object is kept for it (the same kind: a stream socket from memvisor),
            # rather than made again in every child (socket() and its checks were a tenth of
            # a forked worker's pages written before its HELLO). Else (`fd` named another)
            # the child closes its copy of the template's channel and opens its own.
            env = os.environ.get(ENV_FD) if self.mode == MODE_TEMPLATE else None
            same_fd = env is not None and env.isascii() and env.isdigit() and len(env) <= 10 \
                and int(env) == self._sock.fileno()
            while self.mode == MODE_TEMPLATE:
                import memvisor_template  # noqa: PLC0415 - only templates need it
                if not memvisor_template.serve(self):
                    self.mode = MODE_BATCH  # retired: iteration says STOP, as after STOP
                    break
                self.forked = True
                # The template's read buffer is kept: a new 64 KiB one, zeroed, was 16 pages
                # written in every child before its HELLO; a read writes only what it reads.
                self._init_channel_state(self._rbuf)
                if same_fd:  # that fd number is this worker's channel now
                    os.set_inheritable(self._sock.fileno(), False)
                else:
                    self._sock.close()  # the template's: not this worker's to hold
                    self._sock = None
                    self._sock = _open_channel(None)
                    same_fd = True
                self._connect()
        except BaseException:
            if self._sock is not None:
                self._sock.close()
            self._sock = None
            raise

    def _init_channel_state(self, rbuf: Optional[memoryview] = None) -> None:
        self._error: Optional[MemvisorError] = None  # sticky: the channel is unusable
        self._stopped = False
        self.slot = 0
        self.prefetch = 1
        self.mode = MODE_BATCH
        self._in = bytearray()  # input not decoded yet
        # What a read lands in, made once: sock.recv(n) allocates its n-byte result before it
        # waits, so a worker waiting for its next task held a fresh 64 KiB block that the heap
        # preload counted as live when memvisor opened that task's window, and the task then
        # "freed" it (-40 KiB for a kind that keeps 24 KiB, in an experiment's worker).
        self._rbuf = memoryview(bytearray(_RECV_SIZE)) if rbuf is None else rbuf
        # decoded, not started: (id, payload, flags)
        self._tasks: Deque[Tuple[int, bytes, int]] = collections.deque()
        self._report_heap = False  # GO asked for heap figures with every answer (v2)
        self._heap_late = False  # GO allowed them at a big answer's end (F_HEAP_LATE)
        self.version = PROTOCOL_VERSION  # the conversation's, from GO
        self._bad: Optional[ProtocolError] = None  # malformed input behind buffered tasks
        self._out = bytearray()  # answers not sent yet
        self._out_count = 0
        # _out holds a big answer's end, for next_task (_queue): its last byte (1) or its
        # late heap figures (2, at _settle_at)
        self._settle = 0
        self._settle_at = 0
        self._task_big = False  # the task in hand, or the one just answered, came in big
        self._last_flush_ns = time.monotonic_ns()
        self._task: Optional[Task] = None  # handed out, not answered yet
        self._task_start_ns = 0
        self._svc_open = False
        self._svc_id = 0

    def _connect(self) -> None:
        """HELLO (saying whether this process can serve as a template), then GO."""
        # A worker just forked from the template has one thread (a clone copies only the
        # calling one) and memvisor_template loaded: it can, without reading /proc (an open,
        # a read and a parse in every forked worker, before its HELLO).
        flags = HELLO_HEAP_LATE | (HELLO_TEMPLATE if self.forked or _can_template() else 0)
        self._queue(MSG_HELLO, 0, None, _HELLO.pack(PROTOCOL_VERSION, flags))
        self._flush()
        self._handshake(flags)

    # ---- public API --------------------------------------------------------------------

    @property
    def stop_requested(self) -> bool:
        """Whether memvisor asked this worker to stop (drain)."""
        return self._stopped

    @property
    def is_service(self) -> bool:
        """Whether memvisor runs this worker in service mode (tasks made with begin())."""
        return self.mode == MODE_SERVICE

    def fileno(self) -> int:
        """The socket to watch for readability in a service's own event loop."""
        return self._channel().fileno()

    def __iter__(self) -> Iterator[Task]:
        """Batch mode: every task until memvisor says STOP. Answer each one with done() or
        fail() before asking for the next."""
        while True:
            task = self.next_task()
            if task is None:
                return
            yield task
            del task  # not held while the next is awaited (a big task's bytes: next_task)

    def next_task(self) -> Optional[Task]:
        """Batch mode: waits for the next task; None when memvisor asked the worker to stop
        (tasks received but not started are abandoned: memvisor requeues them). Buffered
        answers are always sent before this blocks."""
        if self._error is not None or self._sock is None:
            self._check_usable()  # raises
        if self._task is not None:
            raise RuntimeError(f"task {self._task.id} was not answered with done() or fail()")
        if self.mode != MODE_BATCH:
            raise RuntimeError("next_task() is for batch mode; this worker runs as a service")
        if self._settle or self._task_big:
            # A big answer's last byte: its result is freed by now (_queue), and glibc's
            # heap gives back what it would keep of it (_settle_heap). A big task's answer:
            # the input buffer that carried it goes first (its bytes went with the task,
            # which run() and serve() no longer hold).
            if self._task_big:
                self._task_big = False
                if not self._in:
                    self._in = bytearray()
            _settle_heap()
            self._flush()
        tasks = self._tasks
        while True:
            # _scan() leaves no whole message in the input: a header's worth is needed.
            if len(self._in) >= HEADER_SIZE:
                self._scan()
            if self._stopped:
                self._flush()
                return None
            if tasks:
                task_id, data, flags = tasks.popleft()
                task = self._task = Task(task_id, data, flags & F_COLLECT)
                self._task_big = len(data) >= _SETTLE_BYTES
                self._task_start_ns = _monotonic_ns()
                return task
            if self._bad is not None:
                self._fail_bad_input()
            # Input already there keeps answers batched; else send them, then block.
            if not (self._out and self._read(block=False)):
                self._flush()
                self._read(block=True)

    def done(self, result: Result = None) -> None:
        """Answers the task in hand with success and `result`: str (sent as UTF-8), bytes,
        None (empty), or a dict, list or tuple (sent as JSON). A result of another type
        raises TypeError and leaves the task in hand."""
        # The common results without a call: str and bytes as _result_bytes() makes them.
        if type(result) is str:  # noqa: E721 - exactly str: a subclass takes the long way
            body = result.encode("utf-8", "surrogateescape")
        elif type(result) is bytes:  # noqa: E721
            body = result
        else:
            body = _result_bytes(result)
        self._answer(MSG_DONE, body, "result")

    def fail(self, error: Payload = None) -> None:
        """Answers the task in hand with failure and `error` (str, bytes or None)."""
        self._answer(MSG_FAIL, error, "error")

    def run(self, handler: Handler) -> None:
        """Batch mode: calls handler(task) for every task. Its return value is the result
        (see done()); an exception fails the task with format_error(): "ExcType: message",
        then the traceback's last frames. Returns when memvisor says STOP: the caller then
        exits 0."""
        next_task, done = self.next_task, self.done
        while True:
            task = next_task()
            if task is None:
                return
            try:
                # done() checks the result (type, size) before it answers: a bad one fails
                # the task like an exception in the handler would.
                done(handler(task))
            except MemvisorError:
                raise
            except Exception as exc:  # noqa: BLE001 - any handler error fails its task only
                self.fail(format_error(exc))
            task = None  # its bytes are not held while the next task is awaited

    def begin(self, kind: Union[str, bytes, None] = None) -> None:
        """Service mode: a request begins (kind: None or 1..255 bytes). Sent at once."""
        self._check_usable()
        if self.mode != MODE_SERVICE:
            raise RuntimeError("begin() is for service mode; this worker runs a batch")
        if self._svc_open:
            raise RuntimeError(f"request {self._svc_id} has not ended")
        raw = _check_kind(kind)
        # The heap as the request begins (GO asked): its "before".
        self._queue(MSG_BEGIN, self._svc_id + 1, raw, b"",
                    _heap_figures() if self._report_heap else None)
        self._svc_id += 1
        self._svc_open = True
        self._flush()

    def end(self, status: int = 0) -> None:
        """Service mode: the open request ends with `status` (0 = ok). Sent at once."""
        self._check_usable()
        if self.mode != MODE_SERVICE:
            raise RuntimeError("end() is for service mode; this worker runs a batch")
        if not self._svc_open:
            raise RuntimeError("end() without a request begun")
        # ...and as it ends: the payload is the figures, then the status.
        self._queue(MSG_END, self._svc_id, None, _END.pack(status & 0xFFFFFFFF),
                    _heap_figures() if self._report_heap else None)
        self._svc_open = False
        self._flush()

    def poll(self) -> bool:
        """Non-blocking: handles whatever memvisor sent (STOP, SNAPSHOT) and sends buffered
        answers. Returns stop_requested."""
        self._check_usable()
        while True:
            self._scan()
            if self._stopped:
                break
            if self._bad is not None:  # report it now, not when a task is wanted
                self._fail_bad_input()
            if not self._read(block=False):
                break
        self._flush()
        return self._stopped

    def flush(self) -> None:
        """Sends buffered answers now (next_task() and close() do it on their own)."""
        self._check_usable()
        self._flush()

    def close(self) -> None:
        """Sends what is buffered (best effort) and closes the channel."""
        if self._sock is None:
            return
        try:
            if self._error is None:
                self._flush()
        except MemvisorError:
            pass
        finally:
            sock, self._sock = self._sock, None
            try:
                sock.close()
            except OSError:
                # Its fd was closed or replaced under it (the worker's own code): the error
                # that said so came first, and an OSError here would take its place.
                pass

    def __enter__(self) -> "Worker":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def snapshot(self) -> dict:
        """The heap view sent for a SNAPSHOT request (docs/run-files.md, "Python workers").
        Each call compares with the previous one; override to send something else."""
        # Read before collecting: gc.collect() resets them.
        counts = list(gc.get_count())
        # As objgraph does: count live objects, not garbage awaiting collection.
        collected = gc.collect()
        return {
            "runtime": "python",
            "version": sys.version.split()[0],
            "pid": os.getpid(),
            "tracemalloc": self._tracemalloc_growth(),
            "types": self._type_growth(),
            "gc": {"garbage": len(gc.garbage), "counts": counts, "collected": collected},
        }

    # ---- snapshot parts ----------------------------------------------------------------

    def _tracemalloc_growth(self) -> Optional[dict]:
        """The allocation sites (innermost frame) whose traced memory grew most since the
        previous call (the first call: since tracing started)."""
        import heapq  # noqa: PLC0415 - see the imports
        import tracemalloc  # noqa: PLC0415

        if not tracemalloc.is_tracing():
            return None
        traced, peak = tracemalloc.get_traced_memory()
        sites = _traced_sites()
        prev = self._prev_sites
        self._prev_sites = sites
        zero = (0, 0)
        rows = [(size - prev.get(site, zero)[0], size, count - prev.get(site, zero)[1], count,
                 site) for site, (size, count) in sites.items()]
        # Sites that are gone shrank to nothing, as in Snapshot.compare_to().
        rows += [(-size, 0, -count, 0, site) for site, (size, count) in prev.items()
                 if site not in sites]
        top = heapq.nlargest(_SNAPSHOT_TOP, rows, key=lambda r: (r[0], r[1]))
        return {
            "frames": tracemalloc.get_traceback_limit(),
            "traced": traced,
            "peak": peak,
            "top": [{"where": _clean(f"{site[0]}:{site[1]}"), "size": size, "count": count,
                     "size_diff": size_diff, "count_diff": count_diff}
                    for size_diff, size, count_diff, count, site in top],
        }

    def _type_growth(self) -> list:
        """objgraph's show_growth: live objects the collector tracks, counted by type name;
        the types whose count rose most since the previous call."""
        # Lists of None rather than a Counter: incrementing counts past 256 allocates an int
        # per object, which tracemalloc (when on) traces: ten times slower.
        import heapq  # noqa: PLC0415 - see the imports

        by_type: Dict[type, list] = {}
        for obj in gc.get_objects():
            cls = type(obj)
            seen = by_type.get(cls)
            if seen is None:
                by_type[cls] = seen = []
            seen.append(None)
        names: Dict[str, int] = {}
        for cls, seen in by_type.items():
            name = getattr(cls, "__name__", "?")
            names[name] = names.get(name, 0) + len(seen)
        prev = self._prev_types
        self._prev_types = names
        grown = [(n - prev.get(name, 0), n, name) for name, n in names.items()
                 if n > prev.get(name, 0)]
        return [{"type": _clean(name), "count": n, "diff": diff}
                for diff, n, name in heapq.nlargest(_SNAPSHOT_TOP, grown)]

    def _answer_snapshot(self) -> None:
        """Answers a SNAPSHOT request at once (memvisor is waiting). Never raises for the
        snapshot's own sake: any failure is sent as {"runtime": "python", "error": ...}."""
        import json  # noqa: PLC0415 - see the imports

        try:
            body = json.dumps(self.snapshot(), separators=(",", ":"), ensure_ascii=False,
                              allow_nan=False).encode("utf-8")
            if len(body) > MAX_PAYLOAD:
                raise ValueError(f"the snapshot is {len(body)} bytes, over {MAX_PAYLOAD}")
        except Exception as exc:  # noqa: BLE001 - a snapshot must never kill the worker
            err = {"runtime": "python", "error": _clean(f"{type(exc).__name__}: {exc}")}
            body = json.dumps(err, separators=(",", ":")).encode("utf-8")
        self._queue(MSG_SNAPSHOT, 0, None, body)
        self._flush()

    # ---- input -------------------------------------------------------------------------

    def _handshake(self, hello_flags: int) -> None:
        """Waits for GO (answering SNAPSHOT requests meanwhile); STOP first is a clean stop."""
        while True:
            try:
                msg = self._decode()
            except ProtocolError as exc:
                self._fail(exc)
            if msg is None:
                self._read(block=True)
                continue
            mtype, _flags, _task, payload = msg
            if mtype == MSG_GO:
                version, self.slot, self.prefetch, mode = _GO.unpack(payload)
                if not PROTOCOL_MIN <= version <= PROTOCOL_VERSION:
                    self._fail(ProtocolError(
                        f"memvisor speaks protocol version {version}, this module "
                        f"{PROTOCOL_MIN} to {PROTOCOL_VERSION}"))
                base = mode & MODE_MASK
                if ((base not in (MODE_BATCH, MODE_SERVICE)
                     and not (base == MODE_TEMPLATE and hello_flags & HELLO_TEMPLATE))
                        or mode & ~GO_VALID or (version < 2 and mode & ~MODE_MASK)):
                    self._fail(ProtocolError(f"GO with unknown mode {mode:#x}"))
                self.version = version
                self.mode = base
                # Batch: with each answer; a service: with each begin() and end().
                self._report_heap = bool(mode & GO_HEAP) and self.mode in (MODE_BATCH,
                                                                            MODE_SERVICE)
                self._heap_late = (self._report_heap and self.mode == MODE_BATCH
                                   and bool(mode & GO_HEAP_LATE))
                # What came with GO is handled now: a service polls the fd, which will not
                # wake it for bytes already buffered here.
                self._scan()
                return
            if mtype == MSG_STOP:
                self._stop()
                return
            if mtype == MSG_SNAPSHOT:
                self._answer_snapshot()
                continue
            self._fail(ProtocolError(f"{_NAMES[mtype]} before GO"))

    def _decode(self) -> Optional[Tuple[int, int, int, bytes]]:
        """Takes one whole message off the input; None when more bytes are needed. The
        header is checked (type, flags, size limits) before waiting for or copying the
        payload; a bad one raises ProtocolError."""
        buf = self._in
        if len(buf) < HEADER_SIZE:
            return None
        length, mtype, flags, task = _HEADER.unpack_from(buf)
        if mtype not in _FROM_SUPERVISOR:
            raise ProtocolError(f"message type {mtype} is not one memvisor sends")
        # Unknown bits are an error, MVW_F_KIND and MVW_F_HEAP belong to what workers send,
        # and MVW_F_COLLECT to TASK: any other flag from memvisor is wrong.
        if flags & ~(F_COLLECT if mtype == MSG_TASK else 0):
            raise ProtocolError(f"{_NAMES[mtype]} with flags {flags:#x}")
        if length > MAX_PAYLOAD:
            raise ProtocolError(f"{_NAMES[mtype]} of {length} bytes (limit {MAX_PAYLOAD})")
        fixed = _FIXED_SIZE.get(mtype)
        if fixed is not None and length != fixed:
            raise ProtocolError(f"{_NAMES[mtype]} of {length} bytes, not {fixed}")
        end = HEADER_SIZE + length
        if len(buf) < end:
            return None
        payload = bytes(buf[HEADER_SIZE:end])
        del buf[:end]
        return mtype, flags, task, payload

    def _scan(self) -> None:
        """Takes every whole message off the input: TASKs are queued, SNAPSHOT requests are
        answered, STOP drops everything not started. A malformed message stops the scan and
        is reported once the tasks before it are done (as mvw.c does)."""
        while not self._stopped and self._bad is None:
            if self.mode == MODE_BATCH:
                self._scan_tasks()
            try:
                msg = self._decode()
            except ProtocolError as exc:
                self._bad = exc
                return
            if msg is None:
                return
            mtype, flags, task, payload = msg
            if mtype == MSG_TASK:
                if self.mode == MODE_SERVICE:
                    self._fail(ProtocolError("TASK sent to a service-mode worker"))
                self._tasks.append((task, payload, flags))
            elif mtype == MSG_STOP:
                self._stop()
            elif mtype == MSG_SNAPSHOT:
                self._answer_snapshot()
            else:
                self._fail(ProtocolError("a second GO"))

    def _scan_tasks(self) -> None:
        """_scan()'s fast path: the well-formed TASKs at the head of the input (a batch of
        prefetched tasks comes in one read), queued in one pass with one cut of the buffer.
        It stops at the first other message, or one _decode() would reject, for _decode()."""
        buf = self._in
        size = len(buf)
        pos = 0
        append = self._tasks.append
        unpack = _HEADER.unpack_from
        view = memoryview(buf)
        try:
            while size - pos >= HEADER_SIZE:
                length, mtype, flags, task = unpack(buf, pos)
                if mtype != MSG_TASK or flags & ~F_COLLECT or length > MAX_PAYLOAD:
                    break
                start = pos + HEADER_SIZE
                end = start + length
                if end > size:
                    break
                append((task, bytes(view[start:end]), flags))
                pos = end
        finally:
            view.release()  # the buffer cannot be resized while a view of it exists
        if pos:
            del buf[:pos]

    def _stop(self) -> None:
        """STOP: tasks received but not started are abandoned (memvisor requeues them)."""
        self._stopped = True
        self._tasks.clear()
        self._in.clear()

    def _read(self, block: bool) -> bool:
        """Reads what is there (block=False: False when nothing is) or waits for at least one
        byte. EOF raises SupervisorGone."""
        sock = self._channel()
        while True:
            try:
                n = sock.recv_into(self._rbuf, _RECV_SIZE, 0 if block else socket.MSG_DONTWAIT)
            except BlockingIOError:
                # The fd may be O_NONBLOCK (that flag belongs to the open file description,
                # which is not ours to change): wait for it like a blocking read would.
                if not block:
                    return False
                self._wait(select.POLLIN)
                continue
            except OSError as exc:
                self._fail_io(exc)
            if not n:
                self._fail(SupervisorGone("memvisor closed the channel"))
            self._in += self._rbuf[:n]
            return True

    # ---- output ------------------------------------------------------------------------

    def _answer(self, mtype: int, value: Payload, what: str) -> None:
        """DONE or FAIL for the task in hand (with its kind), flushed per the policy."""
        if self._error is not None or self._sock is None:
            self._check_usable()  # raises
        task = self._task
        if task is None:
            raise RuntimeError("no task in hand: done()/fail() answer the task next_task() "
                               "returned, once")
        body = value if type(value) is bytes else _to_bytes(value, what)  # noqa: E721
        if task._collect:
            gc.collect()  # memvisor reads the heap at this answer: no garbage in it
        kind = task._kind
        big = self._task_big
        if kind is None and len(body) < _DIRECT_BYTES and not (big and self._heap_late):
            # The common answer, buffered in two appends: header (with the heap figures
            # when memvisor asked for them: struct mvw_heap comes first in the payload),
            # then the body.
            if self._report_heap:
                live, blocks = _heap_figures_raw()
                self._out += _HEADER_HEAP.pack(_HEAP.size + len(body), mtype, F_HEAP, task.id,
                                               live, blocks)
            else:
                self._out += _HEADER.pack(len(body), mtype, 0, task.id)
            self._out += body
        elif self._heap_late and (len(body) >= _SETTLE_BYTES or big):
            # Its heap figures go at its end, measured once its result is freed (_queue).
            self._queue(mtype, task.id, kind, body, _HEAP_LATE)
        else:
            heap = _heap_figures() if self._report_heap else None
            self._queue(mtype, task.id, kind, body, heap)  # a ValueError leaves it in hand
        self._task = None
        self._out_count += 1
        if self._settle or big:
            return  # a big answer's last byte, a big task's answer, wait for next_task()
        # Flushed when many or large answers are buffered, the last flush was 200 us ago, or
        # the task just answered was slow (then its answer is worth a syscall on its own).
        if self._out_count >= _FLUSH_COUNT or len(self._out) >= _FLUSH_BYTES:
            self._flush()
            return
        now = _monotonic_ns()
        if (now - self._last_flush_ns >= _FLUSH_AGE_NS
                or now - self._task_start_ns >= _FLUSH_SLOW_NS):
            self._flush()

    def _queue(self, mtype: int, task: int, kind: Optional[bytes], body: bytes,
               heap: Optional[bytes] = None) -> None:
        """Buffers one message: header, optional kind prefix, optional heap figures (packed
        struct mvw_heap), body. Large bodies go out at once, after what is buffered, without
        a copy.

        An answer (DONE, FAIL) of _SETTLE_BYTES or more goes out but for its last byte, kept
        in _out (_settle) and sent when the worker is back for its next task (next_task), or
        by any flush before. memvisor reads the worker's memory (mem_after, the heap preload's
        page) once an answer has arrived whole: by then the result and its bytes are freed,
        and the reading is what the task kept, not the answer's carrier (docs/run-files.md,
        "Per-task figures"). The bytes on the wire are the same as ever.

        heap is _HEAP_LATE (a big answer, GO said GO_HEAP_LATE): the heap figures go at the
        payload's end (F_HEAP | F_HEAP_LATE), and what waits for next_task is them, measured
        when they are sent, after the result is freed."""
        late = heap is _HEAP_LATE
        prefix = bytes((len(kind),)) + kind if kind else b""
        if heap is not None and not late:
            prefix += heap
        length = len(prefix) + len(body) + (_HEAP.size if late else 0)
        if length > MAX_PAYLOAD:
            raise ValueError(f"a message payload is at most {MAX_PAYLOAD} bytes, not {length}")
        header = _HEADER.pack(length, mtype, (F_KIND if kind else 0) | (F_HEAP if heap else 0)
                              | (F_HEAP_LATE if late else 0), task)
        if len(body) >= _DIRECT_BYTES:
            self._flush()
            self._send(header + prefix)
            if late:
                self._send(body)
                self._settle_at = len(self._out)
                self._out += _HEAP_LATE  # filled in by _flush
                self._settle = 2
            elif ((len(body) >= _SETTLE_BYTES or self._task_big)
                  and mtype in (MSG_DONE, MSG_FAIL)):
                self._send(memoryview(body)[:-1])
                self._out += body[-1:]
                self._settle = 1
            else:
                self._send(body)
            self._last_flush_ns = time.monotonic_ns()
            return
        self._out += header
        self._out += prefix
        self._out += body
        if late:  # a big task's small answer: its figures are measured at the flush
            self._settle_at = len(self._out)
            self._out += _HEAP_LATE
            self._settle = 2

    def _flush(self) -> None:
        """Sends the write buffer."""
        self._out_count = 0  # also answers that went out directly
        if self._settle == 2:  # a big answer's late heap figures, measured now (_queue)
            self._out[self._settle_at:self._settle_at + _HEAP.size] = _heap_figures()
        self._settle = 0
        if not self._out:
            return
        data = bytes(self._out)
        self._out.clear()
        self._send(data)
        self._last_flush_ns = time.monotonic_ns()

    def _send(self, data: bytes) -> None:
        """Sends every byte; partial sends loop. A non-blocking fd is waited on."""
        sock = self._channel()
        view = memoryview(data)
        while view:
            try:
                n = sock.send(view, _MSG_NOSIGNAL)
            except BlockingIOError:
                self._wait(select.POLLOUT)
                continue
            except OSError as exc:
                self._fail_io(exc)
            view = view[n:]

    def _wait(self, events: int) -> None:
        poller = select.poll()
        poller.register(self._channel().fileno(), events)
        poller.poll()  # PEP 475: EINTR is retried

    # ---- errors ------------------------------------------------------------------------

    def _channel(self) -> socket.socket:
        if self._sock is None:
            raise ValueError("the memvisor channel is closed")
        return self._sock

    def _check_usable(self) -> None:
        if self._error is not None:
            raise self._error
        self._channel()

    def _fail(self, exc: MemvisorError) -> NoReturn:
        """Records a fatal channel error once (later calls raise it again) and raises it."""
        if self._error is None:
            self._error = exc
        raise self._error

    def _fail_bad_input(self) -> NoReturn:
        """Raises the malformed input met by _scan(), once the tasks before it are done.
        The answers to those still go out (best effort): memvisor need not requeue them."""
        assert self._bad is not None
        try:
            self._flush()
        except MemvisorError:
            pass
        self._fail(self._bad)

    def _fail_io(self, exc: OSError) -> NoReturn:
        if isinstance(exc, (BrokenPipeError, ConnectionResetError)):
            err: MemvisorError = SupervisorGone(f"memvisor closed the channel ({exc.strerror})")
        else:
            err = MemvisorError(f"I/O on the memvisor channel failed: {exc}")
        err.__cause__ = exc
        self._fail(err)


def _noise(filename: str) -> bool:
    """Allocation sites that are no worker's leak: the import system, tracemalloc itself,
    and this module, whose growth figures keep the previous snapshot's state (as the
    snapshot kept for Snapshot.compare_to() is tracemalloc's)."""
    import tracemalloc  # noqa: PLC0415 - see the imports

    return (filename in (tracemalloc.__file__, __file__) or filename == "<unknown>"
            or filename.startswith("<frozen importlib._bootstrap"))


def _traced_sites() -> Dict[Tuple[str, int], Tuple[int, int]]:
    """Live traced memory by innermost frame: {(filename, lineno): (size, count)}.

    This is Snapshot.statistics("lineno") after filter_traces(), made fast enough for
    memvisor's [leak] snapshot_timeout (2 s by default): those build objects and run fnmatch
    per trace, and every allocation made per trace is traced in turn; on a million traces
    they took 40 s here, this takes 1 s. Each trace costs a dict lookup and a list append
    (no int is allocated: sizes are summed in C), and sites are filtered once each. The raw
    traces come from the function take_snapshot() uses (CPython's tracemalloc._get_traces);
    their tracebacks are tuples of (filename, lineno), innermost first.
    """
    import tracemalloc  # noqa: PLC0415 - see the imports

    get_traces = getattr(tracemalloc, "_get_traces", None)
    if get_traces is not None:
        traces = get_traces()  # [(domain, size, frames, total_nframe)]
    else:  # not CPython's layout: the public, slower way to the same tuples
        traces = [(0, t.size, ((t.traceback[-1].filename, t.traceback[-1].lineno),), 1)
                  for t in tracemalloc.take_snapshot().traces]
    groups: Dict[Tuple[str, int], List[int]] = {}
    for trace in traces:
        frames = trace[2]
        site = frames[0] if frames else ("<unknown>", 0)
        sizes = groups.get(site)
        if sizes is None:
            groups[site] = sizes = []
        sizes.append(trace[1])
    del traces
    return {site: (sum(sizes), len(sizes)) for site, sizes in groups.items()
            if not _noise(site[0])}


_MALLINFO2: Any = None  # glibc's mallinfo2 through ctypes; False when there is none
_MALLOC_TRIM: Any = None  # glibc's malloc_trim through ctypes; False when there is none


def _settle_heap() -> None:
    """Before a big answer's last byte: glibc's malloc_trim(0), the free memory at the top of
    its heap and its free pages given back. free() unmaps a block of the mmap threshold or
    more at once, but that threshold is dynamic: the first such block freed raises it to the
    block's size (up to 32 MiB), so the next answer of that size comes from the heap, and its
    bytes, freed, would stay there and read as kept by the task after it. Only after an
    answer of _SETTLE_BYTES or more (ctypes is imported then, the first time)."""
    global _MALLOC_TRIM
    if _MALLOC_TRIM is None:
        import ctypes

        try:
            _MALLOC_TRIM = ctypes.CDLL(None).malloc_trim
            _MALLOC_TRIM.argtypes = [ctypes.c_size_t]
            _MALLOC_TRIM.restype = ctypes.c_int
        except (OSError, AttributeError):
            _MALLOC_TRIM = False
    if _MALLOC_TRIM:
        _MALLOC_TRIM(0)


def _mallinfo2() -> Any:
    """glibc's mallinfo2() as a ctypes function, or False (another libc, an old glibc).
    ctypes is imported here, the first time memvisor asks for heap figures: a worker that is
    never asked does not pay for the import."""
    import ctypes

    class Mallinfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
            "fordblks", "keepcost")]

    try:
        fn = ctypes.CDLL(None).mallinfo2
    except (OSError, AttributeError):
        return False
    fn.restype = Mallinfo2
    fn.argtypes = []
    return fn


def _heap_figures_raw() -> Tuple[int, int]:
    """(live bytes, blocks) of struct mvw_heap for an answer (memvisor asked with
    MVW_GO_HEAP: there is no heap preload): glibc's bytes in use (mallinfo2: arenas and
    mmap'd chunks, which hold every object under PYTHONMALLOC=malloc and the big ones under
    pymalloc) and pymalloc's live blocks (sys.getallocatedblocks(): the small objects, which
    malloc does not see). About 1.2 us per answer here: 0.7 us for the blocks (CPython 3.9+
    walks every pool of every arena for them), 0.4 us for mallinfo2() on a heap of a few
    thousand free chunks. mallinfo2() walks every free chunk in every bin: on a fragmented
    heap it costs far more (docs/leaks.md)."""
    mallinfo2 = _MALLINFO2 if _MALLINFO2 is not None else _heap_source()
    if mallinfo2:
        mi = mallinfo2()
        return mi.uordblks + mi.hblkhd, sys.getallocatedblocks()
    return -1, sys.getallocatedblocks()


def _heap_source() -> Any:
    """glibc's mallinfo2 as a ctypes function (found once: a template finds it before it
    forks), or False."""
    global _MALLINFO2
    if _MALLINFO2 is None:
        _MALLINFO2 = _mallinfo2()
    return _MALLINFO2


def _heap_figures() -> bytes:
    """struct mvw_heap for an answer, packed (see _heap_figures_raw)."""
    return _HEAP.pack(*_heap_figures_raw())


def _open_channel(fd: Optional[int]) -> socket.socket:
    """The stream socket named by $MEMVISOR_FD (or `fd`), made non-inheritable."""
    hint = ("run it under memvisor, e.g. `memvisor run --tasks FILE -- python3 SCRIPT`, or try "
            "the handler without memvisor with memvisor_worker.run_local(handler, lines)")
    if fd is None:
        env = os.environ.get(ENV_FD)
        if env is None:
            raise NotUnderMemvisor(f"not started by memvisor ({ENV_FD} is not set): {hint}")
        # Strictly decimal digits, like mvw.c: no sign, no blanks.
        if not env.isascii() or not env.isdigit() or len(env) > 10 or int(env) > 2**31 - 1:
            raise NotUnderMemvisor(f"{ENV_FD}={env!r} is not a file descriptor number: {hint}")
        fd = int(env)
    try:
        sock = socket.socket(fileno=fd)
    except OSError as exc:
        what = "is not a socket" if exc.errno == errno.ENOTSOCK else \
            f"does not name an open socket ({exc.strerror})"
        raise NotUnderMemvisor(f"{ENV_FD}={fd} {what}: {hint}") from exc
    if sock.type != socket.SOCK_STREAM:
        sock.detach()  # not ours: leave the fd alone
        raise NotUnderMemvisor(f"{ENV_FD}={fd} is not a stream socket: {hint}")
    # The worker's own children must not hold memvisor's channel open.
    os.set_inheritable(fd, False)
    return sock


def _can_template() -> bool:
    """Whether this process can serve as memvisor's warm template: memvisor_template is
    there (it is loaded, with ctypes, only when memvisor asks), and the process is
    single-threaded (no lock can be held by a thread the child would not have)."""
    if "memvisor_template" not in sys.modules and not os.path.exists(
            os.path.join(os.path.dirname(os.path.abspath(__file__)), "memvisor_template.py")):
        return False
    try:
        with open("/proc/self/stat", "rb") as f:
            stat = f.read()
        return int(stat[stat.rindex(b")") + 2:].split()[17]) == 1  # num_threads, field 20
    except (OSError, ValueError, IndexError):
        return True  # no /proc: nothing says otherwise


def _start_tracemalloc() -> None:
    """MEMVISOR_TRACEMALLOC=N: trace allocations with N frames from now on."""
    env = os.environ.get("MEMVISOR_TRACEMALLOC", "").strip()
    if not env:
        return
    import tracemalloc  # noqa: PLC0415 - see the imports

    if tracemalloc.is_tracing():
        return
    try:
        frames = int(env)
    except ValueError:
        frames = -1
    if frames < 0:
        print(f"memvisor_worker: MEMVISOR_TRACEMALLOC={env!r} is not a number of frames; "
              "tracemalloc stays off", file=sys.stderr)
        return
    if frames > 0:
        tracemalloc.start(frames)


def run_local(handler: Handler, tasks: Iterable[Union[str, bytes]], *,
              raise_errors: bool = False) -> Iterator[Dict[str, Any]]:
    """Runs `handler` in this process on `tasks`, without memvisor: for trying and debugging
    a handler (breakpoints and pdb work). `tasks` are task lines, as str or bytes (an open
    file works: a trailing newline is dropped); as memvisor does, a task's id is its line
    number, from 1, and empty lines are skipped. Yields one dict per task, shaped like
    memvisor's result lines (no memory figures: nothing measures them here): ``task``,
    ``status`` (ok or failed), ``kind`` (as the handler named it, or None), and ``result`` or
    ``error`` (``result_base64``/``error_base64`` when not valid UTF-8). With raise_errors,
    an exception in the handler propagates instead (to stop in a debugger where it was
    raised).
    """
    for number, line in enumerate(tasks, 1):
        data = line.encode("utf-8", "surrogateescape") if isinstance(line, str) else bytes(line)
        if data.endswith(b"\n"):
            data = data[:-1]
        if not data:
            continue
        task = Task(number, data)
        try:
            key, body = "result", _result_bytes(handler(task))
            status = "ok"
        except Exception as exc:  # noqa: BLE001 - as run(): an error fails its task only
            if raise_errors:
                raise
            key, body, status = "error", format_error(exc).encode("utf-8", "surrogateescape"), \
                "failed"
        out: Dict[str, Any] = {"task": number, "status": status, "kind": task.kind}
        try:
            out[key] = body.decode("utf-8")
        except UnicodeDecodeError:
            import base64  # noqa: PLC0415 - see the imports

            out[key + "_base64"] = base64.b64encode(body).decode("ascii")
        yield out


def _leave(worker: Optional[Worker], code: int) -> NoReturn:
    """Exits with `code`. A worker forked from a template ends as multiprocessing's forked
    workers do, with os._exit() after flushing stdio: the interpreter's teardown (atexit
    handlers, every object freed) would only copy the template's pages it shares, one by
    one, before the replacement can start."""
    if worker is not None and worker.forked:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (AttributeError, OSError, ValueError):
                pass
        os._exit(code)
    sys.exit(code)


def main(handler: Handler) -> NoReturn:
    """Runs a batch worker around `handler` (see Worker.run) and exits: 0 after STOP,
    EXIT_FATAL (78, not respawned) with a message when not started by memvisor, 1 when the
    channel broke. With a template (docs/templates.md), the code before main() is the
    workers' start-up, run once in the template; each worker forked from it ends with
    os._exit() (see _leave)."""
    prog = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "worker"
    try:
        worker = Worker()
    except NotUnderMemvisor as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        sys.exit(EXIT_FATAL)
    except MemvisorError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        sys.exit(1)
    with worker:
        try:
            worker.run(handler)
        except MemvisorError as exc:
            print(f"{prog}: {exc}", file=sys.stderr)
            _leave(worker, 1)
    _leave(worker, 0)
