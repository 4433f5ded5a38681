"""``python3 -m memvisor._worker``: the worker memvisor.Pool runs under memvisor (api protocol).

It runs in three steps around the warm template (``[worker] template = yes``, which the Pool
sets unless told ``template=False``; docs/templates.md): the first step runs once, in the
template, and each worker is forked from it when ``memvisor_worker.Worker()`` connects; the
other two run in each worker. Without a template every worker runs all three.

1. ``bootstrap(spec)``: every import, before the first task: the caller's ``sys.path``, its
   main module (imported as ``__mp_main__`` and aliased as ``__main__``, as multiprocessing's
   spawn start method does, so that functions and classes of the main script unpickle), and
   the modules of the functions the caller submitted first. A failure here is the caller's
   configuration, not a task's: the worker prints the traceback (memvisor logs it, the Pool
   shows it) and exits with the fatal code, so that memvisor ends the run instead of
   respawning a worker that cannot work.
2. ``initialize(spec)``: the Pool's ``initializer(*initargs)``, once per worker (after its
   HELLO: in the worker, not in the template, so that what it opens is the worker's own).
3. ``serve(worker)``: every task: the function is unpickled from the task's
   TOKEN (after its KIND, see _codec) once and cached; each task runs the function on its chunk and answers DONE with the
   pickled results, or FAIL with the exception and its traceback (see _codec). What is not
   an Exception (SystemExit, KeyboardInterrupt) ends the worker, as it ends a program
   (_task_ended_worker).

The spec is a pickle file named by $MEMVISOR_POOL_SPEC, written by the Pool.
"""

from __future__ import annotations

import base64
import importlib
import os
import pickle
import runpy
import sys
import time
import traceback
import types
# typing only for type checkers: importing it costs a Pool ~25 ms of CPU on a
# loaded 2-core machine (annotations are strings here: `from __future__ import
# annotations`), as memvisor_worker does.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, Optional, Tuple

import memvisor_worker

from . import _codec

ENV_SPEC = "MEMVISOR_POOL_SPEC"
_CACHE_MAX = 256  # functions cached (tokens differ only for functools.partial arguments)

# True while bootstrap() imports the caller's main module: a Pool created there (a script
# with no `if __name__ == "__main__":` guard) would start workers that start workers.
bootstrapping = False


def load_spec() -> Dict[str, Any]:
    path = os.environ.get(ENV_SPEC)
    if not path:
        raise RuntimeError(f"${ENV_SPEC} is not set: this module is started by memvisor.Pool")
    with open(path, "rb") as f:
        spec = pickle.load(f)
    if not isinstance(spec, dict):
        raise RuntimeError(f"{path}: not a memvisor.Pool worker spec")
    return spec


def _import_main(spec: Dict[str, Any]) -> None:
    """The caller's main module as __mp_main__ (and __main__), as multiprocessing's spawn
    does: by module name for ``python -m NAME``, else by path; skipped for none."""
    name, path = spec.get("main_name"), spec.get("main_path")
    if name:
        namespace = runpy.run_module(name, run_name="__mp_main__", alter_sys=True)
    elif path:
        namespace = runpy.run_path(path, run_name="__mp_main__")
    else:
        return
    module = types.ModuleType("__mp_main__")
    module.__dict__.update(namespace)
    sys.modules["__main__"] = sys.modules["__mp_main__"] = module


class _AuthkeyOnImport:
    """A finder that sets multiprocessing's authkey once multiprocessing.process is imported
    (its import makes a random one), then leaves sys.meta_path: importing it here to set the
    key would cost every started worker ~20 ms, and most never use multiprocessing."""

    def __init__(self, key: bytes) -> None:
        self.key = key

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name != "multiprocessing.process":
            return None
        sys.meta_path.remove(self)
        import importlib.util  # noqa: PLC0415 - runpy has imported it already
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        load, key = spec.loader.exec_module, self.key

        def exec_module(module: types.ModuleType) -> None:
            load(module)
            module.current_process().authkey = key
        spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def _use_authkey(key: bytes) -> None:
    """The caller's multiprocessing authkey, as spawn gives its children: a manager's proxy
    passed to a worker (in initargs or a task) authenticates with it."""
    process = sys.modules.get("multiprocessing.process")
    if process is not None:
        process.current_process().authkey = key
    elif not any(isinstance(f, _AuthkeyOnImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _AuthkeyOnImport(key))


def bootstrap(spec: Dict[str, Any]) -> None:
    """Step 1: sys.path, the main module, the modules to preload."""
    global bootstrapping
    if spec.get("authkey"):
        _use_authkey(spec["authkey"])
    sys.path[:] = list(spec.get("sys_path") or sys.path)
    if spec.get("sys_argv"):
        sys.argv[:] = spec["sys_argv"]  # the main script may read it at import, as in the caller
    bootstrapping = True
    try:
        _import_main(spec)
    finally:
        bootstrapping = False
    for name in spec.get("preload") or ():
        importlib.import_module(name)


def initialize(spec: Dict[str, Any]) -> None:
    """Step 2: initializer(*initargs), if any."""
    if spec.get("initializer"):
        func, args = pickle.loads(spec["initializer"])
        func(*args)


def _call(fn: Callable[..., Any], mode: bytes, items: Any) -> list:
    if mode == _codec.MODE_CALL:
        args, kwargs = items
        return [fn(*args, **kwargs)]
    results = []
    if mode == _codec.MODE_STAR:
        for item in items:
            results.append(fn(*item))
    else:
        for item in items:
            results.append(fn(item))
    return results


def _not_encoded(exc: Exception, value: Any) -> Exception:
    """What a result that does not pickle raises in the caller: multiprocessing's
    MaybeEncodingError (its reprs of the error and of the value), as multiprocessing's
    worker sends; imported here only then (multiprocessing.pool costs ~20 ms)."""
    from multiprocessing.pool import MaybeEncodingError
    return MaybeEncodingError(exc, value)


def _traceback(exc: BaseException) -> str:
    """The traceback of an exception raised in a task, without this module's frames."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb))


# What an answer carries besides its body: the task kind (a length byte and up to 255
# bytes) and the heap figures (struct mvw_heap, 16 bytes).
_ANSWER_PREFIX_MAX = 1 + _codec.KIND_MAX + 16


def _too_long(body: bytes, limit: int) -> Optional[ValueError]:
    """Why an answer cannot go to memvisor (a payload over [worker] max_message ends the
    worker with a protocol error, and the task is retried until quarantined), or None."""
    if len(body) + _ANSWER_PREFIX_MAX <= limit:
        return None
    return ValueError(
        f"the task's answer is {len(body)} bytes (its results pickled, bytes 0x80-0xff taking "
        f"2), more than memvisor's longest message ([worker] max_message {limit} bytes with "
        f"{_ANSWER_PREFIX_MAX} for the task kind; raise it with Pool(max_message=...), up to "
        f"{memvisor_worker.MAX_PAYLOAD}, or return less)")


def _fail_body(exc: BaseException, tb: str, limit: int) -> bytes:
    """The FAIL answer for exc, cut to fit the limit (its message and traceback ends kept, the
    pickled exception left out) when it does not."""
    body = _codec.encode_fail(exc, tb)
    if len(body) + _ANSWER_PREFIX_MAX <= limit:
        return body
    keep = max(256, (limit - _ANSWER_PREFIX_MAX) // 8)  # JSON escapes take up to 6 bytes
    cut = RuntimeError(f"{type(exc).__name__} (its answer, {len(body)} bytes, was too long "
                       f"for [worker] max_message; message cut): {_codec.safe_str(exc)[:keep]}")
    return _codec.encode_fail(cut, tb[-keep:])


def serve(worker: memvisor_worker.Worker, limit: int = memvisor_worker.MAX_PAYLOAD) -> None:
    """Step 3: every task until memvisor says STOP. limit: memvisor's [worker] max_message
    (an answer must fit it)."""
    cache: Dict[bytes, Tuple[Callable[..., Any], str]] = {}
    with worker:
        while True:
            task = worker.next_task()
            if task is None:
                return
            _serve_one(worker, task, cache, limit)
            # Not held while the next is awaited: a big task's bytes (and its decoded
            # arguments, gone with _serve_one) are no longer the worker's when its answer ends.
            del task


def _serve_one(worker: memvisor_worker.Worker, task: memvisor_worker.Task,
               cache: Dict[bytes, Tuple[Callable[..., Any], str]], limit: int) -> None:
    """One task, answered. A function of its own so that its results and their pickled bytes
    are freed when it returns: a big answer's last byte goes out when the worker is back for
    its next task, and memvisor's reading then (mem_after) must not hold them."""
    try:
        token, mode, items = _codec.decode_task(task.data)
        entry = cache.get(token)
        if entry is None:
            if len(cache) >= _CACHE_MAX:
                cache.clear()
            fn = pickle.loads(base64.b64decode(token))
            entry = cache[token] = (fn, _codec.kind_of(fn))
        task.kind = entry[1]
        start = time.perf_counter()
        results = _call(entry[0], mode, items)
        try:
            body = _codec.encode_done(results, time.perf_counter() - start)
        except Exception as exc:  # noqa: BLE001 - pickling a result can raise anything
            raise _not_encoded(exc, results[0] if mode == _codec.MODE_CALL else results)
        del results
        too_long = _too_long(body, limit)
        if too_long is not None:
            body = b""
            raise too_long
    except Exception as exc:  # noqa: BLE001 - any error fails its task only
        worker.fail(_fail_body(exc, _traceback(exc), limit))
    else:
        worker.done(body)


def _task_ended_worker(exc: BaseException) -> int:
    """A task raised what is not an Exception (SystemExit, KeyboardInterrupt, a
    BaseException of its own): it ends this worker, as it would end a Python program: the
    traceback on stderr (memvisor logs it, the Pool shows it) and Python's exit status
    (SystemExit's code; 1, or SIGINT for KeyboardInterrupt, otherwise). The task is retried as
    after any crash. Said here, whichever way the worker started: in a worker forked from a
    template the Pool forked (memvisor._handoff), it escaped into subprocess's preexec_fn,
    which exits 255 without a word. Returns the exit code; kills itself for
    KeyboardInterrupt."""
    name = type(exc).__qualname__ if type(exc).__module__ == "builtins" else \
        f"{type(exc).__module__}.{type(exc).__qualname__}"
    code = 1
    if isinstance(exc, SystemExit):
        if exc.code is None:
            code = 0
        elif isinstance(exc.code, int):
            code = exc.code & 0xFF
        else:
            print(exc.code, file=sys.stderr)
    else:
        sys.stderr.write(_traceback(exc))
    what = f"the task raised {name}, which is not an Exception: it ends" \
        if not isinstance(exc, Exception) else f"{name} ends"  # not a task's: serve's own
    print(f"memvisor.Pool worker: {what} the worker "
          f"(exit {'SIGINT' if isinstance(exc, KeyboardInterrupt) else code}) and its task "
          f"counts as crashed (retried up to max_attempts)", file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    if isinstance(exc, KeyboardInterrupt):
        import signal  # noqa: PLC0415 - only this end needs it
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    return code


def cannot_start() -> None:
    """The start-up failed: the traceback for the Pool to show, and the fatal code (memvisor
    ends the run instead of respawning a worker that cannot work)."""
    traceback.print_exc()
    print("memvisor.Pool worker: could not start (above): the pool stops", file=sys.stderr)
    sys.stderr.flush()
    os._exit(memvisor_worker.EXIT_FATAL)


def main(spec: Optional[Dict[str, Any]] = None) -> None:
    """The worker's (or template's) whole life. spec: given by a template forked from the
    caller (_handoff), else read from $MEMVISOR_POOL_SPEC."""
    # Run with -m, this module is __main__; under its own name too, so that a Pool created
    # while bootstrap() imports the caller's main module finds `bootstrapping` set.
    sys.modules.setdefault(__spec__.name if __spec__ else "memvisor._worker",
                           sys.modules[__name__])
    try:
        if spec is None:
            spec = load_spec()
        bootstrap(spec)
    except BaseException:  # noqa: BLE001 - whatever it is, this worker cannot work
        cannot_start()
    code = 0
    try:
        # With a template, this process forks here and each worker returns on its own.
        worker = memvisor_worker.Worker()
        # Stopped already: a template memvisor retired (it returns from Worker() so, not as a
        # worker), or a worker stopped before its first task. No initializer: it ran in the
        # retiring template of a pool ending (a manager's counter of initializer calls said 2
        # for a 1-worker pool, test_pool Proxies, ~3 runs in 100).
        if not worker.stop_requested:
            try:
                initialize(spec)
            except BaseException:  # noqa: BLE001 - as above
                cannot_start()
        serve(worker, int(spec.get("max_message") or memvisor_worker.MAX_PAYLOAD))
    except memvisor_worker.MemvisorError as exc:
        print(f"memvisor.Pool worker: {exc}", file=sys.stderr)
        code = 1
    except BaseException as exc:  # noqa: BLE001 - a task's SystemExit, KeyboardInterrupt...
        code = _task_ended_worker(exc)
    # As multiprocessing's workers end: no interpreter teardown (a leaky heap's objects freed
    # one by one, atexit handlers): the replacement waits for this exit.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
