#!/usr/bin/env python3
"""mixed: two task kinds in one worker, and only one of them leaks.

The first word of a task line names its kind, and the worker says so explicitly
(task.kind), so memvisor can attribute memory growth to a kind across all workers:

  parse ...   parses key=value pairs and keeps a ParsedRecord with a 64 KiB copy of the
              payload in a module-level list that nothing ever clears -- the leak (see
              _SEEN.append below);
  render ...  formats a report from its arguments and keeps nothing.

    build/memvisor run --tasks examples/python/mixed.tasks -- python3 examples/python/mixed.py

With MEMVISOR_TRACEMALLOC=1 in the environment, the worker's heap snapshot names the
_SEEN.append line as the allocation site that grows, and ParsedRecord as the type.
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "worker-api", "python"))
import memvisor_worker  # noqa: E402

class ParsedRecord:
    """What parse keeps of a task: its fields and a 64 KiB copy of its payload."""

    def __init__(self, fields: dict, payload: bytes) -> None:
        self.fields = fields
        self.payload = payload


# "Seen" records, kept for a de-duplication that never happens: only ever appended to.
_SEEN = []


def parse(args: str) -> str:
    fields = dict(item.partition("=")[::2] for item in args.split())
    payload = args.encode("utf-8", "surrogateescape").ljust(64)[:64]
    _SEEN.append(ParsedRecord(fields, payload * 1024))  # the leak: ~64 KiB per parse task
    return f"parsed {len(fields)} fields"


def render(args: str) -> str:
    words = args.split()
    table = "\n".join(f"{i:>4} | {w:<16} | {len(w):>3} | {w.upper():^20}"
                      for i, w in enumerate(words * 20))
    return f"rendered {len(words)} words into {len(table)} characters"


HANDLERS = {"parse": parse, "render": render}


def handle(task: memvisor_worker.Task) -> str:
    kind, _, args = task.text.partition(" ")
    handler = HANDLERS.get(kind)
    if handler is None:
        raise ValueError(f"unknown task kind {kind!r}")
    task.kind = kind
    return handler(args)


if __name__ == "__main__":
    memvisor_worker.main(handle)
