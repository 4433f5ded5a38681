"""Task lines and answers between memvisor.Pool and its workers (both sides use this file).

memvisor's tasks are lines: one line written to its stdin is one task, whose id is its line
number. A Pool task line is ``KIND TOKEN MODE PAYLOAD``:

- KIND: the function's ``module.qualname`` (kind_of), first so that memvisor's own reading of
  a line's kind (``[leak] kind = auto``: its first word) is the kind the worker names: a task
  that never answered (crashed, quarantined) is reported under it, and a leak suspect's tasks
  can be told from the others by their line, which its isolation needs.
- TOKEN: base64 of pickle(fn). Pickle sends a function by reference (module and qualified
  name), so the token is short, the same for every task of a call, and a worker unpickles it
  (imports the module) once and caches the function under it.
- MODE: one letter: ``c`` one call, fn(*args, **kwargs); ``m`` a chunk for map, fn(item) for
  each item; ``s`` a chunk for starmap, fn(*item) for each item.
- PAYLOAD: base64 of pickle((args, kwargs)) for ``c``, of the chunk's list of items otherwise.

The worker answers DONE with the seconds the function took over the chunk (what sizes a map's
tasks: memvisor's duration of a task also holds its round trip, which for tiny items is most
of it), a space, and pickle(list of the chunk's results) read as Latin-1 (each byte one
character) and written as UTF-8; and FAIL with a JSON object: ``{"type", "message",
"traceback", "exception": base64 of pickle(exc) or null}``.

Why Latin-1 for answers: memvisor writes an answer that is valid UTF-8 as a JSON string
(``result``), and a byte string read as Latin-1 is always valid UTF-8 once written as such,
so every answer takes that one path; the caller gets it back from ``json.loads`` (C) and
``str.encode("latin-1")`` (a copy). Base64 cost the caller ``b64decode`` of every answer
(~400 MB/s here: 22 ms of the results thread's 37 for the 100,000 64-char results of a map,
the caller being the one process every answer goes through). What it costs instead: bytes
0x80-0xff take 2 bytes and control bytes 6 in memvisor's JSON (``\\u00XX``): a pickle of
short strings is smaller than its base64, one of ints or floats up to twice its size. An
answer in the older form (base64 of the pickle, a space, the seconds) still reads. Tasks
stay base64: a task is one line, and a pickle holds any byte, newlines included. An error
stays text, so that the results file and the report show it.
"""

from __future__ import annotations

import base64
import json
import pickle
import re
import sys
# typing only for type checkers: importing it costs a Pool ~25 ms of CPU on a
# loaded 2-core machine (annotations are strings here: `from __future__ import
# annotations`), as memvisor_worker does.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, List, Optional, Tuple

from ._errors import (Attempt, PoolError, RemoteError, TaskQuarantined,
                      TaskStats, NotImportable)

PICKLE_PROTOCOL = pickle.HIGHEST_PROTOCOL
MODE_CALL = b"c"
MODE_MAP = b"m"
MODE_STAR = b"s"
MODES = (MODE_CALL, MODE_MAP, MODE_STAR)
KIND_MAX = 255  # bytes, memvisor's limit on a task kind


def _main_has_name() -> bool:
    """Whether a worker can import this process's __main__ (as multiprocessing's spawn does:
    a script file, or a module run with -m); not an interactive session or ``python -c``."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    return bool(getattr(main, "__file__", None) or (spec is not None and spec.name))


def function_token(fn: Callable[..., Any]) -> bytes:
    """The TOKEN of fn (see above). Raises NotImportable when a worker could not import it."""
    if not callable(fn):
        raise TypeError(f"{fn!r} is not callable")
    target = getattr(fn, "func", fn)  # functools.partial: the function it wraps
    what = getattr(target, "__qualname__", None) or repr(target)
    hint = ("memvisor workers import functions by name (module and qualified name), as "
            "multiprocessing's spawn start method does: define it at the top level of a module "
            "or of the main script")
    if getattr(target, "__module__", None) == "__main__" and not _main_has_name():
        raise NotImportable(f"{what} is defined in an interactive session (or python -c), which "
                            f"a worker cannot import: {hint}")
    try:
        raw = pickle.dumps(fn, PICKLE_PROTOCOL)
    except (pickle.PicklingError, AttributeError, TypeError) as exc:
        raise NotImportable(f"{what} cannot be sent to a worker ({exc}): {hint}") from exc
    return base64.b64encode(raw)


def kind_of(fn: Callable[..., Any]) -> str:
    """The task kind memvisor's leak detector judges fn's tasks under: module.qualname."""
    target = getattr(fn, "func", fn)
    module = getattr(target, "__module__", None) or "?"
    if module == "__mp_main__":
        module = "__main__"
    name = getattr(target, "__qualname__", None) or type(target).__qualname__
    kind = f"{module}.{name}"
    raw = kind.encode("utf-8", "replace")[:KIND_MAX]
    return raw.decode("utf-8", "ignore") or "?"


def kind_word(kind: str) -> bytes:
    """A kind as a task line's first word: no blank in it (a qualified name has none, but
    a function's __qualname__ can be set to anything)."""
    return re.sub(rb"\s", b"?", kind.encode("utf-8", "replace")) or b"?"


def encode_task(kind: bytes, token: bytes, mode: bytes, items: Any) -> bytes:
    """One task line, without its newline. kind: kind_word(kind_of(fn))."""
    return b"".join((kind, b" ", token, b" ", mode,
                     base64.b64encode(pickle.dumps(items, PICKLE_PROTOCOL))))


def decode_task(line: bytes) -> Tuple[bytes, bytes, Any]:
    """(token, mode, items) of a task line. Raises ValueError on a line no Pool wrote."""
    kind, sep1, rest = line.partition(b" ")
    token, sep2, rest = rest.partition(b" ")
    mode = rest[:1]
    if not sep1 or not sep2 or not kind or not token or mode not in MODES:
        raise ValueError("not a memvisor.Pool task line (KIND TOKEN MODE PAYLOAD)")
    return token, mode, pickle.loads(base64.b64decode(rest[1:], validate=True))


def encode_done(results: List[Any], seconds: float) -> bytes:
    """The DONE payload: b"SECONDS " and the pickle as Latin-1 text in UTF-8 (see above)."""
    return b"%.9f %s" % (seconds, pickle.dumps(results, PICKLE_PROTOCOL)
                         .decode("latin-1").encode("utf-8"))


def _done(text: str) -> Tuple[Any, Optional[float]]:
    """(results, seconds the function took or None) of a DONE payload."""
    head, _, rest = text.partition(" ")
    if rest[:1] == "\x80":  # pickle's PROTO opcode: the Latin-1 form (base64 has no \x80)
        return pickle.loads(rest.encode("latin-1")), float(head)
    return pickle.loads(base64.b64decode(head, validate=True)), float(rest) if rest else None


def safe_str(exc: BaseException) -> str:
    """str(exc), or what traceback and multiprocessing print when its __str__ raises (that
    must not kill the worker)."""
    try:
        return str(exc)
    except Exception:  # noqa: BLE001 - any __str__ may raise anything
        return "<exception str() failed>"


def encode_fail(exc: BaseException, tb: str) -> bytes:
    """The FAIL payload for an exception raised in a worker, with its traceback text."""
    try:
        pickled: Optional[str] = base64.b64encode(pickle.dumps(exc, PICKLE_PROTOCOL)).decode()
        pickle.loads(base64.b64decode(pickled))  # one that does not come back is sent as text
    except Exception:  # noqa: BLE001 - any exception may fail to pickle, in any way
        pickled = None
    kind = type(exc)
    name = kind.__qualname__ if kind.__module__ == "builtins" else \
        f"{kind.__module__}.{kind.__qualname__}"
    return json.dumps({"type": name, "message": safe_str(exc), "traceback": tb,
                       "exception": pickled}, ensure_ascii=False).encode("utf-8", "replace")


def _failure(error: str) -> BaseException:
    """The exception to raise in the caller for a failed task's error text."""
    try:
        doc = json.loads(error) if error.startswith("{") else None
    except ValueError:
        doc = None
    if not isinstance(doc, dict) or "traceback" not in doc:
        # Not from a Pool worker: memvisor's own verdict (e.g. a task line over max_size).
        return PoolError(f"task failed: {error}")
    tb = str(doc.get("traceback") or "")
    exc: Optional[BaseException] = None
    if doc.get("exception"):
        try:
            exc = pickle.loads(base64.b64decode(doc["exception"]))
        except Exception:  # noqa: BLE001 - e.g. a class this process cannot import
            exc = None
    if not isinstance(exc, BaseException):
        exc = RemoteError(str(doc.get("type")), str(doc.get("message")), tb)
    # multiprocessing's own class, as its Pool sets (code that checks for it, CPython's
    # test_traceback, finds it); imported only here, when a task failed: ~20 ms.
    from multiprocessing.pool import RemoteTraceback
    exc.__cause__ = RemoteTraceback(f'\n"""\n{tb}"""')
    return exc


def _fmt_bytes(n: Optional[int]) -> str:
    if n is None:
        return "?"
    return f"{n / (1 << 20):.1f} MiB"


def _quarantined(obj: dict, stats: TaskStats, index: Optional[int]) -> TaskQuarantined:
    attempts = []
    for a in obj.get("attempt_errors") or []:
        attempts.append(Attempt(str(a.get("reason")), a.get("worker"), a.get("pid"),
                                a.get("signal"), a.get("exit"), a.get("mem_peak")))
    said = "; ".join(
        f"{a.reason}, peak {_fmt_bytes(a.mem_peak)}, "
        + (f"signal {a.signal}" if a.signal is not None else f"exit {a.exit}")
        for a in attempts)
    return TaskQuarantined(
        f"task {stats.task} quarantined: its worker died on each of {len(attempts)} attempts "
        f"({said})", stats.task, attempts, stats, index)


def _int(obj: dict, key: str) -> Optional[int]:
    v = obj.get(key)
    return v if isinstance(v, int) else None


def decode_result(obj: dict, items: int, index: Optional[int],
                  kind: Optional[str] = None) -> Tuple[bool, Any, TaskStats, Optional[float]]:
    """(ok, values or exception, stats, seconds the function took or None) of one result line
    (a dict) of a task of `items` items whose first is at `index` in the input (None for
    apply). kind: its function's (kind_of), which the worker names its answer with and the
    task line starts with; memvisor's for a task with no answer (quarantined) is read from
    that first word, and cuts a numeric suffix from it ("mod.step_2" -> "mod.step"):
    this one is exact."""
    status = str(obj.get("status"))
    dur = obj.get("duration_ms")
    stats = TaskStats(int(obj.get("task") or 0), status, _int(obj, "worker"), _int(obj, "pid"),
                      _int(obj, "attempts") or 0, _int(obj, "mem_before"), _int(obj, "mem_after"),
                      _int(obj, "mem_peak"), _int(obj, "retained"),
                      float(dur) / 1000.0 if isinstance(dur, (int, float)) else 0.0, items,
                      kind if kind is not None else
                      obj.get("kind") if isinstance(obj.get("kind"), str) else None)
    if status == "quarantined":
        return False, _quarantined(obj, stats, index), stats, None
    try:
        if status == "ok":
            values, seconds = _done(obj["result"])
            if not isinstance(values, list) or len(values) != items:
                raise ValueError(f"the worker answered {type(values).__name__}, not a list of "
                                 f"{items} results")
            return True, values, stats, seconds
        error = obj.get("error")
        if error is None and "error_base64" in obj:
            error = base64.b64decode(obj["error_base64"]).decode("utf-8", "replace")
        return False, _failure(str(error)), stats, None
    except Exception as exc:  # noqa: BLE001 - unpickling can raise anything
        err = PoolError(f"task {stats.task}: its answer cannot be read here: "
                        f"{type(exc).__name__}: {exc}")
        err.__cause__ = exc
        return False, err, stats, None
