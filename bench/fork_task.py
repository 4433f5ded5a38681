"""fork_task.py: the Python task of bench/fork_per_task.py, both ways (as bench/fork_task.c).

With an argument it is the peer's program: one task (the argument), its answer on stdout
(xargs runs one python3 per task). Without, it is a worker of the Python module: the same
answer for every task memvisor sends. The task: the SHA-256 of the task's text, in hex. The
imports are the start-up, which a warm template runs once.
"""

import hashlib
import os
import sys


def answer(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()



def ceiling():
    running = 0
    sys.stdout.flush()
    for line in sys.stdin:
        if running == 2:
            os.wait()
            running -= 1
        if os.fork() == 0:
            os.write(1, (answer(line.rstrip("\n")) + "\n").encode())
            os._exit(0)
        running += 1
    while running:
        os.wait()
        running -= 1


if len(sys.argv) > 1 and sys.argv[1] != "--ceiling":
    print(answer(sys.argv[1]))
    sys.exit(0)

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "worker-api",
                                "python"))
import memvisor_worker  # noqa: E402

if len(sys.argv) > 1:
    import gc
    gc.freeze()
    ceiling()
    sys.exit(0)

memvisor_worker.main(lambda task: answer(task.text))
