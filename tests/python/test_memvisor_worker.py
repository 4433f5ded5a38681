"""Tests of worker-api/python/memvisor_worker.py against a fake memvisor.

Each test plays memvisor on one end of a real socketpair, with struct-packed messages, and
runs the worker in a child process that gets the other end through MEMVISOR_FD (pass_fds).
Every wait is bounded: socket reads time out, child processes are waited for with a
timeout and killed in tearDown. Nothing sleeps to synchronise: a test that needs the worker
to be inside a task has the task tell it so on a pipe.

    python3 -m unittest -v tests/python/test_memvisor_worker.py
"""

import importlib.util
import json
import os
import re
import select
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import unittest
from unittest import mock

HERE = os.path.dirname(os.path.abspath(__file__))
MODULE_DIR = os.path.normpath(os.path.join(HERE, "..", "..", "worker-api", "python"))
sys.path.insert(0, MODULE_DIR)

import memvisor_worker as mw  # noqa: E402

TIMEOUT = 10.0  # seconds any single wait may take

HEADER = struct.Struct("=IHHQ")
HELLO = 1
GO = 2
TASK = 3
DONE = 4
FAIL = 5
STOP = 6
BEGIN = 7
END = 8
SNAPSHOT = 9
F_KIND = 1
F_HEAP = 2
F_COLLECT = 4
GO_HEAP = 0x100

# The worker side. Written to a file so that tracemalloc names a real file:line.
CHILD = r'''
import json, os, sys
sys.path.insert(0, sys.argv[2])
import memvisor_worker as mw

KEEP = []
W = None


class Leaky:
    pass


def handle(task):
    word, _, rest = task.data.partition(b" ")
    if word == b"kind":
        kind, _, rest = rest.partition(b" ")
        task.kind = kind.decode()
        word, _, rest = rest.partition(b" ")
    if word == b"raise":
        raise ValueError(rest.decode())
    if word == b"leak":
        KEEP.append(bytearray(65536))  # THE LEAK
        return None
    if word == b"obj":
        KEEP.append(Leaky())
        return None
    if word == b"cycle":  # 1 MiB only the cyclic collector frees
        a, b = Leaky(), Leaky()
        a.other, b.other, a.data = b, a, bytearray(1 << 20)
        return None
    if word == b"text":
        return task.text
    if word == b"big":
        return b"x" * int(rest)
    if word == b"int":
        return 42
    if word == b"dict":
        return {"word": rest.decode(), "n": [1, 2.5, None, True], "caf\u00e9": {}}
    if word == b"list":
        return [rest.decode(), 1, ("tuple", "too")]
    if word == b"badjson":
        return {"x": object()}
    if word == b"deep":
        return recurse(int(rest))
    if word == b"huge":
        raise RuntimeError("y" * int(rest))
    if word == b"gate":  # tell the test we are in the task, wait for its go-ahead
        sys.stdout.write("in task\n")
        sys.stdout.flush()
        sys.stdin.readline()
        return b"gated"
    if word == b"probe":  # from now on, a line on stdin asks what was allocated since
        import threading, tracemalloc
        tracemalloc.start()
        mark = tracemalloc.get_traced_memory()[0]

        def report():
            for _ in sys.stdin:
                sys.stdout.write("%d\n" % (tracemalloc.get_traced_memory()[0] - mark))
                sys.stdout.flush()
        threading.Thread(target=report, daemon=True).start()
        return b"probing"
    if word == b"closefd":  # the handler closes the channel's fd under the worker
        os.close(int(os.environ["MEMVISOR_FD"]))
        return b"closed"
    if word == b"info":
        return json.dumps({"slot": W.slot, "prefetch": W.prefetch, "mode": W.mode,
                           "inheritable": os.get_inheritable(W.fileno())})
    return task.data


def recurse(n):
    if n == 0:
        raise KeyError("bottom")  # THE BOTTOM
    return recurse(n - 1)


def service():
    import selectors
    W.begin("req")
    W.end(0)
    W.begin()
    W.end(7)
    sel = selectors.DefaultSelector()
    sel.register(W.fileno(), selectors.EVENT_READ)
    while not W.poll():
        sel.select()


def explicit():
    for task in W:
        try:
            result = handle(task)
        except ValueError as exc:
            W.fail(str(exc))
        else:
            W.done(result)


def main():
    global W
    mode = sys.argv[1]
    if os.environ.get("TEST_SIGPIPE_DFL"):  # as an application that restores it might
        import signal
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    if mode == "main":
        mw.main(handle)
    try:
        W = mw.Worker()
        if mode == "run":
            W.run(handle)
        elif mode == "iter":
            explicit()
        elif mode == "service":
            service()
        W.close()
    except mw.SupervisorGone as exc:
        print("SupervisorGone:", exc, file=sys.stderr)
        return 10
    except mw.ProtocolError as exc:
        print("ProtocolError:", exc, file=sys.stderr)
        return 11
    except mw.NotUnderMemvisor as exc:
        print("NotUnderMemvisor:", exc, file=sys.stderr)
        return 12
    return 0


sys.exit(main())
'''
LEAK_LINE = next(i for i, line in enumerate(CHILD.split("\n"), 1) if "THE LEAK" in line)
RAISE_LINE = next(i for i, line in enumerate(CHILD.split("\n"), 1)
                  if "raise ValueError(rest" in line)
BOTTOM_LINE = next(i for i, line in enumerate(CHILD.split("\n"), 1) if "THE BOTTOM" in line)

_tmpdir = None
CHILD_PATH = None


def setUpModule():
    global _tmpdir, CHILD_PATH
    _tmpdir = tempfile.mkdtemp(prefix="mvw-py-")
    CHILD_PATH = os.path.join(_tmpdir, "child_worker.py")
    with open(CHILD_PATH, "w") as f:
        f.write(CHILD)


def tearDownModule():
    shutil.rmtree(_tmpdir, ignore_errors=True)


def child_env(extra=None, drop_fd=True):
    env = dict(os.environ)
    env.pop("MEMVISOR_TRACEMALLOC", None)
    if drop_fd:
        env.pop("MEMVISOR_FD", None)
    env.update(extra or {})
    return env


class FakeMemvisor(unittest.TestCase):
    """Base: one worker child per test, and the supervisor's end of its socketpair."""

    def setUp(self):
        self.proc = None
        self.sup = None

    def tearDown(self):
        if self.sup is not None:
            self.sup.close()
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.communicate(timeout=TIMEOUT)

    # -- the worker -------------------------------------------------------------------

    def spawn(self, mode="run", env=None, nonblocking=False):
        """Starts the worker child with the other end of a socketpair as MEMVISOR_FD."""
        self.sup, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sup.settimeout(TIMEOUT)
        fd = theirs.fileno()
        if nonblocking:
            os.set_blocking(fd, False)
        self.proc = subprocess.Popen(
            [sys.executable, CHILD_PATH, mode, MODULE_DIR],
            env=child_env(dict(env or {}, MEMVISOR_FD=str(fd))),
            pass_fds=(fd,), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE)
        theirs.close()  # the child's EOF must follow our close alone

    def wait_exit(self):
        """The child's exit code and stderr."""
        _out, err = self.proc.communicate(timeout=TIMEOUT)
        return self.proc.returncode, err.decode(errors="replace")

    def assert_exit(self, code, stderr_has=None):
        rc, err = self.wait_exit()
        self.assertEqual(rc, code, "worker stderr:\n" + err)
        if stderr_has:
            self.assertIn(stderr_has, err)

    def wait_stdout_line(self):
        ready, _, _ = select.select([self.proc.stdout], [], [], TIMEOUT)
        self.assertTrue(ready, "the worker did not report in time")
        return self.proc.stdout.readline()

    # -- the protocol -----------------------------------------------------------------

    def send(self, mtype, task=0, payload=b"", flags=0):
        self.sup.sendall(msg(mtype, task, payload, flags))

    def recv_exact(self, n):
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sup.recv(n - len(buf))
            if not chunk:
                raise EOFError(f"worker closed the channel after {len(buf)} of {n} bytes")
            buf += chunk
        return bytes(buf)

    def recv(self):
        length, mtype, flags, task = HEADER.unpack(self.recv_exact(HEADER.size))
        return mtype, flags, task, self.recv_exact(length)

    def expect_eof(self):
        self.assertEqual(self.sup.recv(1), b"", "expected the worker to close the channel")

    def handshake(self, slot=1, prefetch=1, mode=0, then=b""):
        mtype, flags, task, payload = self.recv()
        self.assertEqual((mtype, flags, task), (HELLO, 0, 0))
        version, hello_flags = struct.unpack("=II", payload)
        self.assertEqual(version, mw.PROTOCOL_VERSION)
        # HELLO_TEMPLATE but in a process with threads; HELLO_HEAP_LATE always
        self.assertIn(hello_flags, (mw.HELLO_HEAP_LATE, mw.HELLO_HEAP_LATE | mw.HELLO_TEMPLATE))
        self.sup.sendall(go(slot, prefetch, mode) + then)

    def expect(self, mtype, task, payload, flags=0):
        self.assertEqual(self.recv(), (mtype, flags, task, payload))

    def task(self, task_id, data):
        """One lock-step task: its answer."""
        self.send(TASK, task_id, data)
        return self.recv()

    def recv_figures(self, mtype, flags, task_id, prefix):
        """The next message, which must be this one, with heap figures (struct mvw_heap,
        both counts known) after `prefix`; the payload after them."""
        got_type, got_flags, got_task, payload = self.recv()
        self.assertEqual((got_type, got_flags, got_task), (mtype, flags, task_id))
        self.assertEqual(payload[:len(prefix)], prefix)
        live, blocks = struct.unpack_from("=qq", payload, len(prefix))
        self.assertGreater(live, 0)
        self.assertGreater(blocks, 0)
        return payload[len(prefix) + 16:]

    def snapshot(self):
        self.send(SNAPSHOT)
        mtype, flags, task, payload = self.recv()
        self.assertEqual((mtype, flags, task), (SNAPSHOT, 0, 0))
        return json.loads(payload)


def msg(mtype, task=0, payload=b"", flags=0):
    return HEADER.pack(len(payload), mtype, flags, task) + payload


def go(slot=1, prefetch=1, mode=0, version=2):
    return msg(GO, 0, struct.pack("=IIII", version, slot, prefetch, mode))


def local_handler(task):
    word, _, rest = task.text.partition(" ")
    task.kind = word
    if word == "raise":
        raise ValueError(rest)
    if word == "dict":
        return {"rest": rest}
    if word == "bin":
        return b"\xff" + task.data
    return task.text.upper()


class RunLocal(unittest.TestCase):
    """memvisor_worker.run_local: a handler in this process, no memvisor."""

    def test_results_like_memvisor_result_lines(self):
        got = list(mw.run_local(local_handler, ["up a", "", b"dict x", "raise nope", "bin z"]))
        self.assertEqual(got[0], {"task": 1, "status": "ok", "kind": "up", "result": "UP A"})
        # Empty lines are skipped; ids stay line numbers, as memvisor numbers them.
        self.assertEqual(got[1], {"task": 3, "status": "ok", "kind": "dict",
                                  "result": '{"rest":"x"}'})
        self.assertEqual(got[2]["task"], 4)
        self.assertEqual(got[2]["status"], "failed")
        self.assertTrue(got[2]["error"].startswith("ValueError: nope\nTraceback"), got[2])
        self.assertIn("in local_handler", got[2]["error"])
        self.assertEqual(got[3], {"task": 5, "status": "ok", "kind": "bin",
                                  "result_base64": "/2JpbiB6"})
        self.assertEqual(len(got), 4)

    def test_a_file_of_lines(self):
        path = os.path.join(_tmpdir, "local.tasks")
        with open(path, "w") as f:
            f.write("one\ntwo\n")
        with open(path) as f:
            got = [r["result"] for r in mw.run_local(local_handler, f)]
        self.assertEqual(got, ["ONE", "TWO"])

    def test_raise_errors_propagates_the_handler_exception(self):
        results = mw.run_local(local_handler, ["ok", "raise here"], raise_errors=True)
        self.assertEqual(next(results)["result"], "OK")
        with self.assertRaisesRegex(ValueError, "^here$"):
            next(results)

    def test_a_bad_result_type_fails_the_task(self):
        got = list(mw.run_local(lambda task: 42, ["x"]))
        self.assertEqual(got[0]["status"], "failed")
        self.assertTrue(got[0]["error"].startswith(
            "TypeError: result must be str, bytes, None, or a dict or list (sent as JSON), "
            "not int"), got[0])


class Handshake(FakeMemvisor):
    def test_hello_then_go_sets_slot_prefetch_mode(self):
        self.spawn()
        self.handshake(slot=3, prefetch=5)
        mtype, _flags, task, payload = self.task(1, b"info")
        self.assertEqual((mtype, task), (DONE, 1))
        info = json.loads(payload)
        self.assertEqual(info, {"slot": 3, "prefetch": 5, "mode": 0, "inheritable": False})
        self.send(STOP)
        self.expect_eof()
        self.assert_exit(0)

    def test_stop_before_go_is_a_clean_stop(self):
        self.spawn()
        self.recv()  # HELLO
        self.send(STOP)
        self.expect_eof()
        self.assert_exit(0)

    def test_snapshot_before_go_is_answered(self):
        self.spawn()
        self.recv()  # HELLO
        self.assertEqual(self.snapshot()["runtime"], "python")
        self.sup.sendall(go())
        self.assertEqual(self.task(1, b"x"), (DONE, 0, 1, b"x"))
        self.send(STOP)
        self.assert_exit(0)

    def test_other_protocol_version_is_a_protocol_error(self):
        self.spawn()
        self.recv()
        self.sup.sendall(go(version=mw.PROTOCOL_VERSION + 1))
        self.assert_exit(11, "version %d" % (mw.PROTOCOL_VERSION + 1))

    def test_version_1_conversation_works_without_requests(self):
        self.spawn()
        self.recv()
        self.sup.sendall(go(version=1))
        self.assertEqual(self.task(1, b"x"), (DONE, 0, 1, b"x"))
        self.send(STOP)
        self.assert_exit(0)

    def test_version_1_go_with_a_request_is_a_protocol_error(self):
        self.spawn()
        self.recv()
        self.sup.sendall(go(mode=GO_HEAP, version=1))
        self.assert_exit(11, "mode")

    def test_unknown_go_request_is_a_protocol_error(self):
        self.spawn()
        self.recv()
        self.sup.sendall(go(mode=0x400))
        self.assert_exit(11, "mode")


class HeapFigures(FakeMemvisor):
    """Version 2: the worker's own heap figures with every answer when GO asks
    (MVW_GO_HEAP), and a collection before the answer when a TASK asks (MVW_F_COLLECT)."""

    def figures(self, task_id, data, flags=0, result=b""):
        self.send(TASK, task_id, data, flags)
        mtype, mflags, task, payload = self.recv()
        self.assertEqual((mtype, mflags & F_HEAP, task), (DONE, F_HEAP, task_id))
        live, blocks = struct.unpack_from("=qq", payload)
        self.assertEqual(payload[16:], result)
        self.assertGreater(live, 0)
        self.assertGreater(blocks, 0)
        return live

    def test_answers_carry_live_bytes_and_collect_when_asked(self):
        self.spawn()
        self.handshake(mode=GO_HEAP)
        base = self.figures(1, b"text", result=b"text")
        kept = self.figures(2, b"leak")
        self.assertGreaterEqual(kept - base, 65536)  # the 64 KiB it keeps
        garbage = self.figures(3, b"cycle")
        self.assertGreaterEqual(garbage - kept, 1 << 20)  # waits for the collector
        collected = self.figures(4, b"cycle", F_COLLECT)
        self.assertLess(collected - kept, 1 << 19)  # both cycles collected before the answer
        self.send(STOP)
        self.assert_exit(0)

    def test_figures_on_fail_and_after_a_kind(self):
        # Payload order: the kind prefix (u8 n + n bytes), struct mvw_heap, the body; for an
        # answer with a kind, without one, and for FAIL, batched in one read.
        self.spawn()
        self.handshake(mode=GO_HEAP, prefetch=8)
        self.sup.sendall(msg(TASK, 1, b"raise no good") + msg(TASK, 2, b"kind parse text x")
                         + msg(TASK, 3, b"kind parse raise bad") + msg(TASK, 4, b"text y"))
        want = [(FAIL, F_HEAP, 1, b"", b"ValueError: no good"),
                (DONE, F_HEAP | F_KIND, 2, b"\x05parse", b"kind parse text x"),
                (FAIL, F_HEAP | F_KIND, 3, b"\x05parse", b"ValueError: bad"),
                (DONE, F_HEAP, 4, b"", b"text y")]
        for mtype, flags, task_id, prefix, body in want:
            rest = self.recv_figures(mtype, flags, task_id, prefix)
            self.assertTrue(rest.startswith(body), rest)
        self.send(STOP)
        self.assert_exit(0)

    def test_a_big_answers_figures_come_at_its_end_without_it(self):
        # GO allowed MVW_GO_HEAP_LATE: an answer of 128 KiB or more carries its figures at its
        # end (F_HEAP_LATE), measured once the result is freed: the worker is back for its
        # next task (docs/protocols.md, "Big answers"). A smaller one, first, as before.
        self.spawn()
        self.handshake(mode=GO_HEAP | mw.GO_HEAP_LATE)
        base = self.figures(1, b"text", result=b"text")
        for task_id in (2, 3):
            self.send(TASK, task_id, b"big 300000")
            mtype, flags, task, payload = self.recv()
            self.assertEqual((mtype, flags, task), (DONE, F_HEAP | mw.F_HEAP_LATE, task_id))
            self.assertEqual(payload[:-16], b"x" * 300000)
            live, blocks = struct.unpack("=qq", payload[-16:])
            self.assertGreater(blocks, 0)
            self.assertLess(abs(live - base), 65536, (live, base))
        self.send(STOP)
        self.assert_exit(0)

    def test_no_figures_unless_asked(self):
        self.spawn()
        self.handshake()
        self.assertEqual(self.task(1, b"text"), (DONE, 0, 1, b"text"))
        self.send(TASK, 2, b"text", F_COLLECT)  # a collection alone changes no answer
        self.assertEqual(self.recv(), (DONE, 0, 2, b"text"))
        self.send(STOP)
        self.assert_exit(0)


class Batch(FakeMemvisor):
    def test_lock_step_tasks(self):
        self.spawn()
        self.handshake()
        for i in range(1, 21):
            self.assertEqual(self.task(i, b"line %d" % i), (DONE, 0, i, b"line %d" % i))
        self.send(STOP)
        self.expect_eof()
        self.assert_exit(0)

    def test_explicit_done_and_fail_in_a_for_loop(self):
        self.spawn("iter")
        self.handshake()
        self.assertEqual(self.task(1, b"text caf\xc3\xa9"), (DONE, 0, 1, b"text caf\xc3\xa9"))
        self.assertEqual(self.task(2, b"raise no good"), (FAIL, 0, 2, b"no good"))
        self.assertEqual(self.task(3, b""), (DONE, 0, 3, b""))
        self.send(STOP)
        self.assert_exit(0)

    def test_prefetch_batches_answers_in_order(self):
        self.spawn()
        self.handshake(prefetch=64)
        self.sup.sendall(b"".join(msg(TASK, i, b"t%d" % i) for i in range(1, 51)))
        for i in range(1, 51):
            self.expect(DONE, i, b"t%d" % i)
        self.send(STOP)
        self.expect_eof()
        self.assert_exit(0)

    def test_kind_prefix_on_done_and_fail(self):
        self.spawn()
        self.handshake()
        self.assertEqual(self.task(1, b"kind parse hello"),
                         (DONE, F_KIND, 1, b"\x05parse" + b"kind parse hello"))
        mtype, flags, task, payload = self.task(2, b"kind render raise oops")
        self.assertEqual((mtype, flags, task), (FAIL, F_KIND, 2))
        self.assertTrue(payload.startswith(b"\x06render" + b"ValueError: oops\n"), payload)
        # The kind belongs to one task: the next one has none.
        self.assertEqual(self.task(3, b"plain"), (DONE, 0, 3, b"plain"))
        kind = b"k" * 255
        self.assertEqual(self.task(4, b"kind " + kind + b" x"),
                         (DONE, F_KIND, 4, b"\xff" + kind + b"kind " + kind + b" x"))
        # 256 bytes is too long: the handler's assignment raises, the task fails.
        mtype, flags, task, payload = self.task(5, b"kind " + b"k" * 256 + b" x")
        self.assertEqual((mtype, flags, task), (FAIL, 0, 5))
        self.assertIn(b"ValueError", payload)
        self.send(STOP)
        self.assert_exit(0)

    def test_exception_in_run_fails_the_task_and_goes_on(self):
        self.spawn()
        self.handshake()
        mtype, _flags, _task, payload = self.task(1, b"raise it broke")
        self.assertEqual(mtype, FAIL)
        self.assertEqual(payload.split(b"\n")[0], b"ValueError: it broke")
        mtype, _flags, _task, payload = self.task(2, b"int")
        self.assertEqual(mtype, FAIL)
        self.assertTrue(payload.startswith(b"TypeError: "), payload)
        self.assertEqual(self.task(3, b"still alive"), (DONE, 0, 3, b"still alive"))
        self.send(STOP)
        self.assert_exit(0)

    def test_failed_task_error_carries_the_traceback(self):
        self.spawn()
        self.handshake()
        mtype, _flags, _task, payload = self.task(1, b"raise it broke")
        self.assertEqual(mtype, FAIL)
        lines = payload.decode().split("\n")
        self.assertEqual(lines[0], "ValueError: it broke")
        self.assertEqual(lines[1], "Traceback (most recent call last):")
        self.assertIn(f'child_worker.py", line {RAISE_LINE}, in handle', payload.decode())
        self.assertEqual(lines[-1], "ValueError: it broke")
        # The module's own frames (run()) are left out: the handler's frame comes first.
        self.assertNotIn("memvisor_worker.py", payload.decode())
        self.send(STOP)
        self.assert_exit(0)

    def test_traceback_keeps_the_last_frames_and_is_bounded(self):
        self.spawn()
        self.handshake()
        mtype, _flags, _task, payload = self.task(1, b"deep 50")
        text = payload.decode()
        self.assertEqual(mtype, FAIL)
        self.assertTrue(text.startswith("KeyError: 'bottom'\n"), text)
        # The last 8 of 52 frames: Python folds the identical ones (3 shown, 4 repeated, the
        # bottom one).
        self.assertEqual(text.count('File "'), 4, text)
        self.assertIn("[Previous line repeated 4 more times]", text)
        self.assertIn(f"line {BOTTOM_LINE}, in recurse", text)
        self.assertTrue(text.endswith("KeyError: 'bottom'"), text)
        mtype, _flags, _task, payload = self.task(2, b"huge 20000")
        self.assertEqual(mtype, FAIL)
        self.assertLessEqual(len(payload), 4096)
        self.assertTrue(payload.startswith(b"RuntimeError: yyy"), payload[:40])
        self.assertIn(b"\n[...]\n", payload)
        self.assertTrue(payload.endswith(b"yyyy"), payload[-40:])
        self.send(STOP)
        self.assert_exit(0)

    def test_dict_and_list_results_are_sent_as_json(self):
        self.spawn()
        self.handshake()
        mtype, _flags, _task, payload = self.task(1, b"dict hello")
        self.assertEqual(mtype, DONE)
        self.assertEqual(payload, '{"word":"hello","n":[1,2.5,null,true],"café":{}}'.encode())
        self.assertEqual(self.task(2, b"list x"), (DONE, 0, 2, b'["x",1,["tuple","too"]]'))
        # What JSON cannot say fails the task, with the reason; the worker goes on.
        mtype, _flags, _task, payload = self.task(3, b"badjson")
        self.assertEqual(mtype, FAIL)
        self.assertTrue(payload.startswith(b"TypeError: a dict result is sent as JSON: "
                                           b"Object of type object is not JSON serializable"),
                        payload)
        self.assertEqual(self.task(4, b"text ok"), (DONE, 0, 4, b"text ok"))
        self.send(STOP)
        self.assert_exit(0)

    def test_binary_and_invalid_utf8_round_trip(self):
        self.spawn()
        self.handshake()
        for i, data in enumerate([b"echo \xff\xfe\x00 binary \xed\xa0\x80",
                                  b"text \xff\xfe\x00 binary \xed\xa0\x80 \xc3\xa9",
                                  bytes(range(256)), b"text " + bytes(range(256))], 1):
            self.assertEqual(self.task(i, data), (DONE, 0, i, data))
        self.send(STOP)
        self.assert_exit(0)

    def test_large_tasks_and_results(self):
        self.spawn()
        self.handshake(prefetch=4)
        big = b"echo " + os.urandom(3 << 20)
        self.send(TASK, 1, big)
        self.send(TASK, 2, b"big 5000000")
        self.send(TASK, 3, b"small")
        self.expect(DONE, 1, big)
        self.expect(DONE, 2, b"x" * 5000000)
        self.expect(DONE, 3, b"small")
        self.send(STOP)
        self.assert_exit(0)

    def test_messages_split_at_every_byte(self):
        self.spawn()
        self.handshake(prefetch=2)
        data = msg(TASK, 1, b"one") + msg(SNAPSHOT) + msg(TASK, 2, b"two")
        for i in range(len(data)):
            self.sup.sendall(data[i:i + 1])
        replies = [self.recv() for _ in range(3)]
        # The SNAPSHOT reply may come first: it is answered as soon as it is buffered,
        # before buffered tasks are started.
        self.assertEqual([r for r in replies if r[0] == DONE],
                         [(DONE, 0, 1, b"one"), (DONE, 0, 2, b"two")])
        self.assertEqual([r[0] for r in replies].count(SNAPSHOT), 1)
        self.send(STOP)
        self.assert_exit(0)

    def test_nonblocking_fd(self):
        self.spawn(nonblocking=True)
        self.handshake()
        self.assertEqual(self.task(1, b"a"), (DONE, 0, 1, b"a"))
        self.send(TASK, 2, b"big 3000000")
        self.expect(DONE, 2, b"x" * 3000000)
        self.send(STOP)
        self.assert_exit(0)


class ReadBuffer(FakeMemvisor):
    # recvfrom(2): the call a blocking socket read waits in
    RECVFROM = {"x86_64": 45, "aarch64": 207}

    def wait_in_recvfrom(self):
        nr = self.RECVFROM.get(os.uname().machine)
        if nr is None:
            self.skipTest("recvfrom's number on this machine is not known here")
        path = f"/proc/{self.proc.pid}/task/{self.proc.pid}/syscall"
        for _ in range(int(TIMEOUT * 1000)):  # bounded: a state observed, not a delay
            with open(path) as f:
                if f.read().split()[0] == str(nr):
                    return
            select.select([], [], [], 0.001)
        self.fail("the worker never waited in recvfrom")

    def test_a_worker_waiting_for_its_next_task_holds_no_read_buffer(self):
        # memvisor reads the heap preload's page when it opens a task's window, while the
        # worker waits for that task: what the wait holds counts as the task's "before", and
        # the task's own figures come out that much short (sock.recv(64 KiB) allocated its
        # result before waiting: -40 KiB for a kind that keeps 24 KiB).
        self.spawn()
        self.handshake()
        self.assertEqual(self.task(1, b"probe"), (DONE, 0, 1, b"probing"))
        self.wait_in_recvfrom()
        self.proc.stdin.write(b"?\n")
        self.proc.stdin.flush()
        held = int(self.wait_stdout_line())
        self.assertLess(held, 16384, "bytes allocated while the worker waits for a task")
        self.assertEqual(self.task(2, b"text"), (DONE, 0, 2, b"text"))
        self.send(STOP)
        self.assert_exit(0)


class Stop(FakeMemvisor):
    def test_stop_finishes_the_task_in_hand_and_abandons_buffered_ones(self):
        self.spawn()
        self.handshake(prefetch=4, then=msg(TASK, 1, b"gate"))
        self.assertEqual(self.wait_stdout_line(), b"in task\n")
        # Task 1 is in hand; tasks 2 and 3 and STOP arrive together, in one read.
        self.sup.sendall(msg(TASK, 2, b"two") + msg(TASK, 3, b"three") + msg(STOP))
        self.proc.stdin.write(b"go\n")
        self.proc.stdin.flush()
        self.expect(DONE, 1, b"gated")
        self.expect_eof()
        self.assert_exit(0)

    def test_stop_buffered_behind_tasks_starts_none_of_them(self):
        self.spawn()
        # One write: GO, three tasks and STOP all reach the worker's buffer at once.
        self.handshake(prefetch=4, then=b"".join(msg(TASK, i, b"t") for i in (1, 2, 3))
                       + msg(STOP))
        self.expect_eof()
        self.assert_exit(0)


class Snapshot(FakeMemvisor):
    def check_shape(self, snap):
        self.assertEqual(snap["runtime"], "python")
        self.assertEqual(snap["version"], sys.version.split()[0])
        self.assertEqual(snap["pid"], self.proc.pid)
        self.assertIsInstance(snap["types"], list)
        for t in snap["types"]:
            self.assertEqual(set(t), {"type", "count", "diff"})
            self.assertGreater(t["diff"], 0)
        self.assertLessEqual(len(snap["types"]), 10)
        self.assertIsInstance(snap["gc"]["garbage"], int)
        self.assertEqual(len(snap["gc"]["counts"]), 3)

    def test_snapshot_without_tracemalloc(self):
        self.spawn()
        self.handshake()
        self.task(1, b"leak")
        snap = self.snapshot()
        self.check_shape(snap)
        self.assertIsNone(snap["tracemalloc"])
        # The first snapshot counts from zero: some types have grown.
        self.assertTrue(snap["types"])
        self.send(STOP)
        self.assert_exit(0)

    def test_snapshot_with_tracemalloc_names_the_leaking_line(self):
        self.spawn(env={"MEMVISOR_TRACEMALLOC": "1"})
        self.handshake()
        for i in range(1, 4):
            self.assertEqual(self.task(i, b"leak"), (DONE, 0, i, b""))
        snap = self.snapshot()  # while the worker waits for input
        self.check_shape(snap)
        tm = snap["tracemalloc"]
        self.assertEqual(tm["frames"], 1)
        self.assertGreater(tm["traced"], 3 * 65536)
        self.assertGreaterEqual(tm["peak"], tm["traced"])
        self.assertLessEqual(len(tm["top"]), 10)
        for entry in tm["top"]:
            self.assertEqual(set(entry), {"where", "size", "count", "size_diff", "count_diff"})
            self.assertRegex(entry["where"], r"^.+:\d+$")
            self.assertNotIn("tracemalloc.py", entry["where"])
            self.assertNotIn("importlib", entry["where"])
        where = f"{CHILD_PATH}:{LEAK_LINE}"
        top = tm["top"][0]
        self.assertEqual(top["where"], where)
        self.assertGreaterEqual(top["size_diff"], 3 * 65536)

        # The next snapshot shows growth since this one.
        for i in range(4, 6):
            self.task(i, b"leak")
        tm = self.snapshot()["tracemalloc"]
        top = tm["top"][0]
        self.assertEqual(top["where"], where)
        self.assertGreaterEqual(top["size"], 5 * 65536)
        self.assertGreaterEqual(top["size_diff"], 2 * 65536)
        self.assertLess(top["size_diff"], 3 * 65536)
        self.send(STOP)
        self.assert_exit(0)

    def test_snapshot_types_show_growth_since_the_previous_one(self):
        self.spawn()
        self.handshake()
        self.snapshot()
        for i in range(1, 31):
            self.task(i, b"obj")
        types = {t["type"]: t for t in self.snapshot()["types"]}
        self.assertEqual(types["Leaky"], {"type": "Leaky", "count": 30, "diff": 30})
        for i in range(31, 41):
            self.task(i, b"obj")
        types = {t["type"]: t for t in self.snapshot()["types"]}
        self.assertEqual(types["Leaky"], {"type": "Leaky", "count": 40, "diff": 10})
        self.send(STOP)
        self.assert_exit(0)

    def test_bad_tracemalloc_setting_is_not_fatal(self):
        self.spawn(env={"MEMVISOR_TRACEMALLOC": "lots"})
        self.handshake()
        self.assertIsNone(self.snapshot()["tracemalloc"])
        self.send(STOP)
        self.assert_exit(0, "MEMVISOR_TRACEMALLOC")


class Service(FakeMemvisor):
    def test_begin_end_poll_snapshot_stop(self):
        self.spawn("service")
        self.handshake(mode=1)
        self.expect(BEGIN, 1, b"\x03req", F_KIND)
        self.expect(END, 1, struct.pack("=I", 0))
        self.expect(BEGIN, 2, b"")
        self.expect(END, 2, struct.pack("=I", 7))
        self.assertEqual(self.snapshot()["runtime"], "python")
        self.send(STOP)
        self.expect_eof()
        self.assert_exit(0)

    def test_begin_and_end_carry_heap_figures_when_go_asks(self):
        # BEGIN: the kind prefix, then struct mvw_heap; END: struct mvw_heap, then the status.
        self.spawn("service")
        self.handshake(mode=1 | GO_HEAP)
        for mtype, task_id, flags, prefix, rest in (
                (BEGIN, 1, F_KIND | F_HEAP, b"\x03req", b""),
                (END, 1, F_HEAP, b"", struct.pack("=I", 0)),
                (BEGIN, 2, F_HEAP, b"", b""),
                (END, 2, F_HEAP, b"", struct.pack("=I", 7))):
            self.assertEqual(self.recv_figures(mtype, flags, task_id, prefix), rest)
        self.send(STOP)
        self.expect_eof()
        self.assert_exit(0)

    def test_task_in_service_mode_is_a_protocol_error(self):
        self.spawn("service")
        self.handshake(mode=1)
        for _ in range(4):
            self.recv()
        self.send(TASK, 1, b"no")
        self.assert_exit(11, "service")


class Errors(FakeMemvisor):
    def test_eof_raises_supervisor_gone(self):
        self.spawn()
        self.handshake()
        self.assertEqual(self.task(1, b"a"), (DONE, 0, 1, b"a"))
        self.sup.close()
        self.sup = None
        self.assert_exit(10, "SupervisorGone")

    def test_answer_to_a_closed_channel_raises_supervisor_gone_not_sigpipe(self):
        self.spawn(env={"TEST_SIGPIPE_DFL": "1"})
        self.handshake()
        self.send(TASK, 1, b"gate")
        self.assertEqual(self.wait_stdout_line(), b"in task\n")
        self.sup.close()
        self.sup = None
        self.proc.stdin.write(b"go\n")
        self.proc.stdin.flush()
        self.assert_exit(10, "SupervisorGone")

    def test_a_channel_fd_closed_by_the_handler_is_said_once_without_a_traceback(self):
        # Worker.close() closed the socket whose fd was gone: OSError (EBADF) from the with
        # block's end replaced the error that said it, with a traceback of socket.close.
        self.spawn(mode="main")
        self.handshake()
        self.send(TASK, 1, b"closefd")
        rc, err = self.wait_exit()
        self.assertEqual(rc, 1, "worker stderr:\n" + err)
        self.assertIn("I/O on the memvisor channel failed", err)
        self.assertNotIn("Traceback", err)

    def test_eof_before_go_raises_supervisor_gone(self):
        self.spawn()
        self.recv()
        self.sup.close()
        self.sup = None
        self.assert_exit(10, "SupervisorGone")

    def check_garbage(self, data, stderr_has):
        self.spawn()
        self.handshake()
        self.sup.sendall(data)
        self.assert_exit(11, stderr_has)

    def test_unknown_type_is_a_protocol_error(self):
        self.check_garbage(HEADER.pack(0, 77, 0, 0), "type 77")

    def test_garbage_bytes_are_a_protocol_error(self):
        self.check_garbage(b"\xde\xad\xbe\xef" * 8, "ProtocolError")

    def test_oversized_message_is_refused_before_its_payload(self):
        # Only the header is sent: the worker must not wait for 64 MiB.
        self.check_garbage(HEADER.pack((64 << 20) + 1, TASK, 0, 1), "bytes")

    def test_unknown_flag_is_a_protocol_error(self):
        self.check_garbage(msg(TASK, 1, b"x", flags=2), "flags")

    def test_worker_type_from_memvisor_is_a_protocol_error(self):
        self.check_garbage(msg(DONE, 1, b"x"), "ProtocolError")

    def test_snapshot_request_with_payload_is_a_protocol_error(self):
        self.check_garbage(msg(SNAPSHOT, 0, b"{}"), "SNAPSHOT")

    def test_second_go_is_a_protocol_error(self):
        self.check_garbage(go(), "GO")

    def test_tasks_before_garbage_still_run(self):
        self.spawn()
        self.handshake(prefetch=4, then=msg(TASK, 1, b"a") + HEADER.pack(0, 77, 0, 0))
        self.expect(DONE, 1, b"a")
        self.assert_exit(11, "type 77")


class NotStartedByMemvisor(unittest.TestCase):
    def open_with(self, value):
        with mock.patch.dict(os.environ, {"MEMVISOR_FD": value}):
            with self.assertRaises(mw.NotUnderMemvisor) as cm:
                mw.Worker()
        return str(cm.exception)

    def test_no_memvisor_fd(self):
        with mock.patch.dict(os.environ):
            os.environ.pop("MEMVISOR_FD", None)
            with self.assertRaises(mw.NotUnderMemvisor) as cm:
                mw.Worker()
        self.assertIn("MEMVISOR_FD is not set", str(cm.exception))
        self.assertIn("memvisor run", str(cm.exception))

    def test_memvisor_fd_not_a_number(self):
        for value in ("", "abc", "-1", " 3", "3 ", "99999999999"):
            self.assertIn("not a file descriptor number", self.open_with(value))

    def test_memvisor_fd_closed(self):
        r, w = os.pipe()
        os.close(r)
        os.close(w)
        self.assertIn("does not name an open socket", self.open_with(str(r)))

    def test_memvisor_fd_not_a_socket(self):
        r, w = os.pipe()
        try:
            self.assertIn("is not a socket", self.open_with(str(r)))
        finally:
            os.close(r)
            os.close(w)

    def test_memvisor_fd_datagram_socket(self):
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            self.assertIn("not a stream socket", self.open_with(str(a.fileno())))
            a.getsockname()  # still open: the failed Worker left it alone
        finally:
            a.close()
            b.close()

    def test_main_exits_78_with_a_hint(self):
        proc = subprocess.run([sys.executable, CHILD_PATH, "main", MODULE_DIR],
                              env=child_env(), capture_output=True, timeout=TIMEOUT)
        self.assertEqual(proc.returncode, 78, proc.stderr)
        self.assertIn(b"not started by memvisor", proc.stderr)
        self.assertIn(b"memvisor run", proc.stderr)


# A template's warm-up (memvisor_template._warm), in a fresh interpreter: its code counters
# start at zero there. Prints one JSON line.
WARM = r'''
import dis, json, os, socket, sys
sys.path.insert(0, sys.argv[1])
import memvisor_worker as mw
import memvisor_template as mt

PATH = [mw.Worker.next_task, mw.Worker.done, mw.Worker._answer, mw.Worker._handshake,
        mw.Worker._read, mw.Worker._scan_tasks, mw.Worker._flush]


def specialised():
    """Per function of the forked worker's path: its instructions CPython specialised."""
    out = {}
    for fn in PATH:
        plain = [i.opname for i in dis.get_instructions(fn)]
        out[fn.__name__] = sum(a != b.opname for a, b in
                               zip(plain, dis.get_instructions(fn, adaptive=True)))
    return out


def fds():
    return sorted(os.listdir("/proc/self/fd"))


# The template's worker, as serve() has it: its handshake done, its channel to memvisor.
ours, sup = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
w = mw.Worker.__new__(mw.Worker)
w._sock = None
w.forked = False
w._prev_types, w._prev_sites = {}, {}
w._init_channel_state()
w._sock = ours
w.mode, w.slot = mw.MODE_TEMPLATE, 0
state = lambda: (bytes(w._in), bytes(w._out), list(w._tasks), w.mode, w.slot, w._stopped,
                 w._error, w._sock.fileno(), w.forked)
before, open_before, spec_before = state(), fds(), specialised()
calls = []
real = mt._warm_task
mt._warm_task = lambda task: calls.append(task.text) or real(task)
if sys.argv[2] == "fail":  # the warm-up's channel cannot be made
    def refuse(*a):
        raise OSError(24, "Too many open files")
    socket.socketpair = refuse
mt._warm(w)
sup.setblocking(False)
try:
    sent = len(sup.recv(4096))
except BlockingIOError:
    sent = 0
print(json.dumps({"calls": calls, "same_state": state() == before, "sent": sent,
                  "same_fds": fds() == open_before, "spec_before": spec_before,
                  "spec_after": specialised()}))
'''


class TemplateWarmUp(unittest.TestCase):
    """memvisor_template warms a forked worker's path in the template before its first fork."""

    def warm(self, how):
        out = subprocess.run([sys.executable, "-c", WARM, MODULE_DIR, how], capture_output=True,
                             text=True, timeout=TIMEOUT)
        self.assertEqual(out.returncode, 0, out.stderr)
        return json.loads(out.stdout)

    @unittest.skipUnless(sys.version_info >= (3, 11), "adaptive bytecode is CPython 3.11's")
    def test_the_workers_path_is_run_and_specialised_in_the_template(self):
        r = self.warm("ok")
        self.assertEqual(set(r["spec_before"].values()), {0})
        for name, n in r["spec_after"].items():  # the handshake's, the task's, the answer's
            self.assertGreater(n, 0, name)

    def test_the_warm_up_leaves_the_template_and_its_channel_alone(self):
        r = self.warm("ok")
        # its own task, never the worker's handler; 3.11 specialises after 8 calls
        self.assertEqual(r["calls"], ["warm"] * 8)
        self.assertTrue(r["same_state"])
        self.assertEqual(r["sent"], 0)  # nothing went to memvisor
        self.assertTrue(r["same_fds"])  # its socket pair and dups are closed

    def test_a_warm_up_that_cannot_run_is_skipped(self):
        r = self.warm("fail")
        self.assertEqual(r["calls"], [])
        self.assertTrue(r["same_state"])
        self.assertEqual(r["sent"], 0)
        self.assertTrue(r["same_fds"])


class ForkedFds(unittest.TestCase):
    """Where memvisor_template puts a forked worker's fds: the listen sockets on 3, 4, ...,
    its channel on the number $MEMVISOR_FD names (3 + the sockets in a template memvisor
    started; another in one memvisor.Pool forked from a caller with a file on 3)."""

    def targets(self, env):
        import memvisor_template as mt  # noqa: PLC0415 - loads ctypes: only here
        names = ("MEMVISOR_FD", "LISTEN_FDS")
        with mock.patch.dict(os.environ, {k: v for k, v in env.items() if v is not None}):
            for k in names:
                if env.get(k) is None:
                    os.environ.pop(k, None)
            return mt._targets("LISTEN_FDS" in os.environ)

    def test_the_channel_goes_where_memvisor_fd_says(self):
        self.assertEqual(self.targets({"MEMVISOR_FD": "3"}), (0, 3))
        self.assertEqual(self.targets({"MEMVISOR_FD": "7"}), (0, 7))  # a handed-over one
        self.assertEqual(self.targets({"MEMVISOR_FD": "5", "LISTEN_FDS": "2"}), (2, 5))

    def test_a_bad_memvisor_fd_or_listen_fds_leaves_the_started_templates_numbers(self):
        for fd in (None, "", "x", "-4", "+4", " 4", "4 ", "99999999999", "\u0664"):
            self.assertEqual(self.targets({"MEMVISOR_FD": fd}), (0, 3), fd)
        # on a listen socket's number: not there, after the sockets
        self.assertEqual(self.targets({"MEMVISOR_FD": "3", "LISTEN_FDS": "2"}), (2, 5))
        self.assertEqual(self.targets({"MEMVISOR_FD": "6", "LISTEN_FDS": "zwei"}), (0, 6))

    def child_fds(self, nfds, nl, chan):
        """_child_setup in a forked child given an output pipe and nfds sockets: {fd number
        in the child: which socket (0..)}, the sockets known by their inodes."""
        import memvisor_template as mt  # noqa: PLC0415
        out_r, out_w = os.pipe()
        pairs = [socket.socketpair() for _ in range(nfds)]
        inodes = [os.fstat(a.fileno()).st_ino for a, _ in pairs]
        rep_r, rep_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            code = 1
            try:
                os.close(rep_r)
                rep = os.dup(rep_w)
                os.set_inheritable(rep, False)
                mt._child_setup(1, [out_w] + [a.fileno() for a, _ in pairs], nfds, nl > 0,
                                nl, chan)
                got = {}
                for fd in range(3, 64):
                    try:
                        ino = os.fstat(fd).st_ino
                    except OSError:
                        continue
                    if fd != rep and ino in inodes and os.get_inheritable(fd):
                        got[fd] = inodes.index(ino)
                os.write(rep, json.dumps(got).encode())
                code = 0
            finally:
                os._exit(code)
        os.close(rep_w)
        os.close(out_w)
        with os.fdopen(rep_r, "rb") as f:
            data = f.read()
        _, status = os.waitpid(pid, 0)
        os.close(out_r)
        for a, b in pairs:
            a.close()
            b.close()
        self.assertEqual(status, 0)
        return {int(k): v for k, v in json.loads(data).items()}

    def test_a_forked_workers_fds_land_where_its_environment_says(self):
        # Each socket's number in the child (its inheritable copies: the moved ones were
        # close-on-exec and closed): the listen sockets on 3.., the channel on `chan`.
        # Before: always 3, 4, ...
        self.assertEqual(self.child_fds(1, 0, 9), {9: 0})  # a handed-over template's
        self.assertEqual(self.child_fds(2, 1, 8), {3: 0, 8: 1})
        self.assertEqual(self.child_fds(2, 1, 4), {3: 0, 4: 1})  # a started one's, as before
        self.assertEqual(self.child_fds(1, 0, 3), {3: 0})


class ByteCode(unittest.TestCase):
    """The build byte-compiles the modules where they are (make, as make install does): an
    interpreter that may not write its cache (PYTHONDONTWRITEBYTECODE, a directory that is not
    its user's) would otherwise compile their source at every start of a template or worker."""

    def test_the_modules_load_compiled_where_no_cache_may_be_written(self):
        env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", PYTHONPATH=MODULE_DIR)
        out = subprocess.run([sys.executable, "-v", "-c",
                              "import memvisor_worker, memvisor_template, memvisor._pool"],
                             env=env, capture_output=True, text=True, timeout=60)
        self.assertEqual(out.returncode, 0, out.stderr[-2000:])
        for name in ("memvisor_worker", "memvisor_template", "memvisor/__init__",
                     "memvisor/_pool"):
            src = os.path.join(MODULE_DIR, name + ".py")
            cached = importlib.util.cache_from_source(src)
            # importlib says where each code object came from (python -v).
            self.assertTrue(f"# code object from '{cached}'" in out.stderr,
                            f"{src} was compiled at import: run make (it byte-compiles "
                            f"worker-api/python)")


class Units(unittest.TestCase):
    """Pure pieces, in this process."""

    def test_task_text_and_kind(self):
        t = mw.Task(7, b"caf\xc3\xa9 \xff")
        self.assertEqual(t.text, "caf\u00e9 \udcff")
        self.assertIsNone(t.kind)
        t.kind = "parse"
        self.assertEqual(t.kind, "parse")
        t.kind = b"render"
        self.assertEqual(t.kind, "render")
        for bad in ("", "x" * 256, b""):
            with self.assertRaises(ValueError):
                t.kind = bad
        with self.assertRaises(TypeError):
            t.kind = 5
        t.kind = None
        self.assertIsNone(t.kind)

    def test_constants_match_protocol_h(self):
        src = os.path.join(HERE, "..", "..", "include", "memvisor", "protocol.h")
        with open(src) as f:
            text = f.read()

        def define(name):
            return re.search(r"#define %s\s+(.+?)\s*(/\*|$)" % name, text, re.M).group(1)

        self.assertEqual(define("MVW_PROTOCOL_VERSION"), "%du" % mw.PROTOCOL_VERSION)
        self.assertEqual(define("MVW_HEADER_SIZE"), "%du" % mw.HEADER_SIZE)
        self.assertEqual(define("MVW_MAX_PAYLOAD"), "(64u << 20)")
        self.assertEqual(mw.MAX_PAYLOAD, 64 << 20)
        self.assertEqual(define("MVW_EXIT_FATAL"), str(mw.EXIT_FATAL))
        self.assertEqual(define("MVW_F_KIND"), "0x%04xu" % mw.F_KIND)
        self.assertEqual(define("MVW_F_HEAP"), "0x%04xu" % mw.F_HEAP)
        self.assertEqual(define("MVW_F_COLLECT"), "0x%04xu" % mw.F_COLLECT)
        self.assertEqual(define("MVW_F_HEAP_LATE"), "0x%04xu" % mw.F_HEAP_LATE)
        self.assertEqual(define("MVW_F_VALID"), "0x%04xu" % mw.F_VALID)
        self.assertEqual(define("MVW_PROTOCOL_MIN"), "%du" % mw.PROTOCOL_MIN)
        self.assertEqual(define("MVW_MODE_MASK"), "0x%04xu" % mw.MODE_MASK)
        self.assertEqual(define("MVW_GO_HEAP"), "0x%04xu" % mw.GO_HEAP)
        self.assertEqual(define("MVW_GO_HEAP_LATE"), "0x%04xu" % mw.GO_HEAP_LATE)
        self.assertEqual(define("MVW_HELLO_HEAP_LATE"), "0x%xu" % mw.HELLO_HEAP_LATE)
        names = re.search(r"enum mvw_msg_type \{(.*?)\};", text, re.S).group(1)
        order = re.findall(r"MVW_MSG_([A-Z_]+)", names)
        for i, name in enumerate(order[:-1], 1):  # the last is MVW_MSG_TYPE_MAX
            self.assertEqual(getattr(mw, "MSG_" + name), i, name)


if __name__ == "__main__":
    unittest.main()
