"""A module that opens a file when it is imported and writes to it in each task, as a module
with a logging file handler does (test_pool's FdThree: in the test's process that file is on
fd 3 or 4, the numbers an exec'd worker's channel and heap page have)."""

import os
import sys

LOG = open(os.environ["POOL_FD3_LOG"], "a", encoding="utf-8")


def note(x):
    LOG.write(f"{x}\n")
    LOG.flush()
    return x


def where(x):
    """note(x), then what this worker has: its pid, the fd number $MEMVISOR_FD names and what
    is there, what LOG's fd is, and whether a template forked it (an exec'd worker never
    loads memvisor_template)."""
    note(x)
    chan = int(os.environ["MEMVISOR_FD"])
    return {"x": x, "pid": os.getpid(), "chan": chan,
            "chan_is": os.readlink(f"/proc/self/fd/{chan}"), "log_fd": LOG.fileno(),
            "log_is": os.readlink(f"/proc/self/fd/{LOG.fileno()}"),
            "from_template": "memvisor_template" in sys.modules}
