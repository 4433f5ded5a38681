"""The Pool's first template, forked from the caller itself (docs/templates.md, "A template
handed over"; docs/python.md, "Start-up").

A template started by memvisor is a fresh ``python3 -m memvisor._worker``: the interpreter, its
``site`` (tens of ms where a .pth file imports something), this package, then the caller's main
module and the function's module imported again, before the first worker says HELLO.
multiprocessing's fork start method pays none of it: each worker is a copy of the caller. Here
the template is: the process that becomes memvisor (subprocess's child, in ``preexec_fn``)
forks the template from itself (a copy of the caller, everything imported) and then execs
``memvisor run``; exec keeps children, so the template is memvisor's child, handed over with
$MEMVISOR_TEMPLATE_HANDOFF=PIDFD,CTL,OUT (supervisor/handoff.h), and memvisor adopts it as its
first template: into its cgroup, then HELLO, GO and forks as for any template. Later templates
(a replacement at the soft limit, after a crash, at a reload) are the usual fresh ones.

What the template does before it is one, so that it is what memvisor would have started:

- multiprocessing's after-fork hooks, when the caller imported it, as a child multiprocessing
  forks runs them: a manager's proxies let go of the caller's connections (closing the
  caller's fds, before the channel takes its number) and connect again;
- its fds: /dev/null on 0, its output pipe on 1 and 2, its channel ($MEMVISOR_FD) on the
  lowest number above 2 the caller had no fd on when the Pool started (3 unless it had; each
  worker it forks gets its channel on that number too, memvisor_template): a file the caller
  has there (a logging FileHandler a module opened at its import, on fd 3) stays the
  caller's at its number, and a task's writes to it go to the file, not into the channel;
  every other fd of the caller that is not a regular file is replaced by /dev/null (the
  caller's pipes and sockets are not held open; the number stays taken, so an object of the
  caller that still names it cannot write into an fd opened later); first, because one of
  them is subprocess's error pipe, which the caller's Popen reads until every copy is closed;
- the parent-death signal (SIGKILL), checked against a parent that died before it was armed;
- a session of its own (a Ctrl-C at the terminal goes to the caller, as before);
- the signal handlers the caller installed go back to the defaults, no wakeup fd, no signal
  blocked;
- its environment is the one memvisor gives a template (the Pool's, with MEMVISOR_FD and
  MEMVISOR_SLOT);
- stdout and stderr unbuffered, as PYTHONUNBUFFERED=1 makes them for a started template;
- modules made at run time (without a __spec__) are forgotten, as a fresh interpreter never
  had them;
- then the same start-up as a started template (memvisor._worker): the main module imported
  again as __mp_main__, the function's module, the initializer in each worker. Modules
  already imported are not imported again, which is where the time goes.

It is not used (the template is started as before, said at DEBUG on logger "memvisor") when
the caller has other threads (a fork copies only the calling thread: a lock another one held
would stay held in every worker; multiprocessing's fork has the same hazard and does it
anyway), with ``template=False``, with [worker] user or group (the template would run as the
caller), with listen sockets, with cgroup="off" (memvisor refuses a handoff without memory
cgroups too, where the limits would count the caller's pages in every worker), without
os.pidfd_open, or with $MEMVISOR_POOL_FORK=no. (From 6da7f68 to the thirteenth session it was
not used either when the caller had a regular file on fd 3 or 4, where the channel went: the
channel now goes elsewhere. A forked worker has no heap page (memvisor gives none to a worker
of a template), so nothing else of memvisor's lands on 4.)
"""

from __future__ import annotations

import gc
import io
import os
import signal
import socket
import stat
import sys
import threading
import time
# typing only for type checkers: importing it costs a Pool ~25 ms of CPU on a
# loaded 2-core machine (annotations are strings here: `from __future__ import
# annotations`), as memvisor_worker does.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, Optional, Tuple

ENV = "MEMVISOR_TEMPLATE_HANDOFF"  # MV_HANDOFF_ENV
ENV_OFF = "MEMVISOR_POOL_FORK"
EXIT_SETUP = 125  # as memvisor's exec shim: could not set up
# Variables a template gets its own values of, or none (mv_worker_env_private and the pool's).
_PRIVATE = ("MEMVISOR_FD", "MEMVISOR_SLOT", "MEMVISOR_HEAP_FD", "MEMVISOR_SHIM_PRELOAD",
            "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "NOTIFY_SOCKET", ENV)
_PR_SET_PDEATHSIG = 1
_EXITING_WAIT = 0.1  # s: the most a Pool's start waits for joined threads to leave the kernel
_kept: list = []  # the caller's stdio objects: never freed here (that would close 0, 1, 2)


def threads() -> int:
    """Threads of this process now (Python's and any library's). A Python thread that was
    just joined (an earlier Pool's, closed a moment ago) lives on for a moment in the kernel
    after join() returns: when Python knows of no other thread, those are waited for, at most
    _EXITING_WAIT seconds, so that a Pool after a Pool still forks its template."""
    deadline = None
    while True:
        try:
            n = len(os.listdir("/proc/self/task"))
        except OSError:
            return 0  # unknown: not Linux
        if n == 1 or threading.active_count() != 1:
            return n
        now = time.monotonic()
        if deadline is None:
            deadline = now + _EXITING_WAIT
        elif now >= deadline:
            return n  # a library's own threads (not Python's): they stay
        time.sleep(0.001)


def _open_fds() -> Tuple[int, ...]:
    """This process's open fds above stdio (the listing's own fd, closed by now, left out)."""
    try:
        listed = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:
        listed = list(range(3, 1024))  # no /proc: each number looked at
    taken = []
    for fd in listed:
        if fd > 2:
            try:
                os.fstat(fd)
            except OSError:
                continue
            taken.append(fd)
    return tuple(taken)


def _channel_fd(taken: Tuple[int, ...]) -> int:
    """The number the template's channel (and each forked worker's) goes to: the lowest above
    stdio that the caller had no fd on when the Pool started (3 unless it had), so that no
    object of the caller's names it: a file a module opened at its import (a logging
    FileHandler's, often on fd 3) stays the module's at its number, and what the module writes
    to it in a task goes to the file, not into the channel."""
    busy = set(taken)
    fd = 3
    while fd in busy:
        fd += 1
    return fd


def unusable(effective: Dict[str, Dict[str, str]]) -> Optional[str]:
    """Why the template cannot be forked from this process now; None when it can."""
    off = os.environ.get(ENV_OFF, "").strip().lower()
    if off in ("0", "no", "false", "off"):
        return f"${ENV_OFF}={off}"
    if not hasattr(os, "pidfd_open") or not hasattr(os, "fork"):
        return "no os.pidfd_open (Linux 5.3 and Python 3.9 are needed)"
    worker = effective.get("worker", {})
    if worker.get("template") != "yes":
        return "no template (template=False)"
    if worker.get("user") or worker.get("group"):
        return "[worker] user or group: a template forked here would run as this process"
    if effective.get("service", {}).get("listen"):
        return "listen sockets: memvisor hands them to the template it starts"
    if effective.get("supervisor", {}).get("cgroup") == "off":
        # A worker's limit figure would count the pages it shares with a copy of this process
        # (memvisor refuses a handoff without memory cgroups: supervisor.c, take_handoff).
        return "no memory cgroups ([supervisor] cgroup = off)"
    n = threads()
    if n != 1:
        return f"{n} threads in this process: a fork copies only the calling one" if n else \
            "no /proc/self/task: cannot tell whether this process has other threads"
    return None


class Handoff:
    """One handed-over template, from Pool._start to memvisor's exec: the fds, and
    ``in_child`` for subprocess's ``preexec_fn``."""

    ENV = ENV

    def __init__(self, spec: Dict[str, Any], env: Dict[str, str]) -> None:
        self._spec = spec
        # The caller's fds now, before this makes its own (and subprocess its pipes): the
        # template's channel goes to a number none of them has (_channel_fd).
        self._channel = _channel_fd(_open_fds())
        self._env = {k: v for k, v in env.items() if k not in _PRIVATE}
        self._env.update(MEMVISOR_FD=str(self._channel), MEMVISOR_SLOT="0")
        self._ctl, self._ctl_t = (socket.socket(fileno=_above_stdio(s.detach()))
                                  for s in socket.socketpair())
        self._out_r, self._out_w = (_above_stdio(fd) for fd in os.pipe())
        # The number the template's pidfd will have in memvisor: /dev/null until then, so
        # that a failed fork leaves an fd memvisor refuses (not a pidfd) rather than none.
        self._slot = _above_stdio(os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC))
        for stream in (sys.stdout, sys.stderr):  # the template must not print them again
            try:
                if stream is not None:
                    stream.flush()
            except (OSError, ValueError):
                pass

    @property
    def pass_fds(self) -> Tuple[int, int, int]:
        return (self._slot, self._ctl.fileno(), self._out_r)

    @property
    def env_value(self) -> str:
        return f"{self._slot},{self._ctl.fileno()},{self._out_r}"

    def close(self) -> None:
        """The caller's copies: memvisor and the template have theirs."""
        for fd in (self._slot, self._out_r, self._out_w):
            os.close(fd)
        self._ctl.close()
        self._ctl_t.close()

    def in_child(self) -> None:
        """subprocess's preexec_fn, in the process that becomes memvisor: forks the template,
        leaves its pidfd on the slot. Never raises (a raise would fail the Pool): without a
        pidfd there, memvisor refuses the handoff and starts a template itself."""
        try:
            parent = os.getpid()
            pid = os.fork()
        except BaseException:  # noqa: BLE001 - see above
            return
        if pid == 0:
            _template(parent, self._ctl_t.fileno(), self._out_w, self._channel, self._env,
                      self._spec)
        try:
            fd = os.pidfd_open(pid)
            os.dup2(fd, self._slot)
            os.close(fd)
        except BaseException:  # noqa: BLE001 - see above
            os.kill(pid, signal.SIGKILL)


def _above_stdio(fd: int) -> int:
    """fd, or when it is 0, 1 or 2 (the caller closed its stdio) a close-on-exec copy above 2
    (fd closed): subprocess puts memvisor's stdio on 0-2 over them, and memvisor takes only
    fds above 2 (refused, the forked template was a zombie for the run, its pidfd in every
    worker)."""
    if fd > 2:
        return fd
    import fcntl  # noqa: PLC0415 - only a caller without stdio needs it
    try:
        return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)
    finally:
        os.close(fd)


def _template(parent: int, ctl: int, out: int, channel: int, env: Dict[str, str],
              spec: Dict[str, Any]) -> None:
    """The forked template: set up as memvisor would have (see the module's docstring), then
    memvisor._worker's start-up. Never returns."""
    try:
        # The fds first: this process holds a copy of subprocess's error pipe, whose EOF (at
        # memvisor's exec, once every copy is closed) ends the caller's Popen; closed before
        # the parent-death signal's ctypes import, Popen took 5.0-6.2 ms instead of 10.5-11.1.
        # multiprocessing's objects let go of the caller's connections before: what they
        # close is still the caller's fd, not the channel dup'ed onto its number.
        _multiprocessing_after_fork()
        _fds(ctl, out, channel)
        # Every object of the caller's is frozen: the collector never walks them here (a
        # full collection writes to each one, copying the caller's heap into the template;
        # a caller holding 2M lists had its 165 MB copied), nor does a census.
        gc.freeze()
        _arm_parent_death(parent)
        os.setsid()
        _signals()
        os.environ.clear()
        os.environ.update(env)
        _stdio()
        _forget_made_modules()
        from . import _worker
        import memvisor_template  # noqa: F401 - what GO would load, loaded before HELLO
    except BaseException:  # noqa: BLE001 - nothing to report to yet: the shim's code
        os._exit(EXIT_SETUP)
    _worker.main(spec)
    os._exit(EXIT_SETUP)  # not reached: main() ends with os._exit


def _multiprocessing_after_fork() -> None:
    """What multiprocessing runs in a child it forks (util._run_after_forkers): its objects
    of the caller's let go of what was the caller's. A manager's proxy drops the caller's
    connection and connects again: it kept the caller's, whose fd was /dev/null here or, on fd
    3, the channel, where a proxy given to the initializer wrote its request (memvisor read a
    malformed message, and the task was quarantined). Only when the caller imported it."""
    util = sys.modules.get("multiprocessing.util")
    if util is not None:
        util._run_after_forkers()


def _forget_made_modules() -> None:
    """Modules made at run time (no __spec__: types.ModuleType put in sys.modules) are
    forgotten: a started template could not import them, and the workers must fail the same
    way whichever template forked them."""
    for name, module in list(sys.modules.items()):
        if name not in ("__main__", "__mp_main__") and module is not None and \
                getattr(module, "__spec__", True) is None:
            del sys.modules[name]


def _arm_parent_death(parent: int) -> None:
    """SIGKILL when the process that becomes memvisor dies (it is the thread that forked
    this one, and stays so across its exec); exits if it died before the signal was armed."""
    import ctypes  # noqa: PLC0415 - only the template needs it (memvisor_template loads it too)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0 or os.getppid() != parent:
        os._exit(EXIT_SETUP)


def _fds(ctl: int, out: int, channel: int) -> None:
    """/dev/null on 0, the output on 1 and 2, the channel on `channel` ($MEMVISOR_FD: 3 unless
    the caller had an fd there); every other fd that is not a regular file becomes /dev/null
    (close-on-exec)."""
    import fcntl  # noqa: PLC0415

    def high(fd: int) -> int:
        return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, channel + 1)

    ctl, out = high(ctl), high(out)
    null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    null = high(null)
    os.dup2(null, 0)
    os.dup2(out, 1)
    os.dup2(out, 2)
    os.dup2(ctl, channel)
    ours = (ctl, out, null)
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd <= 2 or fd == channel or fd in ours:
            continue
        try:
            mode = os.fstat(fd).st_mode
        except OSError:
            continue  # the directory listdir read, closed now
        if not stat.S_ISREG(mode):
            os.dup2(null, fd, inheritable=False)
    for fd in ours:
        os.close(fd)


def _signals() -> None:
    """Handlers the caller installed go back to the defaults; no wakeup fd, nothing blocked
    (as memvisor's exec shim leaves them)."""
    try:
        signal.set_wakeup_fd(-1)
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
    except (ValueError, OSError):
        pass
    for sig in signal.valid_signals():
        try:
            handler = signal.getsignal(sig)
            if callable(handler) and handler is not signal.default_int_handler:
                signal.signal(sig, signal.default_int_handler if sig == signal.SIGINT
                              else signal.SIG_DFL)
        except (OSError, ValueError, RuntimeError):
            pass


def _stdio() -> None:
    """stdin from /dev/null, stdout and stderr unbuffered on the output pipe."""
    _kept.extend((sys.stdin, sys.stdout, sys.stderr, sys.__stdin__, sys.__stdout__,
                  sys.__stderr__))
    enc = "utf-8"
    raw_in = io.BufferedReader(io.FileIO(0, "r", closefd=False))
    sys.stdin = sys.__stdin__ = io.TextIOWrapper(raw_in, encoding=enc)
    # Unbuffered, as -u makes them: a text layer straight on the fd.
    out: Any = io.FileIO(1, "w", closefd=False)
    err: Any = io.FileIO(2, "w", closefd=False)
    sys.stdout = sys.__stdout__ = io.TextIOWrapper(out, encoding=enc, write_through=True)
    sys.stderr = sys.__stderr__ = io.TextIOWrapper(err, encoding=enc, errors="backslashreplace",
                                                   write_through=True)
