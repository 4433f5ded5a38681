#!/usr/bin/env python3
"""unbounded_cache: a memoising dict that is never pruned -- a leak.

Every task line is unique, so every task adds an entry of about 64 KiB to a module-level
dict that lives as long as the worker: memory grows by ~64 KiB per task until memvisor
recycles the worker. The kind of leak that a "cache" keyed by request data produces.

    build/memvisor run --tasks examples/python/unbounded_cache.tasks \\
        -- python3 examples/python/unbounded_cache.py

With MEMVISOR_TRACEMALLOC=1 in the environment, the worker's heap snapshots name the line
that allocates the cached values.
"""
import hashlib
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "worker-api", "python"))
import memvisor_worker  # noqa: E402

VALUE_SIZE = 64 * 1024

# Keyed by the whole task line; nothing ever evicts an entry.
_CACHE: dict = {}


def expensive_report(line: str) -> bytes:
    """Stands for an expensive computation: 64 KiB derived from the line."""
    digest = hashlib.sha256(line.encode("utf-8", "surrogateescape")).digest()
    return digest * (VALUE_SIZE // len(digest))


def handle(task: memvisor_worker.Task) -> str:
    key = task.text
    report = _CACHE.get(key)
    if report is None:
        report = _CACHE[key] = expensive_report(key)
    return f"{report[:8].hex()} cached={len(_CACHE)}"


if __name__ == "__main__":
    memvisor_worker.main(handle)
