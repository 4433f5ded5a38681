"""The memvisor side of a Pool: finding the binary, turning Pool keywords into ``-o
section.key=value`` (checked by ``memvisor check`` before anything runs), and the ``memvisor
run`` child process: task lines to its stdin, result lines from a FIFO, its JSON log from its
stderr, and stopping it.
"""

from __future__ import annotations

import datetime
import difflib
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
# typing only for type checkers: importing it costs a Pool ~25 ms of CPU on a
# loaded 2-core machine (annotations are strings here: `from __future__ import
# annotations`), as memvisor_worker does.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, List, Optional, Tuple

from ._errors import MemvisorNotFound, PoolError

ENV_BIN = "MEMVISOR_BIN"
_CHECK_TIMEOUT = 30.0

# Keys a Pool sets itself: the worker, where tasks and results go, the log it parses.
RESERVED = {
    "worker.command": "the workers run memvisor.Pool's own entry point",
    "worker.protocol": "memvisor.Pool's workers speak the api protocol",
    "tasks.source": "tasks come from the Pool's calls",
    "tasks.results": "results come back to the Pool's calls",
    "log.format": "memvisor.Pool reads memvisor's log as JSON (configure logger 'memvisor')",
    "log.file": "memvisor.Pool reads memvisor's log (configure logger 'memvisor')",
    "log.level": "memvisor.Pool reads memvisor's info events (filter them with logger "
                 "'memvisor': info events are logged at DEBUG)",
}

_sections_cache: Dict[str, Dict[str, str]] = {}
# `memvisor check` of a Pool's settings, by (binary and its mtime, config file and its mtime,
# arguments): a second Pool with the same settings does not run it again (1.5-2 ms).
_checked_cache: Dict[Tuple[Any, ...], Dict[str, Dict[str, str]]] = {}


def find_binary(path: Optional[str] = None) -> str:
    """The memvisor binary: `path`, else $MEMVISOR_BIN, else the first on PATH."""
    where = "the memvisor= argument"
    if path is None and os.environ.get(ENV_BIN):
        path, where = os.environ[ENV_BIN], f"${ENV_BIN}"
    if path is None:
        found = shutil.which("memvisor")
        if found is None:
            raise MemvisorNotFound(
                "the memvisor binary is not on PATH: install it (make install), or set "
                f"{ENV_BIN}=/path/to/memvisor, or pass Pool(memvisor='/path/to/memvisor')")
        return found
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise MemvisorNotFound(f"{where} names {path!r}, which is not an executable file")
    return path


def parse_ini(text: str) -> Dict[str, Dict[str, str]]:
    """The effective settings `memvisor check` prints: {section: {key: value}}."""
    out: Dict[str, Dict[str, str]] = {}
    section: Optional[Dict[str, str]] = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith((";", "#")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = out.setdefault(line[1:-1], {})
        elif section is not None and "=" in line:
            key, _, value = line.partition("=")
            # The provenance after the value is an inline comment, as inih reads one:
            # a ';' that follows whitespace.
            section[key.strip()] = re.split(r"\s;", value, maxsplit=1)[0].strip()
    return out


def parse_size(text: str) -> int:
    """A size as memvisor prints it (``4M``, ``512``, ``1.5G``): bytes."""
    m = re.fullmatch(r"\s*([0-9.]+)\s*([kmgt]?)(?:i?b)?\s*", text, re.IGNORECASE)
    if not m:
        raise ValueError(f"not a size: {text!r}")
    shift = " kmgt".index(m.group(2).lower() or " ") * 10
    return int(float(m.group(1)) * (1 << shift))


def _check(binary: str, args: List[str]) -> subprocess.CompletedProcess:
    try:
        return subprocess.run([binary, "check", *args], stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=_CHECK_TIMEOUT)
    except OSError as exc:
        raise MemvisorNotFound(f"cannot run {binary}: {exc}") from exc


def key_sections(binary: str) -> Dict[str, str]:
    """{key: section} of every configuration key this memvisor knows (from `memvisor
    check`), so that a Pool keyword names a key without its section."""
    cached = _sections_cache.get(binary)
    if cached is None:
        cp = _check(binary, [])
        if cp.returncode != 0:
            raise PoolError(f"{binary} check failed ({cp.returncode}): {cp.stderr.strip()}")
        cached = _sections_of(parse_ini(cp.stdout))
        _sections_cache[binary] = cached
    return cached


def render(name: str, value: Any) -> str:
    """A Pool keyword's value as memvisor's text: bools yes/no, timedeltas in ms, numbers
    and strings as they are (sizes in bytes or with a unit: 256M; durations with a unit)."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, datetime.timedelta):
        return f"{round(value.total_seconds() * 1000)}ms"
    if isinstance(value, (int, float, str)):
        text = str(value)
        if "\n" in text:
            raise ValueError(f"{name}: a value is one line")
        return text
    raise TypeError(f"{name}: a {type(value).__name__} is not a memvisor setting "
                    "(use str, int, float, bool or datetime.timedelta)")


# The sections of the Pool's own keywords (its signature names them), so that a Pool made
# with them alone runs `memvisor check` once, on its settings, and not once more before that
# to learn every key's section (key_sections: 5-12 ms on a loaded 2-core machine). Any other
# keyword asks memvisor, as does a name here that memvisor refuses (its error is then the one
# key_sections gives).
POOL_SECTIONS = {"workers": "supervisor", "memory_soft": "limits", "memory_hard": "limits",
                 "max_tasks": "limits", "template": "worker"}


class _Unresolved(Exception):
    """A keyword whose section only memvisor knows (key_sections)."""


def _overrides(given: Dict[str, Any],
               sections: Optional[Dict[str, str]]) -> Tuple[List[str], List[str]]:
    """(the keywords, the ``-o`` arguments) for `given`. sections None: not known yet, only
    dotted names and POOL_SECTIONS are resolved (unchecked: memvisor checks them), any other
    name raises _Unresolved."""
    names: List[str] = []
    args: List[str] = []
    for name, value in given.items():
        if value is None:
            continue
        if sections is None:
            if "." not in name and name not in POOL_SECTIONS:
                raise _Unresolved(name)
            full = name if "." in name else f"{POOL_SECTIONS[name]}.{name}"
        elif "." in name:
            full = name
            if name.split(".", 1)[1] not in sections:
                raise TypeError(f"memvisor has no setting {name!r}")
        elif sections.get(name):
            full = f"{sections[name]}.{name}"
        elif name in sections:
            raise TypeError(f"{name}: a key of more than one section: say which with "
                            f"options={{'section.{name}': ...}}")
        else:
            close = difflib.get_close_matches(name, list(sections), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise TypeError(f"Pool() got an unexpected keyword argument {name!r}{hint}: not a "
                            "multiprocessing.Pool argument nor a memvisor setting (memvisor "
                            "check lists them)")
        if full in RESERVED:
            raise TypeError(f"{name}: memvisor.Pool sets [{full.replace('.', '] ', 1)} itself "
                            f"({RESERVED[full]})")
        names.append(name)
        args += ["-o", f"{full}={render(name, value)}"]
    return names, args


def _sections_of(effective: Dict[str, Dict[str, str]]) -> Dict[str, str]:
    """{key: section} from settings `memvisor check` printed (every key it knows); "" for a
    key of more than one section."""
    out: Dict[str, str] = {}
    for section, keys in effective.items():
        for key in keys:
            # A key in two sections names neither: "" asks for options={"s.key": v}.
            out[key] = "" if key in out else section
    return out


def build_options(binary: str, config: Optional[str],
                  given: Dict[str, Any]) -> Tuple[List[str], Dict[str, Dict[str, str]]]:
    """The ``-o`` arguments for `given` ({keyword or "section.key": value}; None = unset),
    checked by `memvisor check`, and the effective settings. A keyword memvisor does not
    know, or one a Pool sets itself, is a TypeError; a bad value a ValueError with
    memvisor's message."""
    sections = _sections_cache.get(binary)
    try:
        names, args = _overrides(given, sections)
    except _Unresolved:
        sections = key_sections(binary)
        names, args = _overrides(given, sections)
    head = ["-c", config] if config else []
    key = (binary, _mtime(binary), config, _mtime(config) if config else None, tuple(args))
    if key in _checked_cache:
        return args, {k: dict(v) for k, v in _checked_cache[key].items()}
    cp = _check(binary, head + args)
    if cp.returncode == 2 and sections is None:
        # Names resolved without memvisor's list of keys: one it does not know is the
        # TypeError key_sections gives (raised here); one of POOL_SECTIONS that memvisor
        # moved is checked again where it is now.
        names, resolved = _overrides(given, key_sections(binary))
        if resolved != args:
            args = resolved
            key = key[:-1] + (tuple(args),)
            cp = _check(binary, head + args)
    if cp.returncode == 2:
        # "-o:N" names the Nth override: say the keyword the caller wrote.
        text = re.sub(r"-o:(\d+)",
                      lambda m: f"Pool({names[int(m.group(1)) - 1]}=...)"
                      if 0 < int(m.group(1)) <= len(names) else m.group(0), cp.stderr.strip())
        raise ValueError(f"memvisor.Pool: invalid settings:\n{text}")
    if cp.returncode != 0:
        raise PoolError(f"{binary} check failed ({cp.returncode}): {cp.stderr.strip()}")
    effective = parse_ini(cp.stdout)
    _sections_cache.setdefault(binary, _sections_of(effective))
    if key[1] is not None and (not config or key[3] is not None):
        _checked_cache[key] = {k: dict(v) for k, v in effective.items()}
    return args, effective


def _mtime(path: str) -> Optional[int]:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None


class Supervisor:
    """One ``memvisor run`` child. Threads: one reads results (the FIFO), one reads the log
    (stderr); callbacks run on them. The caller writes task lines with write() and ends the
    input with end_input(); on_end(returncode) runs once every result has been read."""

    def __init__(self, binary: str, args: List[str], env: Dict[str, str], tmpdir: str,
                 on_result: Callable[[bytes], None], on_log: Callable[[Any], None],
                 on_end: Callable[[int], None]) -> None:
        self._binary = binary
        self._args = args
        self._env = env
        self._tmpdir = tmpdir
        self._on_result = on_result
        self._on_log = on_log
        self._on_end = on_end
        self.signal_seen = threading.Event()  # memvisor logged the first stop signal
        self.proc: Optional[subprocess.Popen] = None
        self._threads: List[threading.Thread] = []
        self._hold = -1
        self._write_lock = threading.Lock()

    def start(self, worker_cmd: List[str], handoff: Any = None) -> None:
        """Starts memvisor; handoff (a _handoff.Handoff): its first template is forked from
        this process on the way (closed here either way)."""
        fifo = os.path.join(self._tmpdir, "results.fifo")
        results = None
        try:
            os.mkfifo(fifo, 0o600)
            # Our own writer keeps the FIFO from reading EOF before memvisor opens it, and
            # after it closes it for the last time: EOF comes when memvisor has exited (log
            # thread).
            rfd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            results = io.open(rfd, "rb", buffering=1 << 16)
            self._hold = os.open(fifo, os.O_WRONLY | os.O_CLOEXEC)
            os.set_blocking(rfd, True)
            cmd = [self._binary, "run", *self._args, "-o", "log.format=json", "--tasks", "-",
                   "--results", fifo, "--", *worker_cmd]
            env, extra = self._env, {}
            if handoff is not None:
                env = dict(env, **{handoff.ENV: handoff.env_value})
                extra = {"pass_fds": handoff.pass_fds, "preexec_fn": handoff.in_child}
            with open(os.path.join(self._tmpdir, "summary.txt"), "wb") as summary:
                # Its own session: a Ctrl-C at the terminal reaches the caller (whose
                # KeyboardInterrupt terminates the pool), not memvisor's graceful stop.
                self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=summary,
                                             stderr=subprocess.PIPE, env=env,
                                             start_new_session=True, close_fds=True, **extra)
        except BaseException:
            # Nothing started: nothing of this start stays open in the caller.
            if results is not None:
                results.close()
            if self._hold >= 0:
                os.close(self._hold)
                self._hold = -1
            raise
        finally:
            if handoff is not None:
                handoff.close()
        for target, arg in ((self._read_log, None), (self._read_results, results)):
            t = threading.Thread(target=target, args=(arg,) if arg else (),
                                 name=f"memvisor-{target.__name__[1:]}", daemon=True)
            t.start()
            self._threads.append(t)

    @property
    def pid(self) -> Optional[int]:
        return self.proc.pid if self.proc else None

    def write(self, data: bytes) -> None:
        """Task lines to memvisor's stdin (blocks while memvisor's queue is full). Raises
        OSError (BrokenPipeError) once memvisor is gone."""
        assert self.proc is not None and self.proc.stdin is not None
        with self._write_lock:
            self.proc.stdin.write(data)
            self.proc.stdin.flush()

    def end_input(self) -> None:
        """No more tasks: memvisor finishes those it has, then exits."""
        if self.proc is not None and self.proc.stdin is not None:
            with self._write_lock:
                try:
                    self.proc.stdin.close()
                except OSError:
                    pass  # memvisor is gone already: nothing was left to write

    def terminate(self, timeout: float = 15.0) -> None:
        """Stops memvisor now: SIGTERM (stop dispatching), then once memvisor said it got
        it, SIGTERM again (kill the workers at once). memvisor reaps its workers and removes
        their cgroups before it exits. SIGKILL if it does not exit in `timeout`."""
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            # A second signal before memvisor handled the first could merge with it.
            self.signal_seen.wait(5.0)
            proc.send_signal(signal.SIGTERM)  # a no-op once it has been reaped
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def wait(self, timeout: Optional[float] = None) -> None:
        """Waits for memvisor's exit and for both threads (every result and log line read)."""
        for t in self._threads:
            if t is not threading.current_thread():  # terminate() from a result callback
                t.join(timeout)
        if self.proc is not None and self.proc.returncode is not None:
            for pipe in (self.proc.stdin, self.proc.stderr):
                try:
                    if pipe is not None:
                        pipe.close()
                except OSError:
                    pass  # stdin: tasks memvisor never read, and it is gone

    def summary(self) -> str:
        try:
            with open(os.path.join(self._tmpdir, "summary.txt"), "rb") as f:
                return f.read().decode("utf-8", "replace").strip()
        except OSError:
            return ""

    # ---- threads -----------------------------------------------------------------------

    def _read_log(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        try:
            for raw in self.proc.stderr:
                try:
                    obj: Any = json.loads(raw)
                except ValueError:
                    obj = raw.decode("utf-8", "replace").rstrip("\n")  # not an event line
                try:
                    self._on_log(obj)
                except Exception:  # noqa: BLE001 - a bad handler must not stop the reader
                    import logging
                    logging.getLogger("memvisor").exception("memvisor.Pool: log handler")
        finally:
            self.signal_seen.set()
            self.proc.wait()
            # memvisor is gone: let the results reader see EOF after what is in the FIFO.
            if self._hold >= 0:
                os.close(self._hold)
                self._hold = -1

    def _read_results(self, results: io.BufferedReader) -> None:
        try:
            with results:
                for raw in results:
                    try:
                        self._on_result(raw)
                    except Exception:  # noqa: BLE001 - one bad line must not stop the rest
                        import logging
                        logging.getLogger("memvisor").exception("memvisor.Pool: a result")
        finally:
            assert self.proc is not None
            self.proc.wait()
            self._on_end(self.proc.returncode)


def worker_command() -> List[str]:
    """The workers' command: this interpreter running the Pool's worker module."""
    return [sys.executable, "-m", "memvisor._worker"]
