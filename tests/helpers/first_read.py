"""first_read.py: a raw `api` worker (no library) that reports what its first read after
HELLO held: tests/check_e2e.c's a_new_worker_reads_go_and_its_first_task_at_once.

It says HELLO (protocol 2, no template), reads once at once (a blocking read: it returns
with the first bytes that arrive), and answers each TASK in that read with "msgs=N
types=T1,T2,..." (the messages of that first read), every later TASK with "later". One write
of GO and the task arrives whole, so the answer is "msgs=2 types=2,3" every time.
"""

import os
import socket
import struct

HEADER = struct.Struct("=IHHQ")
sock = socket.socket(fileno=int(os.environ["MEMVISOR_FD"]))
sock.sendall(HEADER.pack(8, 1, 0, 0) + struct.pack("=II", 2, 0))
first = sock.recv(65536)
buf, note, stop = first, None, False
while not stop:
    msgs = []
    while len(buf) >= HEADER.size:
        n, mtype, _flags, task = HEADER.unpack_from(buf)
        if len(buf) < HEADER.size + n:
            break
        msgs.append((mtype, task))
        buf = buf[HEADER.size + n:]
    if note is None:
        note = f"msgs={len(msgs)} types={','.join(str(t) for t, _ in msgs)}"
        answer = note
    else:
        answer = "later"
    for mtype, task in msgs:
        if mtype == 6:  # STOP
            stop = True
        elif mtype == 3:  # TASK
            body = answer.encode()
            sock.sendall(HEADER.pack(len(body), 4, 0, task) + body)
    if not stop:
        more = sock.recv(65536)
        if not more:
            break
        buf += more
