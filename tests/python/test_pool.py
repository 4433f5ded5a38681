"""Tests of memvisor.Pool (worker-api/python/memvisor/) with the real memvisor binary.

The binary is $MEMVISOR_BIN (tests/check_python.c sets it to the build's), else build/memvisor
in the source tree. Every pool is terminated by its test (the context manager), and every
wait is bounded; nothing sleeps to synchronise.

    MEMVISOR_BIN=build/memvisor python3 -m unittest -v tests/python/test_pool.py
"""

import base64
import contextlib
import functools
import glob
import io
import itertools
import json
import logging
import multiprocessing
import multiprocessing.pool
import os
import pickle
import pty
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import types
import unittest
from unittest import mock

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.normpath(os.path.join(HERE, "..", ".."))
MODULE_DIR = os.path.join(SOURCE, "worker-api", "python")
sys.path.insert(0, MODULE_DIR)
sys.path.insert(0, HERE)
os.environ.setdefault("MEMVISOR_BIN", os.path.join(SOURCE, "build", "memvisor"))

import memvisor  # noqa: E402
import pool_funcs as pf  # noqa: E402

TIMEOUT = 30.0  # seconds any single wait may take
MiB = 1 << 20


class PoolTest(unittest.TestCase):
    """Base: a temporary state directory per test, and pools that use it."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="mv-pool-test-")

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def pool(self, workers=2, **kw):
        kw.setdefault("state_dir", os.path.join(self.tmp, "state"))
        return memvisor.Pool(workers, **kw)


def mp_pool():
    return multiprocessing.get_context("fork").Pool(2)


class SameAsMultiprocessing(unittest.TestCase):
    """Every API call gives what multiprocessing.Pool gives on the same input. One pool of
    each for the whole class."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="mv-pool-test-")
        cls.mv = memvisor.Pool(2, state_dir=cls.tmp)
        cls.mp = mp_pool()

    @classmethod
    def tearDownClass(cls):
        cls.mv.terminate()
        cls.mp.terminate()
        cls.mp.join()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def both(self, call):
        """call(pool) on each pool: (memvisor's, multiprocessing's)."""
        return call(self.mv), call(self.mp)

    def assert_same(self, call):
        mine, theirs = self.both(call)
        self.assertEqual(mine, theirs)
        return mine

    def assert_same_error(self, call):
        errors = []
        for pool in (self.mv, self.mp):
            with self.assertRaises(Exception) as cm:
                call(pool)
            errors.append(cm.exception)
        self.assertIs(type(errors[0]), type(errors[1]))
        self.assertEqual(errors[0].args, errors[1].args)
        return errors[0]

    def test_apply(self):
        self.assertEqual(self.assert_same(lambda p: p.apply(pf.add, (2, 3))), 5)
        self.assert_same(lambda p: p.apply(pf.call, (1,), {"b": 2, "c": 3}))
        self.assert_same(lambda p: p.apply(pf.call, kwds={"a": "x"}))
        self.assert_same_error(lambda p: p.apply(pf.fail_on, (3,)))

    def test_apply_async_and_its_result(self):
        for pool in (self.mv, self.mp):
            r = pool.apply_async(pf.sq, (9,))
            self.assertEqual(r.get(TIMEOUT), 81)
            self.assertTrue(r.ready())
            self.assertTrue(r.successful())
            r = pool.apply_async(pf.fail_on, (3,))
            r.wait(TIMEOUT)
            self.assertTrue(r.ready())
            self.assertFalse(r.successful())
            with self.assertRaisesRegex(ValueError, "item 3 is bad"):
                r.get(TIMEOUT)
            slow = pool.apply_async(pf.slow, (1, 0.5))
            with self.assertRaises(multiprocessing.TimeoutError):
                slow.get(0.01)
            self.assertFalse(slow.ready())
            with self.assertRaises(ValueError):
                slow.successful()
            self.assertEqual(slow.get(TIMEOUT), 1)

    def test_callbacks(self):
        for pool in (self.mv, self.mp):
            got, errs = [], []
            pool.apply_async(pf.sq, (4,), callback=got.append).get(TIMEOUT)
            r = pool.map_async(pf.sq, range(5), callback=got.append)
            r.get(TIMEOUT)
            e = pool.apply_async(pf.fail_on, (3,), error_callback=errs.append)
            e.wait(TIMEOUT)
            self.assertEqual(got, [16, [0, 1, 4, 9, 16]])
            self.assertEqual([type(x) for x in errs], [ValueError])

    def test_map_with_every_chunksize(self):
        for chunksize in (None, 1, 3, 100):
            self.assert_same(lambda p: p.map(pf.sq, range(23), chunksize))
        self.assert_same(lambda p: p.map(pf.sq, []))
        self.assert_same(lambda p: p.map(pf.sq, (x for x in range(7))))  # no len()
        self.assert_same(lambda p: p.map_async(pf.sq, range(10), 4).get(TIMEOUT))
        err = self.assert_same_error(lambda p: p.map(pf.fail_on, range(6)))
        self.assertIsInstance(err.__cause__, memvisor.RemoteTraceback)

    def test_results_of_every_byte_come_back_and_report_reads_them(self):
        # Answers go as a pickle read as Latin-1 through memvisor's JSON ("\u0000" and all):
        # each byte comes back, and `memvisor report` reads the results file that holds them.
        self.assert_same(lambda p: p.map(pf.every_byte, range(5)))
        self.assert_same(lambda p: p.map(pf.every_byte, range(5), chunksize=1))
        self.assertIn("\n  pool_funcs.every_byte: 10 tasks\n", self.mv.report())

    def test_starmap(self):
        pairs = [(i, i + 1) for i in range(15)]
        self.assert_same(lambda p: p.starmap(pf.add, pairs))
        self.assert_same(lambda p: p.starmap(pf.add, pairs, 4))
        self.assert_same(lambda p: p.starmap_async(pf.add, pairs, 2).get(TIMEOUT))
        self.assert_same_error(lambda p: p.starmap(pf.fail_on, [(1,), (3,)]))

    def test_imap_and_imap_unordered(self):
        for chunksize in (1, 4):
            self.assert_same(lambda p: list(p.imap(pf.sq, range(30), chunksize)))
            self.assert_same(lambda p: sorted(p.imap_unordered(pf.sq, range(30), chunksize)))
            # A generator, read lazily.
            self.assert_same(lambda p: list(p.imap(pf.sq, (x for x in range(11)), chunksize)))
        self.assert_same(lambda p: list(p.imap(pf.sq, [])))
        for pool in (self.mv, self.mp):
            it = pool.imap(pf.sq, [5, 6])
            self.assertEqual(it.next(TIMEOUT), 25)
            self.assertEqual(next(it), 36)
            with self.assertRaises(StopIteration):
                it.next(TIMEOUT)
            it = pool.imap(pf.slow, [1])
            with self.assertRaises(multiprocessing.TimeoutError):
                it.next(0.01)

    def test_imap_raises_at_the_failed_item_and_goes_on(self):
        # multiprocessing (chunksize 1) raises at item 3 and goes on; so does memvisor.
        for pool in (self.mv, self.mp):
            it = pool.imap(pf.fail_on, range(6))
            got = []
            for _ in range(6):
                try:
                    got.append(next(it))
                except ValueError as exc:
                    got.append(str(exc))
            self.assertEqual(got, [0, 1, 2, "item 3 is bad", 4, 5])

    def test_an_input_that_raises(self):
        def items():
            yield 1
            yield 2
            raise OSError("the input broke")
        for pool in (self.mv, self.mp):
            it = pool.imap(pf.sq, items())
            self.assertEqual([next(it), next(it)], [1, 4])
            with self.assertRaisesRegex(OSError, "the input broke"):
                next(it)

    def test_lambda_refused(self):
        # multiprocessing's spawn method refuses it too (at pickling); memvisor at submit.
        with self.assertRaises(memvisor.NotImportable):
            self.mv.map(lambda x: x, [1])


class Leaks(PoolTest):
    def test_a_worker_that_leaks_past_its_limit_is_recycled_and_no_result_is_lost(self):
        n = 200
        with self.pool(memory_soft="40M", memory_hard="400M") as pool:
            got = list(pool.imap_unordered(pf.leak_mib, range(n), with_stats=True))
        self.assertEqual(sorted(r for r, _s in got), [3 * i for i in range(n)])
        stats = [s for _r, s in got]
        self.assertEqual({s.status for s in stats}, {"ok"})
        self.assertEqual({s.attempts for s in stats}, {1})
        # 1 MiB kept per task, 40 MiB allowed: each worker is replaced every ~30-40 tasks (a
        # few more: on cgroup v1 memvisor re-reads a worker over the threshold every 5 ms, and
        # these tasks take 0.1 ms; forked from the template, the interpreter's own pages are
        # the template's, not the worker's), and no worker was killed (1 attempt each).
        self.assertGreaterEqual(len({s.pid for s in stats}), 5)
        self.assertGreaterEqual(max(s.mem_after for s in stats), 38 * MiB)

    def test_stats_of_each_task(self):
        for start in ("exec", "fork"):
            with mock.patch.dict(os.environ, {"MEMVISOR_POOL_FORK": "no" if start == "exec"
                                              else "yes"}):
                with self.pool(workers=1) as pool:
                    pool.apply(pf.sq, (1,))  # a worker's first task also pays for its warm-up
                    self.assertEqual(pool.apply(pf.keep_mib, (16,)), 16)
                    s = pool.last_stats
                    r = pool.map_async(pf.sq, range(3))
                    r.get(TIMEOUT)
                    self.assertEqual(pool.template_start, start)
            self.assertEqual((s.status, s.worker, s.attempts, s.items), ("ok", 1, 1, 1))
            self.assertEqual(s.kind, "pool_funcs.keep_mib")
            # 16 MiB kept; the kernel's figures, with room for what the allocator does.
            self.assertGreaterEqual(s.retained, 8 * MiB)
            self.assertEqual(s.retained, s.mem_after - s.mem_before)
            # The peak is the worker's cgroup's; mem_after, its private memory, also counts
            # the template's anonymous pages it maps (docs/templates.md): a template started
            # by memvisor is smaller than what the task kept, one forked from this test
            # process is not.
            self.assertGreaterEqual(s.mem_peak, s.mem_after if start == "exec" else s.retained)
            self.assertGreaterEqual(s.duration, 0)
            self.assertEqual(len(r.stats), 3)
            self.assertEqual(len({st.task for st in r.stats}), 3)

    def test_a_big_answer_is_not_what_the_task_kept(self):
        # A task that keeps nothing and returns 12 MiB: its retained and heap_retained are
        # what it kept, as the worker measured itself before it made the result (its private
        # memory, statm; its live heap bytes, mallinfo2), not the result and its pickled
        # bytes (docs/run-files.md, "Per-task figures"); nor does the task after it show them
        # going away. After a big answer the worker library gives the allocator's free memory
        # back (malloc_trim): retained may be lower, by what the allocator held free.
        # Lock-step, one worker forked from the template: its heap figures are its own
        # (heap_source "worker"), sent at the big answer's end.
        with self.pool(workers=1) as pool:
            pool.apply(pf.sq, (1,))
            seen = []
            for mib in (0, 12, 0, 12, 0):
                start, end, result = pool.apply(pf.answer_mib, (mib,))
                self.assertEqual(len(result), mib * MiB)
                del result
                seen.append((mib, start, end, pool.last_stats))
        self.assert_kept_what_it_measured(seen)

    def assert_kept_what_it_measured(self, seen):
        """seen: (MiB, the worker's own (private, free, live heap) at the task's start and
        end, its TaskStats) per task: retained and heap_retained within 2 MiB of the worker's
        own view; retained may be lower by what the allocator held free (the trim)."""
        rows = {}
        for path in glob.glob(os.path.join(self.tmp, "state", "*", "results.jsonl")):
            with open(path) as f:
                rows.update((r["task"], r) for r in map(json.loads, f))
        for mib, start, end, s in seen:
            self.assertEqual(s.retained, s.mem_after - s.mem_before)
            own, free = end[0] - start[0], end[1]
            why = (mib, own, free, [(m, x.retained) for m, _, _, x in seen])
            self.assertLessEqual(s.retained - own, 2 * MiB, why)
            self.assertGreaterEqual(s.retained - own, -2 * MiB - max(free, 0), why)
            row = rows[s.task]
            self.assertEqual(row.get("heap_source"), "worker", row.get("heap_source"))
            self.assertLessEqual(abs(row["heap_retained"] - (end[2] - start[2])), 2 * MiB,
                                 (mib, [(m, rows[x.task]["heap_retained"]) for m, _, _, x in seen]))

    def test_a_big_task_is_not_what_the_task_kept(self):
        # A task given 2 MiB that keeps nothing: its retained and heap_retained are what it
        # kept, as the worker measured itself, not the task's bytes and its decoded argument
        # (held until the next task, they read +10 MiB and the next task as much negative);
        # the worker lets them go before its answer ends (docs/protocols.md, "Big tasks").
        # A first big task, not measured, has the trim give back what the allocator held
        # free (the caller's heap the worker was forked with, as for big answers).
        with self.pool(workers=1) as pool:
            pool.apply(pf.sq, (1,))
            pool.apply(pf.given_mib, (b"w" * (2 * MiB),))
            seen = []
            for mib in (0, 2, 0, 2, 0):
                start, end, n = pool.apply(pf.given_mib, (b"t" * (mib * MiB),))
                self.assertEqual(n, mib * MiB)
                seen.append((mib, start, end, pool.last_stats))
        self.assert_kept_what_it_measured(seen)

    def test_map_groups_quick_items_and_keeps_slow_ones_alone(self):
        # Without a chunksize: tiny items go in tasks of ~20 ms (at least 50 tasks a worker),
        # once the first answers say how long an item takes; slow items stay one a task.
        # The task time is a task's duration as memvisor measures it, a round trip included:
        # 0.2 s here, so that a loaded host's slow round trips cannot hide the grouping.
        # Each task's size is what the item time known when it was sized says: a single
        # item while nothing is known, or while the answers so far say items are slow (a
        # worker's wall-clock time: a loaded host preempts a 1-us call for milliseconds).
        from memvisor import _pool
        known = []  # item_seconds each task of the quick map was sized on, in order

        def sized(n, workers, item_seconds):
            known.append(item_seconds)
            return auto_size(n, workers, item_seconds)
        auto_size = _pool._auto_size
        with self.pool() as pool, mock.patch.object(_pool, "AUTO_TASK_SECONDS", 0.2), \
                mock.patch.object(_pool, "_auto_size", sized):
            quick = pool.map_async(pf.sq, range(20000))
            self.assertEqual(quick.get(TIMEOUT), [x * x for x in range(20000)])
        with self.pool() as pool:
            # items of 10 ms: one a task (each call is timed on its own answers)
            slow = pool.starmap_async(pf.slow, [(x, 0.01) for x in range(300)])
            self.assertEqual(slow.get(TIMEOUT * 2), list(range(300)))
        sizes = [s.items for s in {s.task: s for s in quick.stats}.values()]
        self.assertEqual(sum(sizes), 20000)
        self.assertLess(len(sizes), 2000, "quick items were not grouped")
        self.assertLessEqual(max(sizes), 20000 // (2 * 50))
        self.assertEqual(sizes[0], 1)  # before any answer: one item
        # ... and no more tasks than 2 a worker before the first answer came
        self.assertEqual(len(known), len(sizes))
        self.assertIsNone(known[0])
        self.assertLessEqual(known.count(None), 2 * 2, known[:20])
        # single items only while no answer said items are quick (the last task may hold
        # the one item left); grouped ones once they did
        for size, seconds in zip(sizes[:-1], known):
            quick_items = seconds is not None and seconds < _pool.AUTO_ALONE_SECONDS
            self.assertEqual(size > 1, quick_items, (sizes[:20], known[:20]))
        self.assertEqual({s.items for s in slow.stats}, {1})

    def test_auto_chunks_wait_for_answers_with_two_tasks_a_worker_in_flight(self):
        from memvisor import _pool, _results
        job = _results.AsyncResult(10000, False, None, None)
        waits = []

        def next_answer(j, n):  # the answer comes: a task of the sizes sent took 1 us an item
            waits.append((n, j.timed))
            j.time_items(1e-6 * sizes[n], sizes[n])
        sizes = []
        for chunk, first in _pool._auto_chunks(job, range(10000), 10000, 2, next_answer):
            self.assertEqual(first, sum(sizes))
            sizes.append(len(chunk))
        self.assertEqual(sum(sizes), 10000)
        self.assertEqual(sizes[:4], [1, 1, 1, 1])  # nothing known: one item, 4 in flight
        self.assertEqual(waits[0], (0, 0))  # then it waited for the first answer
        self.assertEqual(sizes[4], 10000 // (2 * 50))  # 1 us items: the 50-a-worker cap
        # every wait came with 4 tasks in flight, for the answer of the oldest
        self.assertEqual([n for n, _t in waits], list(range(len(waits))))
        self.assertEqual(len(waits), len(sizes) - 4)
        # the item time is weighted by items: one cold single item weighs little
        job2 = _results.AsyncResult(10, False, None, None)
        job2.time_items(100e-6, 1)
        job2.time_items(100 * 2e-6, 100)
        self.assertLess(job2.item_seconds, 4e-6)

    def test_answers_carry_the_functions_own_time(self):
        from memvisor import _codec
        body = _codec.encode_done([1, "two"], 0.25)
        obj = {"task": 3, "status": "ok", "result": body.decode(), "duration_ms": 900}
        ok, values, stats, seconds = _codec.decode_result(obj, 2, 0)
        self.assertEqual((ok, values, seconds, stats.duration), (True, [1, "two"], 0.25, 0.9))
        # the results as Latin-1 text through memvisor's JSON: every byte comes back
        values = [b"\n\x00\xff \x80", "\u00e9 \U0001f600", 2.5, None, 2 ** 70]
        body = _codec.encode_done(values, 0.5)
        body.decode("utf-8")  # memvisor writes it as "result", never as "result_base64"
        obj["result"] = json.loads(json.dumps(body.decode()))
        self.assertEqual(_codec.decode_result(obj, 5, 0)[:2], (True, values))
        # the older form, base64 (and its seconds), still reads; no timing without them
        old = base64.b64encode(pickle.dumps([1, "two"])).decode()
        obj["result"] = old + " 0.125"
        self.assertEqual(_codec.decode_result(obj, 2, 0)[1:4:2], ([1, "two"], 0.125))
        obj["result"] = old
        self.assertEqual(_codec.decode_result(obj, 2, 0)[3], None)
        for bad in ("x" + body.decode(), body.decode()[:-3], old + " x"):
            obj["result"] = bad  # a bad figure or a cut pickle: the answer cannot be read
            ok, err, _stats, _seconds = _codec.decode_result(obj, 5, 0)
            self.assertFalse(ok)
            self.assertIsInstance(err, memvisor.PoolError)

    def test_auto_chunk_size(self):
        from memvisor import _pool
        self.assertEqual(_pool._auto_size(100000, 2, None), 1)  # nothing timed yet
        self.assertEqual(_pool._auto_size(100000, 2, 0.02), 1)  # slower than 5 ms
        self.assertEqual(_pool._auto_size(100000, 2, 0.005), 1)  # 5 ms: still alone
        self.assertEqual(_pool._auto_size(100000, 2, 0.004), 5)  # quicker: ~20-ms tasks
        self.assertEqual(_pool._auto_size(100000, 2, 0.002), 10)
        self.assertEqual(_pool._auto_size(100000, 2, 0.0001), 200)  # 20 ms of 0.1-ms items
        self.assertEqual(_pool._auto_size(100000, 2, 1e-9), 1000)  # 50 tasks a worker
        self.assertEqual(_pool._auto_size(150, 2, 1e-9), 1)  # small maps: one item a task
        self.assertEqual(_pool._auto_size(10 ** 6, 4, 1e-6), 5000)

    def test_each_task_is_measured_after_it_ended(self):
        # memvisor samples workers on a timer (here every 1 ms); a sample taken in the loop
        # iteration that then reads a task's answer was taken before the answer: it must not
        # serve as the task's "after" (channel.c invalidates it per read). Each task keeps
        # 16 MiB (and, once, the allocator keeps a freed 16 MiB more: glibc's adaptive mmap
        # threshold moves the next temporary into the heap).
        with self.pool(workers=1, sample_interval="1ms") as pool:
            pool.apply(pf.sq, (1,))
            r = pool.map_async(pf.keep_mib, [16] * 12)
            r.get(TIMEOUT)
        for s in r.stats:
            self.assertGreaterEqual(s.retained, 15 * MiB, [x.retained >> 20 for x in r.stats])
            self.assertLessEqual(s.retained, 34 * MiB, [x.retained >> 20 for x in r.stats])
            # The peak is the worker's cgroup's; mem_after, its private memory, also counts
            # the template's pages it maps (charged to the template): the peak holds what
            # the task kept.
            self.assertGreaterEqual(s.mem_peak, s.retained)

    def test_a_leak_suspect_is_logged_with_its_snapshot(self):
        with self.assertLogs("memvisor", logging.INFO) as logs:
            with self.pool(workers=1, window=20, warmup=2) as pool:
                list(pool.imap_unordered(pf.leak_64k, range(120)))
                report = pool.report()
        said = [r for r in logs.records if r.getMessage().startswith("leak suspect")]
        self.assertTrue(said, [r.getMessage() for r in logs.records])
        event = said[0].memvisor
        self.assertEqual(event["kind"], "pool_funcs.leak_64k")
        self.assertTrue(os.path.isfile(event["snapshot"]), event)
        self.assertIn(event["snapshot"], said[0].getMessage())
        # The report reads the run directory, and the copy of the results kept there.
        self.assertIn("pool_funcs.leak_64k", report)
        self.assertRegex(report, r"results\.jsonl \(120 lines")
        # In the with block the run has not ended: its counts so far (it said 0 ok).
        self.assertIn("tasks      120 ok, 0 failed, 0 quarantined so far", report)

    def test_a_suspect_among_other_functions_is_confirmed_by_running_it_alone(self):
        # Task lines start with the function's kind, so memvisor can tell a suspect's tasks
        # from the others' by their lines and run them alone on a fresh worker (before, the
        # lines started with the pickled function: no kind memvisor could route by, and a
        # growing worker was bisected over kinds that matched nothing).
        with self.assertLogs("memvisor", logging.INFO) as logs, \
                self.pool(workers=2, window=20, warmup=2) as pool:
            calls = [pool.apply_async(pf.leak_64k if i % 2 else pf.sq, (i,))
                     for i in range(400)]
            self.assertEqual([c.get(TIMEOUT) for c in calls],
                             [i if i % 2 else i * i for i in range(400)])
            run_dir = pool.run_dir
        with open(os.path.join(run_dir, "events.jsonl"), encoding="utf-8") as f:
            events = [json.loads(line) for line in f]
        verdicts = [(e.get("kind"), e.get("verdict")) for e in events
                    if e.get("event") == "leak_experiment" and e.get("step") == "verdict"]
        self.assertIn(("pool_funcs.leak_64k", "leak"), verdicts, verdicts)
        named = {e.get("kind") for e in events
                 if e.get("event") == "leak_suspect" and e.get("confirmed") is not False}
        self.assertEqual(named, {"pool_funcs.leak_64k"})
        # Logger "memvisor" says it in sentences: the suspicion, the experiment's verdict and
        # the confirmation (the verdict was memvisor's key=value line).
        said = [r.getMessage() for r in logs.records]
        self.assertTrue(any(m.startswith("leak suspect: tasks of pool_funcs.leak_64k")
                            and "to be confirmed by running it alone" in m for m in said), said)
        self.assertTrue(any(m.startswith("leak experiment on pool_funcs.leak_64k (isolation, ")
                            and "): leak, " in m for m in said), said)
        self.assertTrue(any(m.startswith("leak suspect: tasks of pool_funcs.leak_64k")
                            and "confirmed by heap,isolation" in m for m in said), said)
        self.assertFalse([m for m in said if "step=" in m], said)


class Deaths(PoolTest):
    def test_a_poison_input_is_quarantined_and_the_others_arrive(self):
        with self.pool(memory_soft="48M", memory_hard="64M", max_attempts=2) as pool:
            it = pool.imap(pf.hog_on, range(10))
            got = []
            for _ in range(10):
                try:
                    got.append(next(it))
                except memvisor.TaskQuarantined as exc:
                    got.append(exc)
            with self.assertRaises(StopIteration):
                next(it)
            # The same with return_exceptions, and the pool still works.
            listed = pool.map(pf.hog_on, [5, 6], return_exceptions=True)
            self.assertEqual(pool.apply(pf.sq, (12,)), 144)
        self.assertEqual(got[:5] + got[6:], [0, 2, 4, 6, 8, 12, 14, 16, 18])
        exc = got[5]
        self.assertIsInstance(exc, memvisor.TaskQuarantined)
        self.assertEqual(exc.index, 5)
        self.assertEqual(len(exc.attempts), 2)
        for a in exc.attempts:
            self.assertIn(a.reason, ("kernel_oom", "hard_limit"))
            self.assertGreaterEqual(a.mem_peak, 60 * MiB)
            self.assertEqual(a.signal, 9)
        self.assertEqual(exc.stats.status, "quarantined")
        # Its function, as every answered task says (it was the pickled function's base64).
        self.assertEqual(exc.stats.kind, "pool_funcs.hog_on")
        # memvisor's own results say so too: the task line starts with the function's kind.
        with open(os.path.join(pool.run_dir, "results.jsonl"), encoding="utf-8") as f:
            mine = [json.loads(line) for line in f]
        self.assertEqual({r["kind"] for r in mine if r["status"] == "quarantined"},
                         {"pool_funcs.hog_on"})
        self.assertIn("died on each of 2 attempts", str(exc))
        self.assertIsInstance(listed[0], memvisor.TaskQuarantined)
        self.assertEqual(listed[1], 12)


class Errors(PoolTest):
    def test_an_exception_carries_its_remote_traceback(self):
        with self.pool(workers=1) as pool:
            with self.assertRaises(KeyError) as cm:
                pool.apply(pf.raises_deep, (7,))
            exc = cm.exception
            self.assertEqual(exc.args, ("deep 7",))
            cause = exc.__cause__
            # multiprocessing's own class, as its Pool gives (CPython's test_traceback).
            self.assertIs(type(cause), multiprocessing.pool.RemoteTraceback)
            self.assertIs(memvisor.RemoteTraceback, multiprocessing.pool.RemoteTraceback)
            with open(pf.__file__) as f:
                line = next(i for i, text in enumerate(f, 1) if "THE RAISE" in text)
            self.assertIn(f'pool_funcs.py", line {line}, in _inner', str(cause))
            self.assertIn("in raises_deep", str(cause))
            self.assertNotIn("memvisor/_worker.py", str(cause))
            # An exception that does not come back as itself comes back as text.
            with self.assertRaises(memvisor.RemoteError) as cm:
                pool.apply(pf.raises_unpicklable, (1,))
            self.assertEqual(cm.exception.type_name, "pool_funcs.NeedsArgs")
            self.assertEqual(cm.exception.message, "no way back 1")
            self.assertIn("in raises_unpicklable", cm.exception.traceback)
            # A result that does not pickle fails its task with multiprocessing's
            # MaybeEncodingError (CPython's test_unpickleable_result): the error and the
            # value as text; a map's holds its chunk's values.
            with self.assertRaises(multiprocessing.pool.MaybeEncodingError) as cm:
                pool.apply(pf.returns_a_lock, (1,))
            self.assertIn("pickle", cm.exception.exc)
            self.assertIn("lock", cm.exception.value)
            with self.assertRaises(multiprocessing.pool.MaybeEncodingError) as cm:
                pool.map(pf.returns_a_lock, [1, 2], chunksize=2)
            self.assertTrue(cm.exception.value.startswith("[<unlocked _thread.lock"),
                            cm.exception.value)
            self.assertEqual(pool.apply(pf.sq, (4,)), 16)  # the worker goes on

    def test_an_exception_whose_str_raises_fails_its_task_only(self):
        # It crashed the worker (str(exc) in the FAIL answer raised): three workers died on
        # it and it came back TaskQuarantined; multiprocessing gives the exception.
        with self.pool(workers=1) as pool:
            with self.assertRaises(pf.NoStr) as cm:
                pool.map(pf.raises_no_str, [1, 2], chunksize=1)
            self.assertEqual(cm.exception.args, (1,))
            self.assertIn("in raises_no_str", str(cm.exception.__cause__))
            self.assertEqual(pool.last_stats.attempts, 1)
            self.assertEqual(pool.apply(pf.sq, (3,)), 9)

    def test_an_answer_over_max_message_fails_its_task_only(self):
        # A result over [worker] max_message (16 MiB by default; 30 MiB of bytes come back
        # from multiprocessing) ended its worker with a protocol error, three times, and came
        # back TaskQuarantined; over 64 MiB the worker raised and crashed, as often.
        with self.pool(workers=1, max_size="64K", max_message="256K") as pool:
            got = pool.map(pf.big_bytes, [(0x61, 0), (0xFF, 1), (0x00, 0)], chunksize=1,
                           return_exceptions=True)
            self.assertEqual(got[0], b"")
            self.assertIsInstance(got[1], ValueError)
            self.assertIn("max_message 262144 bytes", str(got[1]))
            self.assertEqual(got[2], b"")
            self.assertEqual(pool.last_stats.attempts, 1)
            pid = pool.last_stats.pid
            # An exception too long for a message comes back cut, as a RuntimeError.
            with self.assertRaisesRegex(RuntimeError, "ValueError .*too long.*: mmmm") as cm:
                pool.apply(pf.fail_long, (1,))
            self.assertLess(len(str(cm.exception)), 256 << 10)
            self.assertEqual((pool.last_stats.attempts, pool.last_stats.pid), (1, pid))
            # Just under the limit, a result comes back whole.
            n = (256 << 10) - 400
            self.assertEqual(pool.apply(pf.big_bytes, ((0x61, 0),)), b"")
            self.assertEqual(len(pool.apply(bytes, (n,))), n)

    def test_a_failed_map_calls_its_error_callback_once(self):
        # Item 1 fails in the feeder (it does not pickle) while item 0 runs and fails in the
        # worker: the second failure, arriving while the first one's callback ran, called the
        # error_callback again and changed what get() raised. multiprocessing calls it once.
        calls = []
        with self.pool(workers=1) as pool:
            def on_error(exc):
                calls.append(exc)
                deadline = time.monotonic() + TIMEOUT
                while pool.last_stats is None and time.monotonic() < deadline:
                    time.sleep(0.01)  # until item 0's failure has come back
            r = pool.map_async(pf.fail_on, [3, threading.Lock(), 5], chunksize=1,
                               error_callback=on_error)
            with self.assertRaises(TypeError) as cm:
                r.get(TIMEOUT)
            self.assertIsNotNone(pool.last_stats)
        self.assertEqual(calls, [cm.exception])

    def test_terminate_from_a_callback(self):
        # As multiprocessing allows: from the results thread (a result's callback) and from
        # the feeder (the error_callback of an item that does not pickle). It raised
        # RuntimeError("cannot join current thread") and left the pool half cleaned up.
        for args, kind in (([2], "callback"), ([threading.Lock()], "error_callback")):
            said = []
            pool = self.pool(workers=1)
            try:
                pool.apply(pf.sq, (1,))  # memvisor runs

                def stop(_value, pool=pool, said=said):
                    try:
                        pool.terminate()
                        said.append("terminated")
                    except BaseException as exc:  # noqa: BLE001 - what the test looks at
                        said.append(repr(exc))
                r = pool.map_async(pf.sq, args, **{kind: stop})
                r.wait(TIMEOUT)
                self.assertTrue(r.ready())
                self.assertEqual(said, ["terminated"], kind)
                self.assertIsNotNone(pool._sv.proc.returncode)  # memvisor is gone
            finally:
                pool.terminate()

    def test_functions_that_cannot_be_imported(self):
        def local(x):
            return x
        with self.pool() as pool:
            for fn in (lambda x: x, local, functools.partial(lambda x, y: x, 1)):
                with self.assertRaisesRegex(memvisor.NotImportable,
                                            "import functions by name") as cm:
                    pool.imap(fn, [1])
                self.assertIsInstance(cm.exception, TypeError)
            self.assertIsNone(pool.pid)  # refused before anything ran
            with self.assertRaises(memvisor.NotImportable):
                memvisor.Pool(1, initializer=lambda: None)
            # Importable here, not in a worker (a module made at run time): the task fails
            # with the worker's ImportError.
            dyn = types.ModuleType("mv_dynamic_module")
            exec("def f(x):\n    return x\n", dyn.__dict__)
            sys.modules["mv_dynamic_module"] = dyn
            try:
                self.assertEqual(pool.apply(pf.sq, (2,)), 4)  # the workers are up
                with self.assertRaisesRegex(ModuleNotFoundError, "mv_dynamic_module"):
                    pool.apply(dyn.f, (1,))
            finally:
                del sys.modules["mv_dynamic_module"]

    def test_a_first_function_that_cannot_be_imported_stops_the_pool(self):
        dyn = types.ModuleType("mv_dynamic_module2")
        exec("def f(x):\n    return x\n", dyn.__dict__)
        sys.modules["mv_dynamic_module2"] = dyn
        try:
            with self.pool(workers=1) as pool:
                with self.assertRaises(memvisor.PoolBroken) as cm:
                    pool.map(dyn.f, [1, 2])
        finally:
            del sys.modules["mv_dynamic_module2"]
        self.assertEqual(cm.exception.exit_code, 3)
        self.assertIn("No module named 'mv_dynamic_module2'", str(cm.exception))

    def test_initializer(self):
        with self.pool(initializer=pf.init_set, initargs=("ready",)) as pool:
            self.assertEqual(pool.map(pf.init_get, [1, 2]), [("ready", 1), ("ready", 2)])
        with self.pool(workers=1, initializer=pf.init_fail, initargs=(5,)) as pool:
            with self.assertRaises(memvisor.PoolBroken) as cm:
                pool.apply(pf.sq, (1,))
        self.assertIn("RuntimeError: initializer refuses 5", str(cm.exception))

    def test_arguments_too_long_for_a_task_line(self):
        with self.pool(workers=1, max_size="4K") as pool:
            got = pool.map(pf.sq, [2, "x" * 10000, 3], return_exceptions=True)
        self.assertEqual(got[0], 4)
        self.assertIsInstance(got[1], ValueError)
        self.assertIn("longest task line", str(got[1]))
        self.assertEqual(got[2], 9)


class Settings(PoolTest):
    def test_keywords_become_memvisor_settings_checked_at_once(self):
        with self.assertRaisesRegex(TypeError, "'memory_sof'.*did you mean 'memory_soft'"):
            memvisor.Pool(1, memory_sof="1G")
        with self.assertRaisesRegex(ValueError, r'Pool\(task_timeout=...\): \[limits\] '
                                                r'task_timeout: "30": missing unit'):
            memvisor.Pool(1, task_timeout=30)
        with self.assertRaisesRegex(ValueError, r"Pool\(memory_soft=...\): \[limits\] "
                                                r"memory_soft: 600M is above memory_hard = "
                                                r"512M \(set at Pool\(memory_hard=...\)\)"):
            memvisor.Pool(1, memory_soft="600M", memory_hard="512M")
        with self.assertRaisesRegex(TypeError, r"sets \[worker\] protocol itself"):
            memvisor.Pool(1, protocol="lines")
        with self.assertRaisesRegex(TypeError, "no setting 'limits.nope'"):
            memvisor.Pool(1, options={"limits.nope": 1})
        with self.assertRaises(ValueError):
            memvisor.Pool(0)
        # Good ones pass: a size in bytes, a bool, a timedelta, a dotted key.
        import datetime
        pool = memvisor.Pool(1, memory_soft=100 * MiB, enforce=False,
                             task_timeout=datetime.timedelta(seconds=2),
                             options={"leak.window": 30}, processes=1, maxtasksperchild=5)
        self.assertIn("limits.memory_soft=104857600", pool._args)
        self.assertIn("limits.enforce=no", pool._args)
        self.assertIn("limits.task_timeout=2000ms", pool._args)
        self.assertIn("leak.window=30", pool._args)
        self.assertIn("limits.max_tasks=5", pool._args)
        pool.close()
        pool.join()

    def test_a_pool_of_its_own_keywords_runs_memvisor_check_once(self):
        # Pool() ran `memvisor check` twice: for every key's section (key_sections), then on
        # its settings. The Pool's own keywords carry their sections (_run.POOL_SECTIONS);
        # other names, and errors, still ask memvisor for its keys.
        from memvisor import _run
        real, calls = _run._check, []

        def counting(binary, args):
            calls.append(list(args))
            return real(binary, args)

        state = {"supervisor.state_dir": os.path.join(self.tmp, "state")}

        def fresh():
            calls.clear()
            return mock.patch.dict(_run._sections_cache, clear=True), \
                mock.patch.dict(_run._checked_cache, clear=True)

        with mock.patch.object(_run, "_check", counting):
            a, b = fresh()
            with a, b:
                pool = memvisor.Pool(2, memory_soft="100M", maxtasksperchild=3, template=True,
                                     options=state)
                self.assertEqual(len(calls), 1, calls)
                self.assertIn("limits.memory_soft=100M", pool._args)
                self.assertIn("limits.max_tasks=3", pool._args)
                self.assertEqual(pool.map(pf.sq, range(4)), [0, 1, 4, 9])
                pool.close()
                pool.join()
                # memvisor's keys are known from that check: no second one for them.
                pool = memvisor.Pool(1, task_timeout="30s", options=state)
                self.assertEqual(len(calls), 2, calls)
                pool.close()
            a, b = fresh()
            with a, b:  # a dotted key memvisor does not know: still the TypeError
                with self.assertRaisesRegex(TypeError, "no setting 'limits.nope'"):
                    memvisor.Pool(1, options={"limits.nope": 1})
                self.assertEqual(len(calls), 2, calls)
                with self.assertRaisesRegex(ValueError, r"Pool\(memory_soft=...\): \[limits\] "
                                                        r"memory_soft: 600M is above"):
                    memvisor.Pool(1, memory_soft="600M", memory_hard="512M")
                self.assertEqual(len(calls), 3, calls)
            a, b = fresh()
            moved = dict(_run.POOL_SECTIONS, workers="limits")  # as if memvisor moved it
            with a, b, mock.patch.object(_run, "POOL_SECTIONS", moved):
                pool = memvisor.Pool(2, options=state)
                self.assertIn("supervisor.workers=2", pool._args)
                self.assertEqual(pool.workers, 2)
                self.assertEqual(len(calls), 3, calls)
                pool.close()
            a, b = fresh()
            with a, b:  # a keyword of its own that memvisor refuses: memvisor's message
                with self.assertRaisesRegex(ValueError, r"Pool\(memory_hard=...\)"):
                    memvisor.Pool(1, memory_hard="lots")
                self.assertEqual(len(calls), 2, calls)

    def test_a_key_in_two_sections_is_named_with_its_section(self):
        # No memvisor key is in two sections today: a `memvisor check` that says otherwise.
        from memvisor import _run
        text = "[a]\nshared = 1\nonly_a = 2\n[b]\nshared = 3\n"
        fake = lambda binary, args: subprocess.CompletedProcess(args, 0, text, "")  # noqa
        with mock.patch.object(_run, "_check", fake), \
                mock.patch.dict(_run._sections_cache, clear=True):
            with self.assertRaisesRegex(TypeError, r"options=\{'section.shared': ...\}"):
                _run.build_options("fake", None, {"shared": 1})
            args, _ = _run.build_options("fake", None, {"only_a": 5, "b.shared": 4})
        self.assertEqual(args, ["-o", "a.only_a=5", "-o", "b.shared=4"])

    def test_settings_are_checked_once_until_the_config_file_changes(self):
        from memvisor import _run
        config = os.path.join(self.tmp, "a.ini")
        with open(config, "w") as f:
            f.write("[limits]\nmemory_soft = 100M\n")
        real, calls = _run._check, []

        def counting(binary, args):
            calls.append(args)
            return real(binary, args)
        with mock.patch.object(_run, "_check", counting), \
                mock.patch.dict(_run._checked_cache, clear=True):
            binary = _run.find_binary()
            for _ in range(2):
                _, eff = _run.build_options(binary, config, {"workers": 2})
                self.assertEqual(eff["limits"]["memory_soft"], "100M")
                eff["limits"]["memory_soft"] = "changed by the caller"  # a copy each time
            self.assertEqual(len(calls), 1)
            _run.build_options(binary, config, {"workers": 3})  # other settings: checked
            self.assertEqual(len(calls), 2)
            with open(config, "w") as f:
                f.write("[limits]\nmemory_soft = 200M\n")
            os.utime(config, ns=(0, os.stat(config).st_mtime_ns + 10 ** 9))
            _, eff = _run.build_options(binary, config, {"workers": 2})
            self.assertEqual(eff["limits"]["memory_soft"], "200M")
            self.assertEqual(len(calls), 3)
            with open(config, "w") as f:  # a bad value is refused, and not kept
                f.write("[limits]\nmemory_soft = lots\n")
            os.utime(config, ns=(0, os.stat(config).st_mtime_ns + 2 * 10 ** 9))
            for _ in range(2):
                with self.assertRaises(ValueError):
                    _run.build_options(binary, config, {"workers": 2})
            self.assertEqual(len(calls), 5)

    def test_two_pools_in_one_state_directory(self):
        # No control socket unless asked: two pools would share STATE_DIR/control.sock.
        with self.pool(workers=1) as a, self.pool(workers=1) as b:
            self.assertIn("control.socket=none", a._args)
            ra, rb = a.map_async(pf.sq, range(5)), b.map_async(pf.add, [1])
            self.assertEqual(ra.get(TIMEOUT), [0, 1, 4, 9, 16])
            with self.assertRaises(TypeError):  # add() needs two arguments: b still answers
                rb.get(TIMEOUT)
            self.assertNotEqual(a.run_dir, b.run_dir)
        sock = os.path.join(self.tmp, "c.sock")
        with self.pool(workers=1, socket=sock) as c:
            self.assertNotIn("control.socket=none", c._args)
            self.assertEqual(c.apply(pf.sq, (3,)), 9)
            self.assertTrue(os.path.exists(sock))

    def test_a_callback_that_raises_is_logged_and_the_result_stands(self):
        def bad(_value):
            raise RuntimeError("callback broke")
        with self.pool(workers=1) as pool:
            with self.assertLogs("memvisor", logging.ERROR) as logs:
                r = pool.apply_async(pf.sq, (5,), callback=bad)
                self.assertEqual(r.get(TIMEOUT), 25)
        self.assertIn("exception in a result callback", logs.output[0])

    def test_missing_binary_is_a_clear_error(self):
        with self.assertRaisesRegex(memvisor.MemvisorNotFound, "not an executable file"):
            memvisor.Pool(1, memvisor=os.path.join(self.tmp, "nope"))
        env = dict(os.environ, PATH=self.tmp)
        env.pop("MEMVISOR_BIN")
        code = "import memvisor\ntry:\n    memvisor.Pool(1)\nexcept memvisor.MemvisorNotFound " \
               "as e:\n    print(e)\n"
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                             text=True, timeout=TIMEOUT, cwd=MODULE_DIR)
        self.assertIn("not on PATH", out.stdout, out.stderr)
        self.assertIn("MEMVISOR_BIN", out.stdout)

    def test_close_join_and_misuse(self):
        pool = self.pool()
        with self.assertRaisesRegex(ValueError, "still running"):
            pool.join()
        self.assertEqual(pool.map(pf.sq, [3]), [9])
        pool.close()
        with self.assertRaisesRegex(ValueError, "not running"):
            pool.map(pf.sq, [1])
        pool.join()
        self.assertEqual(pool._sv.proc.returncode, 0)
        with self.assertRaises(NotImplementedError):
            pickle.dumps(pool)
        # A pool closed or terminated cannot be entered again (CPython's test_enter): the
        # with block's exit would terminate it anyway.
        with self.assertRaisesRegex(ValueError, "not running"):
            with pool:
                pass
        unused = self.pool()
        with unused:
            pass
        with self.assertRaisesRegex(ValueError, "not running"):
            with unused:
                pass

    def test_a_calls_arguments_and_results_are_not_kept_after_it(self):
        # CPython's test_release_task_refs: the feeder held the last call (its job, with
        # the map's results) until the next call came.
        with self.pool() as pool:
            objs = [pf.Counted() for _ in range(10)]
            self.assertEqual(pf.Counted.alive, 10)
            self.assertEqual(len(pool.map(pf.same, objs)), 10)  # 10 copies, dropped here
            self.assertEqual(len(list(pool.imap(pf.same, objs))), 10)
            self.assertEqual(len(pool.apply(pf.same, (objs,))), 10)
            del objs
            deadline = time.monotonic() + 10.0  # the feeder ends its loop after the answer
            while pf.Counted.alive and time.monotonic() < deadline:
                select.select([], [], [], 0.01)
            self.assertEqual(pf.Counted.alive, 0)


def _alive(pid, start):
    """Whether process `pid`, started at `start` (clock ticks), still exists (even as a
    zombie: a process left unreaped is left behind)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return fields[19] == start


def _tree(root):
    """{pid: start time} of `root` and every descendant, from /proc."""
    parent, start = {}, {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parent[int(name)], start[int(name)] = int(fields[1]), fields[19]
    tree, grew = {root}, True
    while grew:
        more = {p for p, pp in parent.items() if pp in tree} - tree
        tree |= more
        grew = bool(more)
    return {p: start[p] for p in tree if p in start}


def _events(logs, event):
    """memvisor's events named `event` among captured log records."""
    return [r.memvisor for r in logs.records
            if getattr(r, "memvisor", {}).get("event") == event]


def _wait_events(logs, event, timeout=10.0):
    """_events, once there is one: memvisor's log lines come through their own thread, which
    may deliver an event after results that came later (a loaded host)."""
    deadline = time.monotonic() + timeout
    while not _events(logs, event) and time.monotonic() < deadline:
        time.sleep(0.01)
    return _events(logs, event)


def _status_mask(pid, field):
    with open(f"/proc/{pid}/status") as f:
        line = next(x for x in f if x.startswith(field + ":"))
    return int(line.split()[1], 16)


def _gone(pids):
    """Waits (bounded) until none of pids runs; the ones still there."""
    for _ in range(int(TIMEOUT * 10)):
        left = [p for p in pids if os.path.exists(f"/proc/{p}")]
        if not left:
            return []
        select.select([], [], [], 0.1)
    return left


class HandedOverTemplate(PoolTest):
    """The first template forked from the caller itself (memvisor/_handoff.py)."""

    def test_forked_from_the_caller_as_memvisor_would_start_it(self):
        r, w = os.pipe()  # the caller's: the template must not hold it open
        old = signal.signal(signal.SIGUSR1, lambda *_: None)
        signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGUSR2])
        try:
            with self.assertLogs("memvisor", logging.DEBUG) as logs:
                pool = self.pool(workers=2)
                self.assertEqual(pool.map(pf.sq, range(10)), [x * x for x in range(10)])
                self.assertEqual(pool.template_start, "fork")
                self.assertEqual(set(pool.map(pf.parent, range(4), chunksize=1)), {pool.pid})
                tpid = _wait_events(logs, "template_adopted")[0]["pid"]
                with open(f"/proc/{tpid}/stat") as f:
                    self.assertEqual(int(f.read().rsplit(")", 1)[1].split()[1]), pool.pid)
                self.assertEqual(os.getsid(tpid), tpid)  # a session of its own
                fds = f"/proc/{tpid}/fd"
                theirs = {os.readlink(f"{fds}/{n}") for n in os.listdir(fds)}
                for fd in (r, w):
                    self.assertNotIn(os.readlink(f"/proc/self/fd/{fd}"), theirs)
                bit = 1 << (signal.SIGUSR1 - 1)
                self.assertTrue(_status_mask(os.getpid(), "SigCgt") & bit)
                self.assertFalse(_status_mask(tpid, "SigCgt") & bit)
                blocked = 1 << (signal.SIGUSR2 - 1)
                self.assertTrue(_status_mask(threading.get_native_id(), "SigBlk") & blocked)
                self.assertFalse(_status_mask(tpid, "SigBlk") & blocked)
                # The environment memvisor gives a template, not the caller's.
                names = ("MEMVISOR_POOL_SPEC", "MEMVISOR_TEMPLATE_HANDOFF", "MEMVISOR_FD")
                self.assertNotIn("MEMVISOR_POOL_SPEC", os.environ)
                got = pool.apply(pf.environ, names)
                self.assertTrue(got[0].endswith("spec.pickle"), got)
                self.assertIsNone(got[1])
                # The channel's number: 3 unless this process had an fd there (r and w may
                # be 3 and 4): never one of this process's (FdThree).
                self.assertTrue(got[2].isdigit(), got)
                self.assertNotIn(int(got[2]), (r, w))
                with open(f"/proc/{tpid}/cgroup") as f:
                    cgroups = f.read()
                if f"memvisor-{pool.pid}/" in cgroups:  # memvisor runs with cgroups here
                    self.assertIn(f"memvisor-{pool.pid}/t.1\n", cgroups)
                # memvisor killed: the template and the workers die with it.
                others = [tpid] + list(pool.worker_pids)
                os.kill(pool.pid, signal.SIGKILL)
                self.assertEqual(_gone(others), [])
                pool.terminate()
        finally:
            signal.signal(signal.SIGUSR1, old)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGUSR2])
            os.close(r)
            os.close(w)
        self.assertEqual(len(_events(logs, "template_spawn")), 1)

    def test_the_pool_starts_before_the_template_has_set_itself_up(self):
        # The template holds a copy of subprocess's error pipe, whose EOF ends the caller's
        # Popen, until it sets up its fds: that comes first, so the pool's start (Popen) ends
        # at memvisor's exec and not after the template's other set-up, held here until the
        # test lets it go (a FIFO: the template replaces the caller's pipes by /dev/null).
        from memvisor import _handoff
        gate = os.path.join(self.tmp, "gate")
        os.mkfifo(gate)
        real = _handoff._arm_parent_death

        def held(parent):
            with open(gate, "rb") as f:
                f.read()
            real(parent)

        def stuck(*_):
            raise AssertionError("the pool's start waited for the template's set-up")

        old = signal.signal(signal.SIGALRM, stuck)
        signal.alarm(int(TIMEOUT))
        try:
            with mock.patch.object(_handoff, "_arm_parent_death", held):
                pool = self.pool(workers=1)
                r = pool.apply_async(pf.sq, (7,))  # starts memvisor, forks the template
        finally:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, old)
        with pool:
            self.assertEqual(pool.template_start, "fork")
            fd = -1
            for _ in range(int(TIMEOUT * 10)):  # until the held template reads the gate
                try:
                    fd = os.open(gate, os.O_WRONLY | os.O_NONBLOCK)
                    break
                except OSError:  # ENXIO: no reader (yet)
                    select.select([], [], [], 0.1)
            self.assertGreaterEqual(fd, 0, "the template never waited at the gate")
            self.assertFalse(r.ready())  # the template is held: no worker yet
            os.write(fd, b"go")
            os.close(fd)
            self.assertEqual(r.get(TIMEOUT), 49)

    def test_the_template_leaves_the_callers_heap_shared(self):
        # The template wrote to every object the caller had: a census of them before its
        # HELLO and again after its warm-up (gc.get_objects() takes a reference to each) and
        # any full collection there; each page of the caller's heap holding one was copied
        # into the template, charged to its cgroup (a caller holding 2M lists: 165 MB, and
        # 2.6-4.2 s before its first fork). They are frozen in it now.
        held = [[i] for i in range(400_000)]  # ~45 MiB of small objects, the caller's
        with self.assertLogs("memvisor", logging.DEBUG) as logs:
            pool = self.pool(workers=1)
            self.assertEqual(pool.map(pf.sq, range(3)), [0, 1, 4])
            self.assertEqual(pool.template_start, "fork")
            pool.close()
            pool.join()
        del held
        ready = _events(logs, "template_ready")
        gone = _events(logs, "template_exit")
        if not ready or "usage" not in ready[0]:
            self.skipTest("no memory cgroups: the template's own memory is not measured")
        self.assertLess(ready[0]["usage"], 16 * MiB, ready[0])
        self.assertLess(gone[0]["peak"], 16 * MiB, gone[0])

    def test_a_forked_workers_snapshot_counts_the_types_it_grew(self):
        # A forked worker's census sees only objects made since its fork (the template
        # freezes its own before each): the baseline its snapshots compare with was the
        # template's census of everything it held, so a type the caller also held (here
        # 5,000 Kept) never showed as grown in the worker that kept more of them.
        held = [pf.Kept() for _ in range(5000)]
        with self.pool(workers=1, window=20, warmup=2) as pool:
            with self.assertLogs("memvisor", logging.INFO) as logs:
                list(pool.imap_unordered(pf.leak_kept, range(120)))
            self.assertEqual(pool.template_start, "fork")
        del held
        said = [r.memvisor for r in logs.records
                if r.getMessage().startswith("leak suspect")]
        self.assertTrue(said, [r.getMessage() for r in logs.records])
        with open(said[0]["snapshot"], encoding="utf-8") as f:
            snap = json.load(f)
        types = {t["type"]: t for t in snap["heap"]["types"]}
        self.assertIn("Kept", types, snap)
        self.assertGreater(types["Kept"]["diff"], 0)

    def test_a_thread_leaving_the_kernel_is_waited_for_a_moment(self):
        # A joined thread outlives join() in the kernel for a moment (a Pool closed just
        # before this one): the count waits for it when Python knows of no other thread; a
        # library's own thread (here a raw pthread, unknown to Python) is counted after the
        # wait. Raw threads: pthread_create(usleep, N): the thread sleeps N us and exits.
        import ctypes
        from memvisor import _handoff
        libc = ctypes.CDLL(None, use_errno=True)
        usleep = ctypes.cast(libc.usleep, ctypes.c_void_p)

        def raw_thread(us):
            tid = ctypes.c_ulong()
            self.assertEqual(libc.pthread_create(ctypes.byref(tid), None, usleep,
                                                 ctypes.c_void_p(us)), 0)
            return tid

        self.assertEqual(threading.active_count(), 1)
        short = raw_thread(20_000)
        with mock.patch.object(_handoff, "_EXITING_WAIT", 30.0):
            self.assertEqual(_handoff.threads(), 1)  # gone within the wait
        libc.pthread_join(short, None)
        long = raw_thread(500_000)
        try:
            with mock.patch.object(_handoff, "_EXITING_WAIT", 0.05):
                self.assertEqual(_handoff.threads(), 2)  # still there after it
        finally:
            libc.pthread_join(long, None)

    def test_a_start_that_fails_before_memvisor_leaves_no_fd_open(self):
        # The results FIFO cannot be made: the error reaches the caller, and the handoff's
        # fds (a socketpair, a pipe, the pidfd's slot) are closed with the FIFO's.
        from memvisor import _run
        before = set(os.listdir("/proc/self/fd"))
        pool = self.pool(workers=1)
        with mock.patch.object(_run.os, "mkfifo", side_effect=OSError(28, "No space left")):
            with self.assertRaises(OSError):
                pool.map(pf.sq, range(3))
        self.assertEqual(pool.template_start, "fork")
        pool.terminate()
        self.assertEqual(set(os.listdir("/proc/self/fd")) - before, set())

    def test_other_threads_make_memvisor_start_the_template(self):
        stop = threading.Event()
        t = threading.Thread(target=stop.wait)
        t.start()
        try:
            with self.assertLogs("memvisor", logging.DEBUG) as logs:
                with self.pool(workers=1) as pool:
                    self.assertEqual(pool.map(pf.sq, range(5)), [0, 1, 4, 9, 16])
                    self.assertEqual(pool.template_start, "exec")
        finally:
            stop.set()
            t.join()
        self.assertTrue(any("threads in this process" in r.getMessage()
                            for r in logs.records), [r.getMessage() for r in logs.records])
        self.assertEqual(_events(logs, "template_adopted"), [])
        self.assertEqual(len(_events(logs, "template_ready")), 1)

    def test_without_memory_cgroups_memvisor_starts_the_template(self):
        # A worker's limit figure would be its private memory, which counts what it shares
        # with a copy of the caller: the Pool does not fork it, memvisor would refuse it.
        with self.assertLogs("memvisor", logging.DEBUG) as logs:
            with self.pool(workers=1, cgroup="off") as pool:
                self.assertEqual(pool.map(pf.sq, range(5)), [0, 1, 4, 9, 16])
                self.assertEqual(pool.template_start, "exec")
        self.assertTrue(any("no memory cgroups" in r.getMessage() for r in logs.records),
                        [r.getMessage() for r in logs.records])
        self.assertEqual(_events(logs, "template_adopted"), [])
        self.assertEqual(_events(logs, "template_handoff_refused"), [])

    def test_a_caller_with_its_stdio_closed_hands_the_template_over(self):
        # The handoff's fds would be 0-2, which memvisor refuses (subprocess puts memvisor's
        # stdio there): the forked template was then left a zombie for the run, and its
        # pidfd was in every worker.
        report = os.path.join(self.tmp, "report.json")
        script = os.path.join(self.tmp, "closed.py")
        with open(script, "w") as f:
            f.write(CLOSED_STDIO_SCRIPT)
        out = subprocess.run(["sh", "-c", 'exec "$0" "$@" <&- >&- 2>&-', sys.executable, script,
                              MODULE_DIR, os.path.join(self.tmp, "state"), report],
                             timeout=TIMEOUT)
        self.assertEqual(out.returncode, 0)
        with open(report) as f:
            got = json.load(f)
        self.assertEqual(got["result"], [x * x for x in range(10)])
        self.assertEqual(got["start"], "fork")
        self.assertEqual(got["refused"], [])
        self.assertEqual(len(got["adopted"]), 1)
        self.assertEqual(got["pidfds"], {})  # none in memvisor's children

    def test_a_template_that_dies_at_adoption_is_replaced_by_a_started_one(self):
        from memvisor import _handoff
        with mock.patch.object(_handoff, "_template", lambda *_: os._exit(9)):
            with self.assertLogs("memvisor", logging.DEBUG) as logs:
                with self.pool(workers=2) as pool:
                    self.assertEqual(pool.map(pf.sq, range(20)), [x * x for x in range(20)])
                    self.assertEqual(pool.template_start, "fork")
        gone = _events(logs, "template_exit")
        self.assertEqual((gone[0]["template"], gone[0]["status"], gone[0]["reason"]),
                         (1, 9, "crash"))
        self.assertEqual([e["template"] for e in _events(logs, "template_ready")], [2])


class Proxies(PoolTest):
    def test_a_managers_proxies_work_in_workers_forked_or_started(self):
        # CPython's test_pool_initializer with a task (workers start at the first): a
        # started worker had its own authkey (AuthenticationError: the pool broke), and a
        # template forked from here kept this process's connection to the manager, which
        # wrote into the template's channel or /dev/null (quarantined, or the pool broke).
        with multiprocessing.Manager() as mgr:
            for template in (True, False):
                ns = mgr.Namespace()
                ns.inits = ns.total = 0
                with self.pool(workers=1, initializer=pf.init_ns, initargs=(ns,),
                               template=template) as pool:
                    self.assertEqual(pool.apply(pf.ns_add, (ns, 5)), 5)
                    self.assertEqual(pool.template_start, "fork" if template else "exec")
                self.assertEqual((ns.inits, ns.total), (1, 5), template)


class StoppedAtStart(unittest.TestCase):
    """memvisor._worker with a fake memvisor: no initializer in a process that is stopped as
    it starts (a template memvisor retires returns from Worker() stopped, as a worker given
    STOP before its first task)."""

    def start(self, tmp, mode, marker, stop=False):
        import memvisor_worker as mw  # noqa: PLC0415
        spec = os.path.join(tmp, "spec")
        with open(spec, "wb") as f:
            pickle.dump({"initializer": pickle.dumps((os.mkdir, (marker,)))}, f)
        sup, theirs = socket.socketpair()
        sup.settimeout(TIMEOUT)
        env = dict(os.environ, MEMVISOR_FD=str(theirs.fileno()), MEMVISOR_POOL_SPEC=spec,
                   PYTHONPATH=MODULE_DIR)
        proc = subprocess.Popen([sys.executable, "-m", "memvisor._worker"], env=env,
                                pass_fds=(theirs.fileno(),), stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        theirs.close()

        def recv():
            head = b""
            while len(head) < mw.HEADER_SIZE:
                head += sup.recv(mw.HEADER_SIZE - len(head))
            length, mtype = mw._HEADER.unpack(head)[:2]
            body = b""
            while len(body) < length:
                body += sup.recv(length - len(body))
            return mtype

        self.assertEqual(recv(), mw.MSG_HELLO)
        sup.sendall(mw._HEADER.pack(mw._GO.size, mw.MSG_GO, 0, 0)
                    + mw._GO.pack(mw.PROTOCOL_VERSION, 1, 1, mode)
                    + (mw._HEADER.pack(0, mw.MSG_STOP, 0, 0) if stop else b""))
        if mode == mw.MODE_TEMPLATE:
            self.assertEqual(recv(), mw.MSG_TEMPLATE)  # serving: memvisor retires it now
        return proc, sup

    def stop(self, proc, sup, told=False):
        """Stops it (told: it had its STOP with GO, and may be gone already: a STOP sent
        now could find its end of the socket closed, EPIPE)."""
        import memvisor_worker as mw  # noqa: PLC0415
        if not told:
            sup.sendall(mw._HEADER.pack(0, mw.MSG_STOP, 0, 0))
        _, err = proc.communicate(timeout=TIMEOUT)
        sup.close()
        self.assertEqual(proc.returncode, 0, err)

    def test_a_retired_template_or_a_worker_stopped_at_once_runs_no_initializer(self):
        # A retiring template ran the initializer (Worker() returned, stopped, and main()
        # went on): a pool's manager counted 2 initializer calls for 1 worker.
        import memvisor_worker as mw  # noqa: PLC0415
        tmp = tempfile.mkdtemp(prefix="mv-pool-test-")
        try:
            for mode in (mw.MODE_TEMPLATE, mw.MODE_BATCH):
                marker = os.path.join(tmp, f"init-{mode}")
                # a worker: STOP with GO, read with it (before the initializer)
                told = mode == mw.MODE_BATCH
                proc, sup = self.start(tmp, mode, marker, stop=told)
                self.stop(proc, sup, told)
                self.assertFalse(os.path.exists(marker), mode)
            # A worker not stopped runs it (at GO, before its first task).
            marker = os.path.join(tmp, "init-ran")
            proc, sup = self.start(tmp, mw.MODE_BATCH, marker)
            deadline = time.monotonic() + TIMEOUT
            while not os.path.exists(marker) and time.monotonic() < deadline:
                time.sleep(0.01)
            self.stop(proc, sup)
            self.assertTrue(os.path.exists(marker))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


class FdThree(PoolTest):
    """A regular file of this process's on fd 3 or 4 (a module's, opened at its import: a
    logging FileHandler's), where an exec'd worker has its channel and heap page. A template
    forked from here put its channel on fd 3 over the module's file: each note() wrote into
    the channel (protocol_error 3 times, the task quarantined); then (6da7f68) such a
    process's template was started by memvisor (template_start "exec"), which imports the
    module again. Now the template is forked, its channel and its workers' on a number this
    process did not have."""

    @contextlib.contextmanager
    def module_file_on(self, fd, log):
        """pool_fd3 imported with its file on `fd` (3 or 4; on 4, a file of the test's own on
        3), this process's fds 3 and 4 set aside meanwhile."""
        saved = [n for n in (3, 4) if _fd_open(n)]
        kept = {n: os.dup(n) for n in saved}
        for n in saved:
            os.close(n)
        other = None
        try:
            if fd == 4:
                other = open(os.path.join(self.tmp, "other"), "w", encoding="utf-8")
                self.assertEqual(other.fileno(), 3)
            with mock.patch.dict(os.environ, POOL_FD3_LOG=log):
                sys.modules.pop("pool_fd3", None)
                import pool_fd3  # noqa: PLC0415 - its file must land on `fd`
                self.assertEqual(pool_fd3.LOG.fileno(), fd)
                try:
                    yield pool_fd3
                finally:
                    pool_fd3.LOG.close()
        finally:
            sys.modules.pop("pool_fd3", None)
            if other is not None:
                other.close()
            for n, copy in kept.items():
                os.dup2(copy, n)
                os.close(copy)

    def check_worker(self, got, fd, log):
        """A task's view of its worker: the module's file where it was, the channel a socket
        on another number, named by $MEMVISOR_FD."""
        self.assertEqual((got["log_fd"], got["log_is"]), (fd, log), got)
        self.assertNotEqual(got["chan"], 3 if fd == 4 else fd, got)  # no file of the test's
        self.assertTrue(got["chan_is"].startswith("socket:"), got)

    def test_a_file_a_module_opened_on_fd_3_or_4_stays_its_own_in_a_forked_template(self):
        for fd in (3, 4):
            with self.subTest(fd=fd):
                log = os.path.join(self.tmp, f"notes{fd}")
                with self.module_file_on(fd, log) as mod:
                    with self.assertLogs("memvisor", logging.DEBUG) as logs:
                        with self.pool(workers=1) as pool:
                            got = pool.map(mod.where, range(3), chunksize=1)
                            stats = pool.last_stats
                            start = pool.template_start
                    self.assertEqual(start, "fork")  # "exec" before: started by memvisor
                    self.assertEqual(len(_events(logs, "template_adopted")), 1)
                    self.assertEqual([g["x"] for g in got], [0, 1, 2])
                    for g in got:
                        self.check_worker(g, fd, log)
                    # The worker's figures of each task still come (the channel was found).
                    self.assertIsNotNone(stats)
                    self.assertEqual((stats.status, stats.attempts, stats.items), ("ok", 1, 1))
                    self.assertEqual(stats.kind, "pool_fd3.where")
                    self.assertIsNotNone(stats.mem_after)
                with open(log, encoding="utf-8") as f:
                    self.assertEqual(sorted(f.read().split()), ["0", "1", "2"])
                self.assertEqual(_events(logs, "protocol_error"), [])

    def test_a_pipe_of_this_process_on_fd_3_is_not_the_channel(self):
        # A pipe's write end on fd 3 (as a module's socket or pipe opened at its import: a
        # logging SysLogHandler's): the template replaced it by its channel, and each write
        # to it in a task went into the channel (protocol_error, the task quarantined). It is
        # /dev/null there now, as the caller's other pipes.
        saved = [n for n in (3, 4, 5) if _fd_open(n)]
        kept = {n: os.dup(n) for n in saved}
        for n in saved:
            os.close(n)
        try:
            hold = os.open(os.devnull, os.O_RDONLY)
            r, w = os.pipe()
            os.dup2(w, 3)  # over `hold`: the write end on 3
            os.close(w)
            self.assertEqual(hold, 3)
            try:
                with self.assertLogs("memvisor", logging.DEBUG) as logs:
                    with self.pool(workers=1) as pool:
                        got = pool.map(functools.partial(pf.write_fd, 3), range(3), chunksize=1)
                        start = pool.template_start
            finally:
                os.close(3)
                os.close(r)
        finally:
            for n, copy in kept.items():
                os.dup2(copy, n)
                os.close(copy)
        self.assertEqual(start, "fork")
        self.assertEqual(got, [0, 1, 2])
        self.assertEqual(_events(logs, "protocol_error"), [])

    def test_the_channel_goes_to_the_lowest_number_this_process_has_no_fd_on(self):
        from memvisor import _handoff
        self.assertEqual(_handoff._channel_fd(()), 3)
        self.assertEqual(_handoff._channel_fd((3, 4, 6)), 5)
        self.assertEqual(_handoff._channel_fd((4, 5)), 3)
        taken = _handoff._open_fds()
        self.assertTrue(all(n > 2 and _fd_open(n) for n in taken), taken)  # not the listing's
        r, w = os.pipe()
        try:
            now = _handoff._open_fds()
            self.assertEqual(set(now) - set(taken), {r, w})
            self.assertNotIn(_handoff._channel_fd(now), now)
        finally:
            os.close(r)
            os.close(w)

    def test_workers_the_template_forks_after_a_recycle_get_the_right_fds(self):
        log = os.path.join(self.tmp, "notes")
        with self.module_file_on(3, log) as mod:
            with self.assertLogs("memvisor", logging.DEBUG) as logs:
                with self.pool(workers=1, max_tasks=2) as pool:
                    got = pool.map(mod.where, range(8), chunksize=1)
                    start = pool.template_start
        self.assertEqual(start, "fork")
        self.assertEqual([g["x"] for g in got], list(range(8)))
        pids = {g["pid"] for g in got}
        self.assertGreaterEqual(len(pids), 4)  # 2 tasks a worker, then a new one
        # Each one forked by a template (an exec'd worker has no memvisor_template), and the
        # only template was the handed-over one (1): none started after it.
        self.assertEqual({g["from_template"] for g in got}, {True})
        self.assertEqual(len(_events(logs, "template_adopted")), 1)
        self.assertEqual({e["template"] for e in _events(logs, "template_ready")}, {1})
        for g in got:
            self.check_worker(g, 3, log)
        with open(log, encoding="utf-8") as f:
            self.assertEqual(sorted(f.read().split(), key=int), [str(x) for x in range(8)])
        self.assertEqual(_events(logs, "protocol_error"), [])


def _fd_open(fd):
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


class Terminate(PoolTest):
    def test_terminate_mid_map_leaves_no_process_behind(self):
        notes = os.path.join(self.tmp, "notes")
        os.mkdir(notes)
        pool = self.pool()
        r = pool.starmap_async(pf.note_and_sleep, [(notes, i) for i in range(6)])
        # Calls behind it: one that memvisor may have read, an endless one it cannot.
        queued = pool.map_async(pf.sq, range(3), return_exceptions=True)
        endless = pool.imap(pf.sq, itertools.count())
        # Both workers are inside a task once each wrote its note (bounded by the select).
        fd = os.open(notes, os.O_RDONLY)
        try:
            for _ in range(int(TIMEOUT * 10)):
                if len(os.listdir(notes)) >= 2:
                    break
                select.select([], [], [], 0.1)
        finally:
            os.close(fd)
        self.assertEqual(len(os.listdir(notes)), 2)
        procs = _tree(pool.pid)
        workers = {int(n) for n in os.listdir(notes)}
        self.assertTrue(workers <= set(procs), (workers, procs))
        self.assertEqual(pool.worker_pids, workers)
        pool.terminate()
        left = [p for p, start in procs.items() if _alive(p, start)]
        self.assertEqual(left, [], "processes left behind")
        with self.assertRaises(memvisor.PoolTerminated):
            r.get(TIMEOUT)
        self.assertEqual([type(x) for x in queued.get(TIMEOUT)], [memvisor.PoolTerminated] * 3)
        with self.assertRaises(memvisor.PoolTerminated):
            endless.next(TIMEOUT)
        pool.join()  # after terminate: returns at once


# The start of a script run as python3 SCRIPT MODULE_DIR STATE_DIR REPORT: `sq` for its Pool,
# and `seen`, memvisor's events as the Pool logs them (the main process's).
EVENTS_SCRIPT = textwrap.dedent('''
    import json, logging, os, signal, sys
    sys.path[:0] = [sys.argv[1]]
    import memvisor

    def sq(x):
        return x * x

    seen = []

    class Keep(logging.Handler):
        def emit(self, record):
            seen.append(getattr(record, "memvisor", {}))

    if __name__ == "__main__":
        logging.getLogger("memvisor").addHandler(Keep())
        logging.getLogger("memvisor").setLevel(logging.DEBUG)
''')

# Run with fds 0, 1 and 2 closed: a Pool, then what its memvisor did, as JSON in argv[3].
CLOSED_STDIO_SCRIPT = EVENTS_SCRIPT + textwrap.dedent('''
    if __name__ == "__main__":
        with memvisor.Pool(2, state_dir=sys.argv[2]) as pool:
            got = {"result": pool.map(sq, range(10)), "start": pool.template_start}
            pidfds = {}
            for pid in os.popen(f"ps -o pid= --ppid {pool.pid}").read().split():
                try:
                    fds = os.listdir(f"/proc/{pid}/fd")
                    links = [os.readlink(f"/proc/{pid}/fd/{n}") for n in fds]
                except OSError:
                    continue  # gone meanwhile
                if any("pidfd" in x for x in links):
                    pidfds[pid] = links
            got["pidfds"] = pidfds
        for what in ("refused", "adopted"):
            got[what] = [e for e in seen if e.get("event") == "template_handoff_" + what or
                         e.get("event") == "template_" + what]
        with open(sys.argv[3], "w") as f:
            json.dump(got, f)
''')


class CallerSignals(PoolTest):
    def test_signals_the_caller_blocks_still_stop_memvisor(self):
        # memvisor inherits the caller's signal mask: a caller that blocks the signals it
        # waits for (signal.sigwait) had terminate's SIGTERM held for ever (20 s, then
        # SIGKILL, and the run's cgroups were left behind).
        stop = [signal.SIGTERM, signal.SIGINT, signal.SIGHUP]
        old = signal.pthread_sigmask(signal.SIG_BLOCK, stop)
        try:
            with self.assertLogs("memvisor", logging.DEBUG) as logs:
                pool = self.pool(workers=1)
                notes = os.path.join(self.tmp, "notes")
                os.mkdir(notes)
                r = pool.apply_async(pf.note_and_sleep, (notes, 1))
                for _ in range(int(TIMEOUT * 10)):  # the worker is inside its task
                    if os.listdir(notes):
                        break
                    select.select([], [], [], 0.1)
                pool.terminate()
                pool.join()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)
        self.assertNotEqual(pool._sv.proc.returncode, -signal.SIGKILL)
        self.assertGreaterEqual(len(_events(logs, "signal")), 1)
        with open("/proc/self/cgroup") as f:  # v1 here: memvisor's run is memvisor-PID in ours
            ours = [line.split(":", 2)[2].strip() for line in f if ":memory:" in line]
        run = f"/sys/fs/cgroup/memory{ours[0] if ours else '/-'}/memvisor-{pool.pid}"
        self.assertFalse(os.path.exists(run), run)
        with self.assertRaises(memvisor.PoolTerminated):
            r.get(TIMEOUT)

    def test_a_caller_that_ignores_sigchld_still_has_exit_statuses(self):
        # An ignored SIGCHLD is inherited across exec: the kernel reaped memvisor's children
        # itself, and every worker's and template's exit status was lost (-1).
        report = os.path.join(self.tmp, "report.json")
        script = os.path.join(self.tmp, "sigchld.py")
        with open(script, "w") as f:
            f.write(SIGCHLD_IGNORED_SCRIPT)
        out = subprocess.run([sys.executable, script, MODULE_DIR, os.path.join(self.tmp, "state"),
                              report], capture_output=True, text=True, timeout=TIMEOUT)
        self.assertEqual(out.returncode, 0, out.stderr)
        with open(report) as f:
            got = json.load(f)
        self.assertEqual(got["result"], [x * x for x in range(20)])
        self.assertGreaterEqual(len(got["exits"]), 4)  # recycled every 5 tasks
        # Each exit has its status, or the signal memvisor killed it with (a template retired
        # at the end on a loaded host): none is lost (-1, the kernel reaped it).
        lost = [e for e in got["exits"] if e[0] == -1 or (e[0] is None) == (e[1] is None)]
        self.assertEqual(lost, [])
        self.assertEqual([e for e in got["exits"] if e[0] not in (0, None)], [])


# Ignores SIGCHLD, runs a Pool that recycles, and writes the exits memvisor logged to argv[3].
SIGCHLD_IGNORED_SCRIPT = EVENTS_SCRIPT + textwrap.dedent('''
    if __name__ == "__main__":
        signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # no zombies: the caller's idiom
        pool = memvisor.Pool(2, state_dir=sys.argv[2], maxtasksperchild=5)
        got = {"result": pool.map(sq, range(20), chunksize=1)}
        pool.close()
        pool.join()
        got["exits"] = [[e.get("status"), e.get("signal"), e.get("reason")] for e in seen
                        if e.get("event") in ("exit", "template_exit")]
        with open(sys.argv[3], "w") as f:
            json.dump(got, f)
''')


PROGRESS_SCRIPT = textwrap.dedent('''
    import os, sys
    sys.path[:0] = [sys.argv[1]]
    import memvisor

    def double(x):          # defined in the main script: workers import it as __mp_main__
        print("worker prints", x) if x == 3 else None
        return 2 * x

    if __name__ == "__main__":
        with memvisor.Pool(2, progress=True, state_dir=sys.argv[2]) as pool:
            print(sum(pool.imap_unordered(double, range(20))))
''')

UNGUARDED_SCRIPT = textwrap.dedent('''
    import sys
    sys.path[:0] = [sys.argv[1]]
    import memvisor

    def double(x):
        return 2 * x

    pool = memvisor.Pool(1, state_dir=sys.argv[2])   # no __main__ guard
    try:
        pool.map(double, [1])
    except memvisor.PoolBroken as exc:
        print("BROKEN", exc)
    pool.terminate()
''')


class Scripts(PoolTest):
    """Whole programs: a function of the main script, the progress line, worker output."""

    def script(self, text):
        path = os.path.join(self.tmp, "script.py")
        with open(path, "w") as f:
            f.write(text)
        return [sys.executable, path, MODULE_DIR, os.path.join(self.tmp, "state")]

    def test_progress_on_a_terminal_and_worker_output(self):
        primary, secondary = pty.openpty()
        proc = subprocess.Popen(self.script(PROGRESS_SCRIPT), stdout=subprocess.PIPE,
                                stderr=secondary)
        os.close(secondary)
        seen = b""
        while True:
            ready, _, _ = select.select([primary], [], [], TIMEOUT)
            self.assertTrue(ready, "no output in time")
            try:
                chunk = os.read(primary, 65536)
            except OSError:  # EIO: the other side is closed
                break
            if not chunk:
                break
            seen += chunk
        os.close(primary)
        out, _ = proc.communicate(timeout=TIMEOUT)
        self.assertEqual(proc.returncode, 0, seen)
        self.assertEqual(out.decode().strip(), "380")
        text = seen.decode(errors="replace")
        self.assertIn("memvisor 20/20 items", text)
        self.assertIn("quarantined 0", text)
        self.assertIn("worker prints 3", text)

    def test_no_progress_when_stderr_is_not_a_terminal(self):
        out = subprocess.run(self.script(PROGRESS_SCRIPT), capture_output=True, text=True,
                             timeout=TIMEOUT)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual(out.stdout.strip(), "380")
        self.assertNotIn("items", out.stderr)
        self.assertIn("worker prints 3", out.stderr)

    def test_a_pool_made_while_workers_import_the_main_script(self):
        out = subprocess.run(self.script(UNGUARDED_SCRIPT), capture_output=True, text=True,
                             timeout=TIMEOUT)
        self.assertIn("BROKEN", out.stdout, out.stderr)
        self.assertIn('guard the code that makes the pool with `if __name__ == "__main__":`',
                      out.stdout)


INSTALLED_SCRIPT = textwrap.dedent('''
    import sys
    import memvisor, memvisor_worker

    def sq(x):
        return x * x

    def forked(_):
        # Loaded in the template only: a worker exec'd (no template) has not imported it.
        return "memvisor_template" in sys.modules

    if __name__ == "__main__":
        with memvisor.Pool(1, state_dir=sys.argv[1]) as pool:
            print(pool.map(sq, [1, 2, 3]))
            print(pool.map(forked, [1]))
        print(memvisor.__file__)
        print(memvisor_worker.__file__)
''')


class Packaging(PoolTest):
    """The modules as installed, used from outside the source tree."""

    def test_neither_the_pool_nor_its_workers_import_typing(self):
        # typing took ~25 ms of CPU to import here (`python -c "import typing"` against
        # `pass`, medians, a loaded 2-core machine): part of `import memvisor`, of Pool(), and
        # of each exec'd worker's start-up (memvisor._worker). Annotations are strings
        # (`from __future__ import annotations`): only type checkers need it. -S: no site
        # (.pth files) importing it on its own.
        code = ("import sys, memvisor\n"
                "memvisor.Pool\n"
                "from memvisor import _worker\n"
                "s = memvisor.TaskStats(*range(12))\n"
                "print('typing' in sys.modules, s.kind, s._fields[0], len(s))\n")
        out = subprocess.run([sys.executable, "-S", "-c", code],
                             env=dict(os.environ, PYTHONPATH=MODULE_DIR), capture_output=True,
                             text=True, timeout=TIMEOUT)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual(out.stdout.split(), ["False", "11", "task", "12"])

    def run_installed(self, libdir, binary):
        script = os.path.join(self.tmp, "installed.py")
        with open(script, "w") as f:
            f.write(INSTALLED_SCRIPT)
        env = dict(os.environ, PYTHONPATH=libdir, MEMVISOR_BIN=binary)
        out = subprocess.run([sys.executable, script, os.path.join(self.tmp, "state")],
                             env=env, cwd=self.tmp, capture_output=True, text=True,
                             timeout=TIMEOUT)
        self.assertEqual(out.returncode, 0, out.stderr)
        lines = out.stdout.split("\n")
        self.assertEqual(lines[0], "[1, 4, 9]")
        # memvisor_template is installed: the workers were forked from a template, not
        # exec'd each (template_unsupported) for want of it.
        self.assertEqual(lines[1], "[True]", out.stderr)
        self.assertEqual(lines[2], os.path.join(libdir, "memvisor", "__init__.py"))
        self.assertEqual(lines[3], os.path.join(libdir, "memvisor_worker.py"))

    def test_pip_install_offline(self):
        # Offline, the build backend is the one installed: Debian's python3-setuptools (and
        # python3-wheel, which setuptools before 70.1 builds wheels with).
        python = next((p for p in (sys.executable, "/usr/bin/python3") if os.path.exists(p)
                       and subprocess.run([p, "-c", "import setuptools, wheel, pip"],
                                          capture_output=True).returncode == 0), None)
        if python is None:
            self.skipTest("no python3 with pip, setuptools and wheel (Debian: python3-pip "
                          "python3-setuptools python3-wheel)")
        # pip builds in the source directory: build a copy, not the shared tree.
        src = os.path.join(self.tmp, "src")
        shutil.copytree(MODULE_DIR, src, ignore=shutil.ignore_patterns(
            "__pycache__", "build", "*.egg-info"))
        target = os.path.join(self.tmp, "target")
        out = subprocess.run([python, "-m", "pip", "install", "--no-build-isolation",
                              "--no-index", "--disable-pip-version-check", "--quiet",
                              "--root-user-action=ignore",
                              "--target", target, src], capture_output=True, text=True,
                             timeout=120)
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        self.run_installed(target, os.environ["MEMVISOR_BIN"])

    def test_make_install(self):
        build = os.path.dirname(os.path.abspath(os.environ["MEMVISOR_BIN"]))
        if not os.path.isfile(os.path.join(SOURCE, "Makefile")):
            self.skipTest("no Makefile: not run from the source tree")
        dest = os.path.join(self.tmp, "dest")
        env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS",
                                                                 "MAKELEVEL")}
        out = subprocess.run(["make", "-s", "-C", SOURCE, "install", f"DESTDIR={dest}",
                              "PREFIX=/usr/local", f"BUILD={build}"], env=env,
                             capture_output=True, text=True, timeout=120)
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        version = "%d.%d" % sys.version_info[:2]
        libdir = os.path.join(dest, f"usr/local/lib/python{version}/dist-packages")
        self.run_installed(libdir, os.path.join(dest, "usr/local/bin/memvisor"))


class TaskRaisesBaseException(PoolTest):
    def test_it_ends_its_worker_as_it_would_a_program_and_says_so(self):
        # The default start (the template forked from this process): a task's SystemExit or
        # KeyboardInterrupt escaped into subprocess's preexec_fn in the worker, which exited
        # 255 without a word: every attempt "crash, exit 255", no traceback anywhere. Without
        # a template the worker said it and exited as Python does; now both do.
        for template in (True, False):
            err = io.StringIO()
            with self.subTest(template=template), contextlib.redirect_stderr(err):
                with self.pool(workers=1, template=template, max_attempts=1) as pool:
                    got = pool.map(pf.raises_base, [0, 7, "kbi", "base", 0], chunksize=1,
                                   return_exceptions=True)
                    pool.close()
                    pool.join()
                self.assertEqual(got[0], 0)
                self.assertEqual(got[4], 0)
                for g in got[1:4]:
                    self.assertIsInstance(g, memvisor.TaskQuarantined)
                    self.assertEqual(len(g.attempts), 1)
                    self.assertEqual(g.attempts[0].reason, "crash")
                self.assertEqual((got[1].attempts[0].exit, got[1].attempts[0].signal), (7, None))
                self.assertEqual(got[2].attempts[0].signal, signal.SIGINT)
                self.assertEqual((got[3].attempts[0].exit, got[3].attempts[0].signal), (1, None))
                said = err.getvalue()
                for name in ("SystemExit", "KeyboardInterrupt", "pool_funcs.NotAnException"):
                    self.assertIn(f"the task raised {name}, which is not an Exception", said)
                self.assertIn("KeyboardInterrupt: kbi in task", said)
                self.assertIn("pool_funcs.NotAnException: base in task", said)
                self.assertIn("in raises_base", said)


class ForkedFromTheCaller(PoolTest):
    def test_a_forked_process_cannot_use_the_pool_nor_end_it(self):
        # A process forked from the pool's maker had the pool but none of its threads: a map
        # there waited forever, and its exit (the atexit hook that terminates live pools)
        # hung, so that the maker waited for it forever too (or, had it ended, it removed the
        # maker's temporary directory). multiprocessing's finalizers skip other processes.
        from memvisor import _pool
        with self.pool(workers=1) as pool:
            self.assertEqual(pool.map(pf.sq, [2]), [4])
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:  # the child: says what happened, on the pipe, then ends at once
                os.close(r)
                said = "no error"
                try:
                    pool.map(pf.sq, [3])
                except RuntimeError as exc:
                    said = str(exc)
                except BaseException as exc:  # noqa: BLE001 - reported to the parent
                    said = f"{type(exc).__name__}: {exc}"
                _pool._terminate_live_pools()  # what the child's exit runs
                pool.close()
                pool.join()
                os.write(w, said.encode())
                os._exit(0)
            os.close(w)
            try:
                ready, _, _ = select.select([r], [], [], TIMEOUT)
                said = os.read(r, 4096).decode() if ready else "the child hung"
            finally:
                os.close(r)
                if not ready:
                    os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            self.assertIn(f"made by process {os.getpid()}: a process forked from it", said)
            self.assertIn(f"(this one, {pid}) cannot use it", said)
            # The maker's pool is whole: its memvisor, its temporary directory.
            self.assertTrue(os.path.isdir(pool._tmpdir))
            self.assertEqual(pool.map(pf.sq, [5, 6]), [25, 36])


class WorkerOutput(PoolTest):
    def test_prints_reach_the_callers_stderr(self):
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            with self.pool(workers=1) as pool:
                self.assertEqual(pool.map(pf.chatty, [1, 2]), [1, 2])
                pool.close()
                pool.join()
        self.assertIn("chatty says 1\nchatty says 2\n", err.getvalue())


class LeakSuspectWords(PoolTest):
    """The leak_suspect events memvisor sends, as logger "memvisor" says them: queued (to be
    confirmed), confirmed, and not confirmed because the experiment was inconclusive."""

    def test_an_inconclusive_experiment_is_said_with_its_reason_not_its_zeros(self):
        # 30 tasks that keep 64 KiB each, window 20: the suspect is named at task 20 (18
        # measured after the warm-up) and its tasks go to a fresh worker, which after its 2
        # warm-up tasks has 8 or fewer to measure when the batch runs out, under the 10 an
        # isolation needs (isolate.h, MV_ISO_MIN_TASKS): memvisor says the suspect again,
        # experiment=inconclusive, with the figures it was suspected on and no snapshot.
        with self.assertLogs("memvisor", logging.INFO) as logs:
            with self.pool(workers=1, window=20, warmup=2) as pool:
                self.assertEqual(pool.map(pf.leak_64k, range(30), chunksize=1),
                                 list(range(30)))
                pool.close()
                pool.join()
                run_dir = pool.run_dir
        with open(os.path.join(run_dir, "events.jsonl"), encoding="utf-8") as f:
            events = [e for e in map(json.loads, f) if e.get("event") == "leak_suspect"]
        self.assertEqual([e.get("experiment") for e in events], ["queued", "inconclusive"],
                         events)
        queued, inconclusive = events
        self.assertEqual((inconclusive["per_task"], inconclusive["confidence"],
                          inconclusive["snapshot"]),
                         (queued["per_task"], queued["confidence"], None))
        self.assertGreater(queued["per_task"], 60000)
        said = {json.dumps(r.memvisor, sort_keys=True): r.getMessage() for r in logs.records
                if r.getMessage().startswith("leak suspect")}
        first = said[json.dumps(queued, sort_keys=True)]
        self.assertIn(f"keep {queued['per_task']} bytes each", first)
        self.assertIn("to be confirmed by running it alone", first)
        self.assertIn(f"; snapshot {queued['snapshot']}", first)
        last = said[json.dumps(inconclusive, sort_keys=True)]
        self.assertEqual(
            last, f"leak suspect: tasks of pool_funcs.leak_64k not confirmed: the experiment "
            f"was inconclusive after {inconclusive['tasks']} tasks ({inconclusive['why']}); "
            f"still a suspect, suspected at {queued['per_task']} bytes a task")

    def test_each_kind_of_suspect_in_words(self):
        # Lines as memvisor writes them (suspect.c: say_suspect, mv_suspect_verdict; the
        # confirmed one and the queued one copied from a run's events.jsonl), fed to the
        # pool's log handling as its log thread does.
        lines = {
            "queued": '{"ts":"2026-12-06T16:20:34.713480Z","level":"info","event":"leak_suspect",'
                      '"kind":"pool_funcs.leak_64k","per_task":65680,"fds_per_task":0.0,'
                      '"confidence":1.0,"tasks":18,"rule":"trend","confirmed":false,'
                      '"evidence":"heap","experiment":"queued","worker":1,"pid":15380,'
                      '"task":20,"snapshot":"/s/0001-leak_suspect-pool_funcs_leak_64k-w1.json"}',
            # confirmed by the isolation after its worker was gone: no snapshot
            "confirmed": '{"ts":"2026-12-06T16:20:34.838824Z","level":"warn",'
                         '"event":"leak_suspect","kind":"pool_funcs.leak_64k",'
                         '"per_task":65680,"fds_per_task":0.0,"confidence":1.0,"tasks":18,'
                         '"rule":"trend","confirmed":true,"evidence":"heap,isolation",'
                         '"experiment":"isolation","why":"the batch ran out of tasks: judged '
                         'on what ran","worker":0,"pid":0,"task":40,"snapshot":null}',
            # a handle leak: no experiment, its figure is fds, not bytes
            "fd": '{"ts":"2026-12-06T16:20:35.000000Z","level":"warn","event":"leak_suspect",'
                  '"kind":"open_files","per_task":0,"fds_per_task":0.5,"confidence":0.9,'
                  '"tasks":50,"rule":"fd_trend","confirmed":true,"evidence":"kernel-trend",'
                  '"experiment":"none","worker":2,"pid":4242,"task":77,"snapshot":null}',
            "inconclusive": '{"ts":"2026-12-06T16:20:32.766581Z","level":"warn",'
                            '"event":"leak_suspect","kind":"pool_funcs.leak_64k","per_task":0,'
                            '"fds_per_task":0.0,"confidence":0.0,"tasks":8,"rule":"trend",'
                            '"confirmed":false,"evidence":"heap","experiment":"inconclusive",'
                            '"why":"timed out","worker":0,"pid":0,"task":30,"snapshot":null}',
        }
        with self.pool(workers=1) as pool:
            self.assertEqual(pool.apply(pf.sq, (3,)), 9)
            with self.assertLogs("memvisor", logging.INFO) as logs:
                for line in lines.values():
                    pool._on_log(json.loads(line))
        said = dict(zip(lines, (r.getMessage() for r in logs.records)))
        self.assertEqual(len(logs.records), len(lines), said)
        self.assertEqual(said["queued"], "leak suspect: tasks of pool_funcs.leak_64k keep 65680 "
                         "bytes each (rule trend, confidence 1.0, over 18 tasks), to be "
                         "confirmed by running it alone; snapshot "
                         "/s/0001-leak_suspect-pool_funcs_leak_64k-w1.json")
        self.assertEqual(said["confirmed"], "leak suspect: tasks of pool_funcs.leak_64k keep "
                         "65680 bytes each (rule trend, confidence 1.0, over 18 tasks), "
                         "confirmed by heap,isolation")
        self.assertEqual(said["fd"], "leak suspect: tasks of open_files keep 0.50 fds each "
                         "(rule fd_trend, confidence 0.9, over 50 tasks), confirmed by "
                         "kernel-trend")
        # An older memvisor's event (per_task 0): no figure said.
        self.assertEqual(said["inconclusive"], "leak suspect: tasks of pool_funcs.leak_64k not "
                         "confirmed: the experiment was inconclusive after 8 tasks (timed "
                         "out); still a suspect")
        for r, line in zip(logs.records, lines.values()):
            self.assertEqual(r.memvisor, json.loads(line))


class LeakSuspectLevels(PoolTest):
    """A leak's story at memvisor's levels (suspect.c, experiment.c): a suspect queued for its
    experiment is info, a confirmed one or one left inconclusive a warning; the experiment's
    verdict at its own level (leak: warn, cleared: info); its other steps at DEBUG as any
    other info event."""

    def test_levels_follow_memvisors(self):
        def ev(level, event, **fields):
            return dict({"ts": "2026-12-06T16:20:34.713480Z", "level": level, "event": event},
                        **fields)

        suspect = {"kind": "k", "per_task": 65536, "fds_per_task": 0.0, "confidence": 1.0,
                   "tasks": 20, "rule": "trend", "worker": 1, "gen": 2, "pid": 4242,
                   "task": 20, "snapshot": None}
        lines = [
            (logging.INFO, ev("info", "leak_suspect", confirmed=False, evidence="heap",
                              experiment="queued", **suspect)),
            (logging.WARNING, ev("warn", "leak_suspect", confirmed=True,
                                 evidence="heap,isolation", experiment="isolation",
                                 **suspect)),
            (logging.WARNING, ev("warn", "leak_suspect", confirmed=False, evidence="heap",
                                 experiment="inconclusive", why="timed out", **suspect)),
            (logging.WARNING, ev("warn", "leak_experiment", step="verdict", mode="isolation",
                                 kind="k", verdict="leak", per_task=65536, tasks=20,
                                 why="the kind ran alone")),
            (logging.INFO, ev("info", "leak_experiment", step="verdict", mode="isolation",
                              kind="k", verdict="clean", per_task=0, tasks=20,
                              why="the kind ran alone")),
            (logging.DEBUG, ev("info", "leak_experiment", step="released", kinds=1,
                               why="saved tasks were all a free worker could take")),
        ]
        with self.pool(workers=1) as pool:
            self.assertEqual(pool.apply(pf.sq, (3,)), 9)
            with self.assertLogs("memvisor", logging.DEBUG) as logs:
                for _, obj in lines:
                    pool._on_log(obj)
        got = [(r.levelno, r.memvisor) for r in logs.records if hasattr(r, "memvisor")]
        self.assertEqual(got, [(lvl, obj) for lvl, obj in lines])

    def test_a_real_runs_queued_suspect_is_info_and_its_confirmation_a_warning(self):
        with self.assertLogs("memvisor", logging.DEBUG) as logs:
            with self.pool(workers=1, window=20, warmup=2) as pool:
                self.assertEqual(pool.map(pf.leak_64k, range(60), chunksize=1),
                                 list(range(60)))
                pool.close()
                pool.join()
        said = [(r.levelno, r.memvisor) for r in logs.records
                if getattr(r, "memvisor", {}).get("event") == "leak_suspect"]
        self.assertTrue(said, "no leak_suspect said")
        for lvl, obj in said:
            self.assertEqual(lvl, {"info": logging.INFO, "warn": logging.WARNING}[obj["level"]],
                             obj)
        self.assertIn((logging.INFO, "queued"), [(lvl, o["experiment"]) for lvl, o in said])


class LeakConfirmedAfterItsWorkerLeft(PoolTest):
    """A suspect whose isolation's worker leaves before the isolation's end (max_tasks) is
    confirmed on what ran: memvisor names that worker (slot, generation and pid, as its exit
    event does), not worker 0 / pid 0, and says why there is no snapshot; the Pool says it."""

    def test_the_worker_that_showed_it_is_named(self):
        # window 20, warm-up 2: the isolation wants 22 tasks of its worker, which leaves
        # after 15 (13 measured: above the 10 an isolation needs).
        with self.assertLogs("memvisor", logging.INFO) as logs:
            with self.pool(workers=1, window=20, warmup=2, max_tasks=15) as pool:
                self.assertEqual(pool.map(pf.leak_64k, range(80), chunksize=1),
                                 list(range(80)))
                pool.close()
                pool.join()
                run_dir = pool.run_dir
        with open(os.path.join(run_dir, "events.jsonl"), encoding="utf-8") as f:
            events = [json.loads(line) for line in f]
        confirmed = [e for e in events if e["event"] == "leak_suspect" and e["confirmed"]]
        self.assertEqual(len(confirmed), 1, confirmed)
        c = confirmed[0]
        self.assertIn("its worker stopped before the end", c["why"])
        arms = [e for e in events
                if e["event"] == "leak_experiment" and e.get("step") == "arm_started"]
        self.assertEqual(len(arms), 1, arms)
        exits = [e for e in events if e["event"] == "exit" and e["worker"] == c["worker"]
                 and e["gen"] == c["gen"] and e["pid"] == c["pid"]]
        self.assertEqual([(e["reason"], e["gen"]) for e in exits],
                         [("max_tasks", arms[0]["gen"])], c)
        self.assertEqual((c["worker"], c["snapshot"]), (1, None))
        self.assertEqual(c["snapshot_reason"],
                         "the worker exited before the verdict; no snapshot was taken of it")
        said = [r.getMessage() for r in logs.records
                if getattr(r, "memvisor", None) == c]
        self.assertEqual(len(said), 1)
        self.assertTrue(said[0].endswith(
            "confirmed by heap,isolation; no snapshot: the worker exited before the verdict; "
            "no snapshot was taken of it"), said[0])


if __name__ == "__main__":
    unittest.main()
