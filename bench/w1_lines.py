"""W1's task as a `lines` worker (bench/w1.py): a number per line in, its SHA-256 answer per
line out (flushed: memvisor waits for it), 64 KiB kept for good per task."""

import hashlib
import sys

KEPT = []
out = sys.stdout
for line in sys.stdin:
    buf = int(line).to_bytes(8, "little") * 128
    KEPT.append(buf * 64)
    out.write(hashlib.sha256(buf).hexdigest() + "\n")
    out.flush()
