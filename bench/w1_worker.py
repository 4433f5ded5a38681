"""W1's task as a worker of the Python module (bench/w1.py): each task is a number n; the
answer is the SHA-256 of a 1 KiB buffer made from n, and 64 KiB (touched) are kept for good
(the leak). The imports are the start-up a warm template runs once."""

import hashlib
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "worker-api",
                                "python"))
import memvisor_worker  # noqa: E402

KEPT = []


def leaky(task):
    buf = int(task.data).to_bytes(8, "little") * 128
    KEPT.append(buf * 64)
    return hashlib.sha256(buf).hexdigest()


memvisor_worker.main(leaky)
