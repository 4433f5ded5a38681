"""Functions the memvisor.Pool tests (test_pool.py) run in workers: importable by name, as
workers need them. The same ones run in multiprocessing.Pool for comparison."""

import os
import sys
import threading
import time

KEPT = []  # what the leaking functions keep: this worker's leak
INIT = {}


def sq(x):
    return x * x


def add(a, b):
    return a + b


def call(a, b=0, *, c=0):
    return (a, b, c)


def fail_on(x, bad=3):
    if x == bad:
        raise ValueError(f"item {x} is bad")
    return x


def _inner(x):
    raise KeyError(f"deep {x}")  # THE RAISE


def raises_deep(x):
    return _inner(x)


class NeedsArgs(Exception):
    """An exception that does not unpickle: its __init__ wants a keyword-only argument."""

    def __init__(self, message, *, code):
        super().__init__(message)
        self.code = code


def raises_unpicklable(x):
    raise NeedsArgs(f"no way back {x}", code=7)


def returns_a_lock(x):
    return threading.Lock()


def slow(x, seconds=5.0):
    time.sleep(seconds)
    return x


def pid(x):
    return os.getpid()


def leak_mib(x):
    """Keeps 1 MiB per task, touched, so that the worker's private memory grows."""
    KEPT.append(bytearray(b"x" * (1 << 20)))
    return x * 3


def leak_64k(x):
    KEPT.append(bytearray(b"y" * (64 << 10)))
    return x


class Kept:
    """What leak_kept keeps, one a call: a type a snapshot's census can name."""


def leak_kept(x):
    KEPT.append((Kept(), bytearray(b"k" * (64 << 10))))
    return x


def keep_mib(n):
    KEPT.append(bytearray(b"z" * (n << 20)))
    return n


def hog_on(x, poison=5):
    """Item `poison` grows by 4 MiB (touched) every 10 ms up to 512 MiB: past any test hard
    limit, slowly enough that sampling /proc (no cgroups) sees it too."""
    if x == poison:
        blocks = []
        for _ in range(128):
            blocks.append(bytearray(b"h" * (4 << 20)))
            time.sleep(0.01)
        return len(blocks)
    return x * 2


def note_and_sleep(directory, x):
    """Says it started (a file named after its pid) and sleeps: a task to be killed."""
    with open(os.path.join(directory, str(os.getpid())), "w") as f:
        f.write(str(x))
    time.sleep(60)
    return x


def chatty(x):
    print(f"chatty says {x}", flush=True)
    return x


def init_set(value):
    INIT["value"] = value


def init_get(x):
    return (INIT.get("value"), x)


def init_fail(value):
    raise RuntimeError(f"initializer refuses {value}")


def parent(x):
    return os.getppid()


def environ(*names):
    return [os.environ.get(n) for n in names]


def every_byte(x):
    """Results whose pickle holds every byte value (NUL, controls, 0x80-0xff) and text that is
    not ASCII."""
    return (bytes(range(256)) * x, "\u00e9\x00\n\U0001f600" * x, float(x) / 3, -x << 70)


class NoStr(Exception):
    """An exception whose __str__ raises (traceback prints "<exception str() failed>")."""

    def __str__(self):
        raise RuntimeError("no str for you")


def raises_no_str(x):
    raise NoStr(x)


class NotAnException(BaseException):
    """Raised by a task: not an Exception, so it ends the worker as SystemExit does."""


def raises_base(x):
    """x: what the task raises (an exit code for SystemExit, "kbi", or "base"); 0 returns."""
    if x == "kbi":
        raise KeyboardInterrupt("kbi in task")
    if x == "base":
        raise NotAnException("base in task")
    if x:
        sys.exit(x)
    return x


def big_bytes(spec):
    """(value, MiB): bytes of that value, MiB long: a result near or over max_message."""
    value, mib = spec
    return bytes((value,)) * (mib << 20)


def fail_long(mib):
    raise ValueError("m" * (mib << 20))


def _own_memory():
    """(private bytes as memvisor reads them: statm's resident - shared, free bytes glibc's
    allocator holds: mallinfo2's fordblks, live bytes it handed out: uordblks + hblkhd; -1
    when unknown)."""
    import memvisor_worker  # a memvisor.Pool worker runs it: its mallinfo2 through ctypes

    with open("/proc/self/statm") as f:
        fields = f.read().split()
    private = (int(fields[1]) - int(fields[2])) * os.sysconf("SC_PAGE_SIZE")
    fn = memvisor_worker._mallinfo2()
    if not fn:
        return private, -1, -1
    mi = fn()
    return private, mi.fordblks, mi.uordblks + mi.hblkhd


def given_mib(data):
    """Keeps nothing of a big argument and returns its length with its own figures at its
    start and end ((private, free, live heap bytes), as _own_memory)."""
    start = _own_memory()
    end = _own_memory()
    return start, end, len(data)


def answer_mib(mib):
    """Keeps nothing and returns MIB MiB: its own figures at its start and before it made the
    result ((private, free, live heap bytes), as _own_memory), then the result's bytes."""
    start = _own_memory()
    end = _own_memory()
    return start, end, b"a" * (mib << 20)


class Counted:
    """Counts its live instances in this process (copies unpickled here count too)."""

    alive = 0

    def __new__(cls):
        cls.alive += 1
        return object.__new__(cls)

    def __del__(self):
        type(self).alive -= 1


def same(x):
    return x


def init_ns(ns):
    ns.inits += 1


def ns_add(ns, x):
    ns.total += x
    return x


def write_fd(fd, x):
    """Writes to fd `fd` of the caller's (a pipe a module opened at its import): in a worker
    of a template forked from the caller, it is /dev/null there, never the channel."""
    os.write(fd, b"%d\n" % x)
    return x
