"""CPython's own tests of multiprocessing.Pool, run against memvisor.Pool.

Debian's libpython3.X-testsuite ships the suite (test/_test_multiprocessing.py). Its Pool
tests are mixins (_TestPool, _TestPoolWorkerErrors, _TestPoolWorkerLifetime, ...) made into
test cases by install_tests_in_module_dict, one per "type" (processes, threads, manager),
with the type's mixin supplying `self.Pool`. Here the processes type's Pool, and
multiprocessing.Pool itself (some tests call it directly), make a memvisor.Pool; the
functions the tests submit (sqr, mul, identity, ...) live in test._test_multiprocessing,
which the workers import by name, and the classes' own (classmethods) in this script, which
the workers import as __mp_main__, as multiprocessing's spawn does.

A test that differs by design is skipped with its reason (EXPECTED_SKIPS: (b) a difference
docs/python.md names, (c) a test of multiprocessing's internals); any other failure or
error fails the run. `make check-mp` runs it.

    MEMVISOR_BIN=build/memvisor python3 tests/python/mp_suite.py [-v] [--no-skips] [-k PATTERN]

--no-skips runs the expected skips too (to see how they fail).
"""

import functools
import multiprocessing
import multiprocessing.pool
import os
import shutil
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.normpath(os.path.join(HERE, "..", ".."))
MODULE_DIR = os.path.join(SOURCE, "worker-api", "python")
sys.path.insert(0, MODULE_DIR)
os.environ.setdefault("MEMVISOR_BIN", os.path.join(SOURCE, "build", "memvisor"))

import memvisor  # noqa: E402
import memvisor._pool as memvisor_pool_module  # noqa: E402

try:
    from test import _test_multiprocessing as tm  # noqa: E402
    from test.support import script_helper  # noqa: E402
except ImportError:  # pragma: no cover - the package is missing
    tm = None

# The Pool classes of the suite, and the unittest.TestCase classes that test a Pool through
# multiprocessing.Pool. Not TestPoolNotLeakOnFailure: it makes multiprocessing.pool.Pool
# itself, with a mock context, and would pass whatever memvisor.Pool does.
MIXINS = ("_TestPool", "_TestPoolWorkerErrors", "_TestPoolWorkerLifetime")
CASES = {"TestInitializers": ("test_pool_initializer",),
         "TestStdinBadfiledescriptor": ("test_pool_in_process",)}

# test id (Class.method) -> (class, reason). (b): a difference docs/python.md names;
# (c): the test reads or patches multiprocessing's internals.
EXPECTED_SKIPS = {
    "WithProcessesTestPool.test_make_pool":
        ("c", "counts p._pool, multiprocessing's list of worker processes (its first half, "
              "Pool(0) and Pool(-1) raising ValueError, passes)"),
    "WithProcessesTestPool.test_resource_warning":
        ("c", "sets p._state to multiprocessing.pool.RUN and waits for multiprocessing's "
              "'unclosed running multiprocessing pool' ResourceWarning from __del__"),
    "WithProcessesTestPoolWorkerLifetime.test_pool_worker_lifetime":
        ("c", "reads p._pool's Process objects and calls p._repopulate_pool() "
              "(test_pool covers max_tasks replacing workers, by memvisor's events)"),
    "TestInitializers.test_pool_initializer":
        ("b", "workers start at the first task: a pool closed without one never runs its "
              "initializer (docs/python.md, What differs)"),
}

STATE = None  # the state directory of every pool made here (removed at the end)
_PYTHON_OK = script_helper.assert_python_ok if tm is not None else None


def memvisor_pool(processes=None, initializer=None, initargs=(), maxtasksperchild=None,
                  context=None, **kw):
    """multiprocessing.Pool's signature, making a memvisor.Pool."""
    if context is not None:
        raise TypeError("memvisor.Pool takes no multiprocessing context")
    kw.setdefault("state_dir", STATE)
    return memvisor.Pool(processes, initializer, initargs, maxtasksperchild, **kw)


def install(globs):
    """The suite's Pool test cases, processes type only, in globs (this module)."""
    if tm is None:
        return
    tm.ProcessesMixin.Pool = staticmethod(memvisor_pool)
    sub = {"__name__": globs["__name__"]}
    tm.install_tests_in_module_dict(sub, "fork")
    for name in MIXINS:
        cls = sub["WithProcesses" + name[1:]]
        cls.__module__ = globs["__name__"]
        globs[cls.__name__] = cls
    for name in CASES:
        cls = sub[name]
        cls.__module__ = globs["__name__"]
        globs[name] = cls


install(globals())


def _python_ok_with_memvisor(*args, **env):
    """script_helper.assert_python_ok for a script of the suite, with `from multiprocessing
    import Pool` made memvisor's (the script runs isolated, -I, in the suite: memvisor would
    not be importable)."""
    args = [a.replace("from multiprocessing import Pool", "from memvisor import Pool")
            if isinstance(a, str) else a for a in args]
    env.setdefault("PYTHONPATH", MODULE_DIR)
    env.setdefault("__isolated", False)
    return _PYTHON_OK(*args, **env)


def load(names=None, no_skips=False):
    loader = unittest.TestLoader()
    suite = unittest.TestSuite()
    for cls_name in [("WithProcesses" + m[1:]) for m in MIXINS] + list(CASES):
        cls = globals()[cls_name]
        wanted = CASES.get(cls_name)
        for method in loader.getTestCaseNames(cls):
            if wanted is not None and method not in wanted:
                continue
            test_id = f"{cls_name}.{method}"
            if names and not any(n in test_id for n in names):
                continue
            if test_id in EXPECTED_SKIPS and not no_skips:
                kind, why = EXPECTED_SKIPS[test_id]
                fn = getattr(cls, method)

                @functools.wraps(fn)
                def skipped(self, _why=f"({kind}) {why}"):
                    self.skipTest(_why)
                setattr(cls, method, skipped)
            suite.addTest(cls(method))
    return suite


def main(argv):
    global STATE
    if tm is None:
        print("mp_suite: test._test_multiprocessing is missing (Debian: apt-get install "
              f"libpython3.{sys.version_info[1]}-testsuite)", file=sys.stderr)
        return 2
    verbosity = 2 if "-v" in argv else 1
    no_skips = "--no-skips" in argv
    names = [argv[i + 1] for i, a in enumerate(argv) if a == "-k" and i + 1 < len(argv)]
    STATE = tempfile.mkdtemp(prefix="mv-mp-suite-")
    multiprocessing.Pool = memvisor_pool  # the tests that call it directly
    script_helper.assert_python_ok = _python_ok_with_memvisor
    # Leaks: every process started here (memvisor, workers, the suite's own children) carries
    # a marker in its environment, and every temporary file goes to a private directory.
    marker = f"{os.getpid()}-{os.urandom(4).hex()}"
    os.environ["MV_MP_SUITE"] = marker
    os.environ["TMPDIR"] = tempfile.tempdir = os.path.join(STATE, "tmp")
    os.mkdir(tempfile.tempdir)
    try:
        result = unittest.TextTestRunner(verbosity=verbosity).run(load(names, no_skips))
        memvisor_pool_module._terminate_live_pools()  # a test that failed left its pool
        leaks = _leaks(marker)
    finally:
        script_helper.assert_python_ok = _PYTHON_OK
        shutil.rmtree(STATE, ignore_errors=True)
    for leak in leaks:
        print(f"mp_suite: leaked: {leak}", file=sys.stderr)
    total = result.testsRun
    skipped = len(result.skipped)
    bad = len(result.failures) + len(result.errors) + len(result.unexpectedSuccesses)
    print(f"mp_suite: {total - skipped - bad} passed, {skipped} skipped by design, "
          f"{bad} failed, {total} in all", file=sys.stderr)
    return 0 if result.wasSuccessful() and not leaks else 1


def _leaks(marker):
    """Processes still alive with the marker in their environment, and what is left in the
    private temporary directory (pools' FIFOs and specs, the suite's own files)."""
    left = []
    want = f"MV_MP_SUITE={marker}".encode()
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                env = f.read().split(b"\0")
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        if want in env:
            left.append(f"process {pid}: {cmd[:120]}")
    for name in sorted(os.listdir(tempfile.tempdir)):
        left.append(f"temporary file {os.path.join(tempfile.tempdir, name)}")
    return left


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
