#!/usr/bin/env python3
"""line_worker: a `protocol = lines` worker in plain Python (stdlib only).

memvisor writes one task line to stdin and reads one result line from stdout; stderr goes to
memvisor's log. A line starting with "fail" is answered "FAIL: reason".

    memvisor run -o worker.protocol=lines --tasks examples/tasks.txt -- examples/line_worker.py
"""
import hashlib
import sys


def main():
    # Task lines are bytes: keep undecodable ones intact instead of dying on them.
    # newline="\n": a lone "\r" inside a task must not split it into two lines.
    sys.stdin.reconfigure(errors="surrogateescape", newline="\n")
    sys.stdout.reconfigure(errors="surrogateescape", line_buffering=False)
    try:
        for line in sys.stdin:
            line = line.rstrip("\n")
            if line.startswith("fail"):
                reason = line[4:].strip() or "asked to fail"
                out = "FAIL: " + reason
            else:
                digest = hashlib.sha256(line.encode("utf-8", "surrogateescape")).hexdigest()
                out = "words=%d sha256=%s" % (len(line.split()), digest[:16])
            sys.stdout.write(out + "\n")
            sys.stdout.flush()  # lock-step: memvisor waits for this line
    except (BrokenPipeError, KeyboardInterrupt):
        # memvisor went away or stopped us: nothing left to answer.
        sys.stderr.close()
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
