#!/usr/bin/env python3
"""lru_unbounded: functools.lru_cache(maxsize=None) on unique inputs -- a leak.

An lru_cache without a size bound is a dict that only grows. Every task input here is
unique, so every call stores another ~64 KiB value and the worker's memory rises with every
task until memvisor recycles it.

    build/memvisor run --tasks examples/python/lru_unbounded.tasks \\
        -- python3 examples/python/lru_unbounded.py

Compare with bounded_lru.py, where maxsize=64 makes the same cache plateau.
"""
import functools
import hashlib
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "worker-api", "python"))
import memvisor_worker  # noqa: E402

VALUE_SIZE = 64 * 1024


@functools.lru_cache(maxsize=None)  # the leak: no bound
def thumbnail(source: str) -> bytes:
    """Stands for a rendered thumbnail: 64 KiB derived from its source."""
    digest = hashlib.sha256(source.encode("utf-8", "surrogateescape")).digest()
    return digest * (VALUE_SIZE // len(digest))


def handle(task: memvisor_worker.Task) -> str:
    data = thumbnail(task.text)
    info = thumbnail.cache_info()
    return f"{data[:8].hex()} cached={info.currsize} hits={info.hits}"


if __name__ == "__main__":
    memvisor_worker.main(handle)
