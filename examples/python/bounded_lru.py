#!/usr/bin/env python3
"""bounded_lru: functools.lru_cache(maxsize=16) -- a cache that warms up, NOT a leak.

The task inputs cycle over 1000 keys and each cached value is ~64 KiB. Memory rises while
the first 16 distinct inputs fill the cache (~1 MiB), then plateaus: every further miss
evicts the least recently used entry. A leak detector must not flag this.

memvisor first judges a kind once [leak] window (50) of its tasks, past each worker's first
[leak] warmup (10) tasks, are in: with two workers sharing the kind, that is when each has
run about 10 + 50 / 2 = 35 tasks. A cache that has stopped growing by then is seen to
plateau. One that is still filling looks exactly like a leak until it stops: give such a
kind a larger window (or warm-up).

    build/memvisor run --tasks examples/python/bounded_lru.tasks \\
        -- python3 examples/python/bounded_lru.py

Compare with lru_unbounded.py, the same cache without a bound.
"""
import functools
import hashlib
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "worker-api", "python"))
import memvisor_worker  # noqa: E402

VALUE_SIZE = 64 * 1024


@functools.lru_cache(maxsize=16)  # bounded: at most 16 values of 64 KiB
def profile(key: str) -> bytes:
    """Stands for an expensive lookup: 64 KiB derived from the key."""
    digest = hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()
    return digest * (VALUE_SIZE // len(digest))


def handle(task: memvisor_worker.Task) -> str:
    data = profile(task.text)
    info = profile.cache_info()
    return f"{data[:8].hex()} cached={info.currsize} hits={info.hits}"


if __name__ == "__main__":
    memvisor_worker.main(handle)
