"""memvisor_template: a Python worker serving as memvisor's warm template (standard library only).

Used by memvisor_worker: when memvisor runs a pool with ``[worker] template = yes``, the first
process of the worker command runs its start-up (everything before ``memvisor_worker.Worker()``
or ``memvisor_worker.main()``: imports, configuration, loaded models) once, and memvisor asks
it, in GO, to serve as the template: it then forks one worker per FORK request, and each
child returns from ``Worker()`` as a normal worker on its own channel. See docs/templates.md.

How a child is made: clone3(CLONE_PARENT) through ctypes (the standard library has no clone3),
so memvisor, the template's parent, is the child's parent too: it reaps every worker itself
(the exact exit status), the parent-death signal points at memvisor, and the workers do not
depend on the template once they run. Around the clone, the interpreter's own fork bookkeeping
runs as for os.fork(): PyOS_BeforeFork(), then PyOS_AfterFork_Child() or
PyOS_AfterFork_Parent(), so os.register_at_fork() hooks run (``random`` reseeds, ``threading``
and ``logging`` reset their locks). The C library's pthread_atfork() handlers do not: a
template must be single-threaded (a process with threads says in its HELLO that it cannot be
a template, and memvisor then starts every worker by exec).

Before its first fork, the template runs a worker's conversation a few times over a socket
pair of its own (_warm): the code every child runs is then specialised in the template, once.

On cgroup v2 the child is born in its cgroup (CLONE_INTO_CGROUP); otherwise it writes "0" to
its cgroup.procs before anything else runs in it, at-fork hooks included.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import gc
import os
import socket
import struct
import sys
from _thread import get_native_id  # not threading: its at-fork hook would run in every child

TYPE_CHECKING = False  # typing is for type checkers: a template starts without it
if TYPE_CHECKING:
    from typing import List, Optional, Tuple

import memvisor_worker as _mw

_SYS_CLONE3 = 435  # the same number on every architecture
_CLONE_PARENT = 0x00008000
_CLONE_CHILD_CLEARTID = 0x00200000
_CLONE_CHILD_SETTID = 0x01000000
_CLONE_INTO_CGROUP = 0x200000000
_CLONE3_SIZE_VER0 = 64  # the 5.3 layout: no set_tid, no cgroup
_PR_SET_PDEATHSIG = 1
_SIGKILL = 9
_MAX_FDS = 3 + _mw.FORK_MAX_FDS  # the output, nfds, the cgroup dir, cgroup.procs
_INT = struct.Struct("=i")
_FORKED_MSG = struct.Struct("=IHHQiiII")  # a header, then a FORKED's payload
_ANC_SPACE = socket.CMSG_SPACE(_MAX_FDS * 4)
_INTO_CGROUP_REFUSED = (errno.EINVAL, errno.E2BIG, errno.EOPNOTSUPP, errno.EBUSY, errno.EBADF,
                        errno.EACCES, errno.EPERM)


class _CloneArgs(ctypes.Structure):
    """struct clone_args (linux/sched.h; `cgroup` since 5.7)."""

    _fields_ = [(name, ctypes.c_uint64) for name in (
        "flags", "pidfd", "child_tid", "parent_tid", "exit_signal", "stack", "stack_size",
        "tls", "set_tid", "set_tid_size", "cgroup")]


class _Clone:
    """clone3(CLONE_PARENT) with the interpreter's fork bookkeeping around it."""

    def __init__(self) -> None:
        # PyDLL: the GIL stays held across the call, as os.fork() holds it across fork().
        self._libc = ctypes.PyDLL(None, use_errno=True)
        self._syscall = self._libc.syscall
        self._syscall.restype = ctypes.c_long
        # What the child calls, found here once: a first `libc.NAME` in each child was a
        # dlsym() and a new function object, and the pages that wrote (a third of a forked
        # worker's copy-on-write faults before its HELLO, docs/templates.md "Costs").
        self._prctl = self._libc.prctl
        self._write = self._libc.write
        self._fflush = self._libc.fflush
        self._api = ctypes.pythonapi
        self._before_fork = self._api.PyOS_BeforeFork
        self._after_child = self._api.PyOS_AfterFork_Child
        self._after_parent = self._api.PyOS_AfterFork_Parent
        self._tid = self._tid_field()
        # The arguments of every clone, made once: a new ctypes Structure, its byref and two
        # ctypes integers per fork were objects the template wrote after each fork (pages its
        # live workers still shared, copied again), docs/templates.md "Costs".
        self._args = _CloneArgs()
        self._args_ref = ctypes.byref(self._args)
        self._nr = ctypes.c_long(_SYS_CLONE3)
        self._size = ctypes.c_size_t(ctypes.sizeof(self._args))
        self._size_ver0 = ctypes.c_size_t(_CLONE3_SIZE_VER0)

    def _tid_field(self) -> int:
        """The address of glibc's thread id field of this (the main) thread, where its fork()
        has the kernel write the child's id (the descriptor glibc gives debuggers,
        {bits, count, offset}); 0 when unknown."""
        try:
            desc = (ctypes.c_uint32 * 3).in_dll(self._libc, "_thread_db_pthread_tid")
            self._libc.pthread_self.restype = ctypes.c_void_p
            base = self._libc.pthread_self()
        except (ValueError, AttributeError):
            return 0
        if desc[0] != 32 or desc[1] != 1 or desc[2] > 65536 or not base:
            return 0
        addr = base + desc[2]
        return addr if ctypes.c_int.from_address(addr).value == get_native_id() else 0

    @property
    def sets_tid(self) -> bool:
        return self._tid != 0

    def clone(self, cgdir: int) -> Tuple[int, int, bool]:
        """(pid, errno, born in the cgroup): pid 0 in the child, -1 on failure."""
        args = self._args
        flags = _CLONE_PARENT
        if self._tid:
            flags |= _CLONE_CHILD_SETTID | _CLONE_CHILD_CLEARTID
        in_cgroup = cgdir >= 0
        if in_cgroup:
            flags |= _CLONE_INTO_CGROUP
        args.flags = flags
        args.child_tid = self._tid
        args.cgroup = cgdir if in_cgroup else 0
        self._before_fork()
        pid = self._syscall(self._nr, self._args_ref, self._size)
        err = ctypes.get_errno() if pid < 0 else 0
        if pid < 0 and in_cgroup and err in _INTO_CGROUP_REFUSED:
            # Before 5.7, a cgroup a process cannot be born in, or a template that may not
            # write the cgroups' common ancestor ([worker] user): the child writes the
            # cgroup.procs memvisor opened instead.
            args.flags = flags & ~_CLONE_INTO_CGROUP
            args.cgroup = 0
            in_cgroup = False
            pid = self._syscall(self._nr, self._args_ref, self._size_ver0)
            err = ctypes.get_errno() if pid < 0 else 0
        if pid != 0:
            self._after_parent()
        return pid, err, in_cgroup

    def child_first(self, parent: int, procs: int) -> None:
        """In the child, before anything of Python's runs: the parent-death signal (checked
        against a memvisor that died before it was armed), its cgroup; then the interpreter's
        after-fork work. Exits 125 (as the exec shim: could not set up) on failure."""
        if self._prctl(_PR_SET_PDEATHSIG, _SIGKILL, 0, 0, 0) != 0 or os.getppid() != parent:
            os._exit(125)
        if procs >= 0 and self._write(procs, b"0", 1) != 1:
            msg = f"memvisor worker (forked): cannot join its cgroup: errno {ctypes.get_errno()}\n"
            self._write(2, msg.encode(), len(msg))
            os._exit(125)
        self._after_child()


_clone: Optional[_Clone] = None


def _read_exact(worker: "_mw.Worker", n: int, fds: List[int]) -> bytes:
    """Exactly n bytes: first what the handshake read ahead (no fds come with it: memvisor
    sends FORK only after TEMPLATE), then from the socket, keeping the fds that come along."""
    data = bytes(worker._in[:n])
    del worker._in[:len(data)]
    sock = worker._channel()
    while len(data) < n:
        try:
            chunk, anc, flags, _ = sock.recvmsg(n - len(data), _ANC_SPACE,
                                                socket.MSG_CMSG_CLOEXEC)
        except BlockingIOError:
            worker._wait(_mw.select.POLLIN)
            continue
        except OSError as exc:
            worker._fail_io(exc)
        for level, kind, blob in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                for i in range(0, len(blob) - 3, 4):  # no generator: a function per FORK
                    fds.append(_INT.unpack_from(blob, i)[0])
        if flags & socket.MSG_CTRUNC:
            worker._fail(_mw.ProtocolError("fds of a FORK were lost (MSG_CTRUNC)"))
        if not chunk:
            worker._fail(_mw.SupervisorGone("memvisor closed the channel"))
        data += chunk
    return data


def _read_msg(worker: "_mw.Worker") -> Tuple[int, int, bytes, List[int]]:
    """The next message (type, task id, payload) and its fds, checked as any other."""
    fds: List[int] = []
    try:
        header = _read_exact(worker, _mw.HEADER_SIZE, fds)
        length = _mw._HEADER.unpack(header)[0]
        if length > 64:  # only fixed-size messages come to a template
            worker._fail(_mw.ProtocolError(f"a {length}-byte message for a template"))
        worker._in[:0] = header + _read_exact(worker, length, fds)
        msg = worker._decode()
        if msg is None:
            worker._fail(_mw.ProtocolError("a message cut short"))
    except BaseException:
        _close(fds)
        raise
    mtype, _flags, task, payload = msg
    return mtype, task, payload, fds


def _close(fds: List[int]) -> None:
    for fd in fds:
        os.close(fd)


def _child_setup(slot: int, fds: List[int], nfds: int, listen: bool, nl: int, chan: int) -> None:
    """In the new worker, after the clone: a session of its own, its fds where an exec'd
    worker has them (the output on 1 and 2, the listen sockets on 3, 4, ..., then its channel
    on the fd MEMVISOR_FD names, `chan`, over the template's: 3 + the listen sockets in a
    template memvisor started, a number of its own in one forked from memvisor.Pool's caller,
    whose file on 3 stays the caller's), its slot; LISTEN_PID when the template's
    environment has LISTEN_FDS (`listen`; `nl` and `chan` from _targets, once in the
    template)."""
    os.setsid()
    top = max(chan + nfds, 3 + nfds)  # above every number they go to
    moved = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, top) for fd in fds[:1 + nfds]]
    _close(fds)
    os.dup2(moved[0], 1)
    os.dup2(moved[0], 2)
    for i in range(nfds):
        os.dup2(moved[1 + i], 3 + i if i < nl else chan + i - nl)
    _close(moved)
    os.environ["MEMVISOR_SLOT"] = str(slot)
    if listen:  # socket activation: the sockets are this process's now
        os.environ["LISTEN_PID"] = str(os.getpid())


def _number(name: str) -> Optional[int]:
    """$name as an fd number or count (decimal digits only, as _mw._open_channel), else None."""
    v = os.environ.get(name)
    if v is None or not v.isascii() or not v.isdigit() or len(v) > 10 or int(v) > 2**31 - 1:
        return None
    return int(v)


def _targets(listen: bool) -> Tuple[int, int]:
    """(listen sockets, the channel's fd) in a forked worker: the sockets go to 3, 4, ... (as
    systemd's LISTEN_FDS says), the channel (and any fd after it) to the number $MEMVISOR_FD
    names, as in this template: 3 + the sockets in a template memvisor started (where the
    supervisor put it), another in one memvisor.Pool forked from its caller (memvisor._handoff:
    the caller's file on fd 3 stays the caller's)."""
    nl = (_number("LISTEN_FDS") or 0) if listen else 0
    chan = _number(_mw.ENV_FD)
    return nl, 3 + nl if chan is None or chan < 3 + nl else chan


def _fork_one(worker: "_mw.Worker", task: int, payload: bytes, fds: List[int],
              listen: bool, nl: int, chan: int) -> bool:
    """One FORK: True in the child, False in the template once FORKED is sent."""
    slot, nfds, flags, _ = _mw._FORK.unpack(payload)
    want = 1 + nfds + bool(flags & _mw.FORK_CGROUP_DIR) + bool(flags & _mw.FORK_CGROUP_PROCS)
    if flags & ~(_mw.FORK_CGROUP_DIR | _mw.FORK_CGROUP_PROCS) or nfds > _mw.FORK_MAX_FDS \
            or len(fds) != want:
        _close(fds)
        worker._fail(_mw.ProtocolError(f"FORK with {len(fds)} fds, not {want}"))
    k = 1 + nfds
    cgdir = procs = -1
    if flags & _mw.FORK_CGROUP_DIR:
        cgdir, k = fds[k], k + 1
    if flags & _mw.FORK_CGROUP_PROCS:
        procs = fds[k]
    assert _clone is not None
    parent = os.getppid()
    for stream in (sys.stdout, sys.stderr):  # buffered output is the template's, not the child's
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):
            pass
    _clone._fflush(None)
    gc.freeze()  # the child's collections leave the template's objects (and their pages) alone
    pid, err, in_cgroup = _clone.clone(cgdir)
    if pid == 0:
        _clone.child_first(parent, -1 if in_cgroup else procs)
        _child_setup(slot, fds, nfds, listen, nl, chan)
        return True
    _close(fds)
    # Sent as it is, not through the answer buffer (nothing is buffered in a template: a
    # SNAPSHOT's answer is flushed at once): fewer objects written per fork.
    worker._send(_FORKED_MSG.pack(_mw._FORKED.size, _mw.MSG_FORKED, 0, task, max(pid, 0),
                                  0 if pid > 0 else err,
                                  _mw.FORKED_IN_CGROUP if in_cgroup else 0, 0))
    return False


_WARM_ROUNDS = 8  # CPython 3.11 specialises a function's code after 8 calls (quickening)


def _warm_task(task: "_mw.Task") -> bytes:
    return task.data


def _warm(worker: "_mw.Worker") -> None:
    """Runs a worker's whole conversation (HELLO, GO, TASK, DONE, STOP, close) a few times on
    a socket pair of its own, before the first fork, through the same code a forked worker
    runs: what a first run does once (a function's code specialised, the type attribute
    cache filled, strings hashed, buffers sized) is done here, in the template, not again
    in (and copied into) every worker. No handler of the worker's is called, nothing is sent
    to memvisor, and the template's own channel state is not touched. Best effort: any
    failure leaves the template as it was, unwarmed."""
    ours = theirs = None
    stop = _mw._HEADER.pack(0, _mw.MSG_STOP, 0, 0)

    def handler(task: "_mw.Task") -> bytes:
        # STOP once the task is in hand: sent with it, it would drop it (tasks not started).
        theirs.sendall(stop)
        return _warm_task(task)

    try:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        for i in range(_WARM_ROUNDS):
            # Both kinds of GO: with heap figures with every answer (no heap preload) and
            # without (memvisor's preload measures the heap).
            go = _mw.GO_HEAP | _mw.GO_HEAP_LATE if i % 2 else 0
            theirs.sendall(_mw._HEADER.pack(_mw._GO.size, _mw.MSG_GO, 0, 0)
                           + _mw._GO.pack(worker.version, 1, 1, _mw.MODE_BATCH | go)
                           + _mw._HEADER.pack(4, _mw.MSG_TASK, 0, 1) + b"warm")
            w = _mw.Worker.__new__(_mw.Worker)
            w._sock = None
            w.forked = True  # as the children: their HELLO says so without reading /proc
            w._prev_types = {}
            w._prev_sites = {}
            w._init_channel_state(worker._rbuf)  # the buffer the children read into
            w._sock = ours.dup()
            with w:
                w._connect()
                w.run(handler)
            try:
                while theirs.recv(4096, socket.MSG_DONTWAIT):  # HELLO and DONE, dropped
                    pass
            except BlockingIOError:
                pass
    except Exception:  # noqa: BLE001 - a warm-up that fails only leaves the template cold
        pass
    finally:
        for sock in (ours, theirs):
            if sock is not None:
                sock.close()


def serve(worker: "_mw.Worker") -> bool:
    """Template mode (GO said so): a worker per FORK. Returns True in a child (a new worker:
    its channel now has the template's fd number), False when memvisor retired the template."""
    if worker._stopped:
        return False  # STOP came with GO
    if worker._tasks:
        worker._fail(_mw.ProtocolError("TASK sent to a template"))
    global _clone
    if _clone is None:
        _clone = _Clone()
        # glibc's mallinfo2 found once here, not in every worker that memvisor asks for heap
        # figures (50-70 us of each fork's first answer, and the pages a ctypes class dirties).
        _mw._heap_source()
        _warm(worker)
    # What the start-up, ctypes and the warm-up made is no worker's growth: it is frozen here
    # (as before every fork), and a census (gc.get_objects()) sees only what is not frozen,
    # so the workers' first snapshots and this template's count from nothing. No census of
    # the start-up's objects: it would take a reference to each one, writing (in a template
    # forked from memvisor.Pool's caller: copying) every page that holds one.
    gc.freeze()
    worker._prev_types = {}
    features = _mw.TEMPLATE_TID if _clone.sets_tid else 0
    worker._queue(_mw.MSG_TEMPLATE, 0, None, _mw._TEMPLATE.pack(os.getpid(), features))
    worker._flush()
    # Looked up here, not in each child (os.environ's `in` is Python code, and a KeyError when
    # absent): nothing of the start-up runs while the template serves, so it cannot change.
    listen = "LISTEN_FDS" in os.environ
    nl, chan = _targets(listen)
    while True:
        mtype, task, payload, fds = _read_msg(worker)
        if mtype == _mw.MSG_FORK:
            if _fork_one(worker, task, payload, fds, listen, nl, chan):
                return True
        elif mtype == _mw.MSG_STOP:
            _close(fds)
            worker._stop()
            return False
        elif mtype == _mw.MSG_SNAPSHOT:
            _close(fds)
            worker._answer_snapshot()
        else:
            _close(fds)
            worker._fail(_mw.ProtocolError(f"{_mw._NAMES[mtype]} sent to a template"))
