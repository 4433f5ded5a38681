"""Unit tests of the leak suite's scoring (run.py) and workloads, on synthetic runs: no
memvisor needed. Run by the leak_suite Check suite, and by hand:

    python3 -m unittest tests/leaks/test_run.py
"""
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import run  # noqa: E402
from scenarios import CLEAN, FD, KINDS, LEAK, PLATEAU  # noqa: E402
from workloads import LEAK_TASKS, WORKLOADS, Workload  # noqa: E402


def suspect(kind, rule, task, **extra):
    return dict({"event": "leak_suspect", "kind": kind, "rule": rule, "task": task}, **extra)


class Flags(unittest.TestCase):
    def test_first_task_per_kind_and_rule(self):
        named = run.flags([suspect("a", "trend", 50), suspect("a", "trend", 20),
                           suspect("a", "fd_trend", 70), {"event": "recycle", "kind": "b"}])
        self.assertEqual(named, {"a": {"trend": 20, "fd_trend": 70}})

    def test_unconfirmed_and_cleared_suspects_are_not_named(self):
        named = run.flags([suspect("a", "trend", 5, confirmed=False),
                           suspect("b", "trend", 5, verdict="plateau"),
                           suspect("c", "trend", 5, confirmed=True)])
        self.assertEqual(named, {"c": {"trend": 5}})


class Verdict(unittest.TestCase):
    ids = list(range(1, 2001, 2))  # the kind's tasks: 1, 3, 5, ...

    def test_leak_named_in_time_late_or_missed(self):
        self.assertEqual(run.verdict(LEAK, {"trend": 99}, self.ids)[1], "right")  # 50th task
        self.assertEqual(run.verdict(LEAK, {"task_growth": 599}, self.ids)[1], "right")  # 300th
        self.assertEqual(run.verdict(LEAK, {"trend": 601}, self.ids)[1], "late")  # 301st
        self.assertEqual(run.verdict(LEAK, {}, self.ids)[1], "missed")
        # A memory leak named only as a handle leak is not named.
        self.assertEqual(run.verdict(LEAK, {"fd_trend": 9}, self.ids)[1], "missed")

    def test_fd_leak_must_be_named_as_fd(self):
        self.assertEqual(run.verdict(FD, {"fd_trend": 9}, self.ids)[1], "right")
        self.assertEqual(run.verdict(FD, {"fd_trend": 9, "trend": 3}, self.ids)[1], "right")
        self.assertEqual(run.verdict(FD, {"trend": 9}, self.ids)[1], "missed")

    def test_clean_and_plateau_must_not_be_named(self):
        for label in (CLEAN, PLATEAU):
            self.assertEqual(run.verdict(label, {}, self.ids)[1], "right")
            self.assertEqual(run.verdict(label, {"fd_trend": 9}, self.ids)[1], "false_alarm")


class Score(unittest.TestCase):
    w = Workload("t", {"keep32": 1, "report": 1}, "test", seed=1)

    def results(self, lines, skip=(), dup=(), bad=()):
        out = []
        for i in range(1, len(lines) + 1):
            if i in skip:
                continue
            status = "failed" if i in bad else "ok"
            out += [{"task": i, "status": status}] * (2 if i in dup else 1)
        return out

    def scored(self, **kw):
        lines = list(self.w.task_lines())
        r = run.Run(self.w, "lines")
        events, code = kw.pop("events", []), kw.pop("code", 0)
        run.score(r, lines, self.results(lines, **kw), events, code)
        return r

    def test_a_good_run(self):
        r = self.scored(events=[suspect("keep32", "trend", 30)])
        self.assertIsNone(r.problem)
        self.assertEqual(r.kinds["keep32"][1], "right")
        self.assertEqual(r.kinds["report"][1], "right")

    def test_a_kind_not_in_the_workload_is_wrong(self):
        r = self.scored(events=[suspect("(other)", "trend", 30)])
        self.assertEqual(r.kinds["(other)"][1], "wrong")

    def test_broken_runs_are_problems(self):
        self.assertIn("failed", self.scored(bad={5}).problem)
        self.assertIn("tasks have results", self.scored(skip={7}).problem)
        self.assertIn("tasks have results", self.scored(dup={7}).problem)
        self.assertIn("exited 3", self.scored(code=3).problem)
        self.assertIn("timed out", self.scored(code=None).problem)


class Workloads(unittest.TestCase):
    def test_labels_and_sizes(self):
        names = [w.name for w in WORKLOADS]
        self.assertEqual(len(names), len(set(names)))
        self.assertGreaterEqual(sum(w.fast for w in WORKLOADS), 2)
        self.assertGreaterEqual(sum(1 for w in WORKLOADS if w.c_worker), 2)
        for w in WORKLOADS:
            for kind in w.mix:
                self.assertIn(w.labels[kind], (LEAK, FD, CLEAN, PLATEAU))
                if not w.c_worker:
                    self.assertIn(kind, KINDS)
            lines = list(w.task_lines())
            self.assertEqual(lines, list(w.task_lines()))  # a fixed seed
            for kind in w.leaking():
                self.assertGreaterEqual(sum(1 for ln in lines if ln.split()[0] == kind),
                                        run.WITHIN, f"{w.name}: {kind}")
            # Interleaved at random: no kind runs in long streaks.
            kinds = [ln.split()[0] for ln in lines]
            longest = max(len(set(kinds[i:i + 40])) for i in range(len(kinds) - 40))
            self.assertEqual(longest, len(w.mix), w.name)
        self.assertGreater(LEAK_TASKS, run.WITHIN)


if __name__ == "__main__":
    unittest.main()
