#!/usr/bin/env python3
"""pyworker: the Python worker of the labelled leak suite, in either protocol.

    memvisor run -o worker.protocol=lines --tasks T -- python3 tests/leaks/pyworker.py lines
    memvisor run --tasks T -- python3 tests/leaks/pyworker.py api

A task line is "KIND N ARG"; KIND is one of scenarios.KINDS, and the kind memvisor
attributes the task to: the first word (lines, `[leak] kind = word`) or task.kind (api).
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "..", "worker-api", "python"))

import scenarios  # noqa: E402


def work(text):
    kind, n, arg = text.split()
    return scenarios.KINDS[kind][0](int(n), int(arg))


def lines():
    try:
        for line in sys.stdin:
            sys.stdout.write(work(line) + "\n")
            sys.stdout.flush()  # lock-step: memvisor waits for this line
    except (BrokenPipeError, KeyboardInterrupt):
        sys.stderr.close()  # memvisor went away or stopped us
    return 0


def api():
    import memvisor_worker

    def handle(task):
        task.kind = task.text.split(" ", 1)[0]
        return work(task.text)

    memvisor_worker.main(handle)
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in ("lines", "api"):
        sys.exit("usage: pyworker.py lines|api")
    sys.exit(lines() if sys.argv[1] == "lines" else api())
