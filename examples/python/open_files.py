#!/usr/bin/env python3
"""open_files: a file opened per task and never closed -- a file descriptor leak.

Each task opens this script for reading and keeps the file object in a module-level list,
so CPython never closes it: the worker holds one more descriptor after every task while its
memory hardly grows. memvisor counts open fds before and after each task (fds_before,
fds_after in the results), because handle leaks are leaks too.

    build/memvisor run --tasks examples/python/open_files.tasks \\
        -- python3 examples/python/open_files.py
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "worker-api", "python"))
import memvisor_worker  # noqa: E402

# Referenced forever: a file object that is collected would close its descriptor.
_OPEN = []


def handle(task: memvisor_worker.Task) -> str:
    f = open(__file__, "rb")  # the leak: never closed
    _OPEN.append(f)
    first = f.readline().strip()
    return f"{task.text.split(' ', 1)[0]} read={len(first)} open={len(_OPEN)}"


if __name__ == "__main__":
    memvisor_worker.main(handle)
