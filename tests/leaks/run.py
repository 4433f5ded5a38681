#!/usr/bin/env python3
"""run.py: the labelled leak suite. Runs every workload (workloads.py) through the real
memvisor binary in each of its modes, reads what the run flagged (events.jsonl) and scores
it against the labels.

    python3 tests/leaks/run.py [--build DIR] [--fast] [--only NAME]... [--mode lines|api]
                               [-o SECTION.KEY=VALUE]... [--enforce] [--json FILE] [--keep]

A leaking kind is right when memvisor names it by the right rule (memory: trend or
task_growth; fd kinds: fd_trend) within WITHIN tasks of that kind; a clean or plateauing
kind is right when it is never named. Exit status: 0 when every kind of every run is right
and every run ended with every task ok exactly once; 1 when some kind is wrong; 3 when a
run itself failed. --fast runs the workloads marked fast (the subset `make check` runs);
without --enforce (or LEAKS_ENFORCE=1 in make, MV_LEAKS_ENFORCE=1 here, or the marker file
tests/leaks/ENFORCE) it reports the labels but fails only when a run failed: the detector is
not there yet (docs/leak-suite.md).
"""
import argparse
import bisect
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)

from scenarios import CLEAN, FD, LEAK, PLATEAU  # noqa: E402
from workloads import WORKLOADS  # noqa: E402

WITHIN = 300  # a leak must be named within this many tasks of its kind
MEMORY_RULES = {"trend", "task_growth"}
FD_RULES = {"fd_trend"}
RUN_TIMEOUT = 300
ENFORCE_MARKER = os.path.join(HERE, "ENFORCE")


def flags(events):
    """What the run named, per kind: {kind: {rule: first task id}}. The one place that
    knows the detector's event format: a leak_suspect event names a kind unless it says it
    is not (yet) a leak (a detector that confirms or clears suspects may add
    "confirmed": false, or a verdict such as "plateau")."""
    named = {}
    for ev in events:
        if ev.get("event") != "leak_suspect":
            continue
        if ev.get("confirmed") is False or ev.get("verdict") in ("plateau", "cleared",
                                                                  "not_leak"):
            continue
        rules = named.setdefault(ev.get("kind"), {})
        rule, task = ev.get("rule"), ev.get("task") or 0
        rules[rule] = min(rules.get(rule, task), task)
    return named


def read_jsonl(path):
    out = []
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    out.append(json.loads(line))
    except FileNotFoundError:
        pass
    return out


def worker_command(w, mode, build):
    if w.c_worker:
        return [os.path.join(build, "leaks", w.c_worker)]
    return [sys.executable, os.path.join(HERE, "pyworker.py"), mode]


class Run:
    """One workload in one mode: what memvisor did, and the verdict per kind."""

    def __init__(self, w, mode):
        self.w, self.mode = w, mode
        self.problem = None  # why the run itself is not usable
        self.kinds = {}  # kind -> (label, verdict, detail)
        self.seconds = 0.0


def execute(w, mode, args):
    r = Run(w, mode)
    d = tempfile.mkdtemp(prefix=f"mv-leaks-{w.name}-{mode}-")
    tasks, results = os.path.join(d, "tasks.txt"), os.path.join(d, "results.jsonl")
    lines = list(w.task_lines())
    with open(tasks, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    cmd = [os.path.join(args.build, "memvisor"), "run",
           "-o", f"supervisor.state_dir={d}/state", "-o", "supervisor.workers=2",
           "-o", f"worker.protocol={mode}"]
    for o in w.options + args.o:
        cmd += ["-o", o]
    cmd += ["--tasks", tasks, "--results", results, "--"] + worker_command(w, mode, args.build)
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", MV_LEAKS_DIR=d,
               MV_LEAKS_CTLEAK=os.path.join(args.build, "leaks", "libctleak.so"))
    start = time.monotonic()
    try:
        p = subprocess.run(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=RUN_TIMEOUT)
        code, log = p.returncode, p.stderr.decode("utf-8", "replace")
    except subprocess.TimeoutExpired as e:
        code, log = None, (e.stderr or b"").decode("utf-8", "replace")
    r.seconds = time.monotonic() - start
    try:
        score(r, lines, read_jsonl(results),
              read_jsonl(os.path.join(d, "state", "latest", "events.jsonl")), code)
    finally:
        if r.problem and args.verbose:
            sys.stderr.write(f"--- memvisor's log ({w.name}, {mode}) ---\n{log[-4000:]}\n")
        if args.keep:
            print(f"  kept {d}")
        else:
            shutil.rmtree(d, ignore_errors=True)
    return r


def score(r, lines, results, events, code):
    kind_of = {i + 1: line.split()[0] for i, line in enumerate(lines)}
    seen = {}
    for res in results:
        seen[res.get("task")] = seen.get(res.get("task"), 0) + 1
        if res.get("status") != "ok":
            r.problem = f"task {res.get('task')} {res.get('status')}: {res.get('error')}"
    if code is None:
        r.problem = f"timed out after {RUN_TIMEOUT} s"
    elif code != 0 and not r.problem:
        r.problem = f"memvisor exited {code}"
    if not r.problem and (len(seen) != len(lines) or any(v != 1 for v in seen.values())):
        r.problem = f"{len(seen)} of {len(lines)} tasks have results (each once?)"
    ids = {}
    for i, kind in kind_of.items():
        ids.setdefault(kind, []).append(i)
    named = flags(events)
    for kind, label in r.w.labels.items():
        rules = named.get(kind, {})
        r.kinds[kind] = verdict(label, rules, ids.get(kind, []))
    for kind in named:
        if kind not in r.w.labels:
            r.kinds[kind] = ("?", "wrong", f"named a kind that is not in the workload: {kind}")


def verdict(label, rules, ids):
    """(label, verdict, detail); verdict: right | late | missed | false_alarm."""
    def at(rule_set):
        tasks = [t for rule, t in rules.items() if rule in rule_set]
        return bisect.bisect_right(ids, min(tasks)) if tasks else None

    mem, fd = at(MEMORY_RULES), at(FD_RULES)
    what = ", ".join(sorted(rules)) or "-"
    if label in (CLEAN, PLATEAU):
        if rules:
            return label, "false_alarm", f"named ({what}) after {at(set(rules))} tasks"
        return label, "right", "not named"
    pos = mem if label == LEAK else fd
    if pos is None:
        return label, "missed", f"not named as {'memory' if label == LEAK else 'fd'} ({what})"
    if pos > WITHIN:
        return label, "late", f"named ({what}) after {pos} tasks of the kind"
    return label, "right", f"named ({what}) after {pos} tasks of the kind"


def totals(runs):
    """Precision and recall over runs: kinds named rightly (leaking kinds named, within WITHIN
    tasks or late) against kinds named at all and leaking kinds."""
    c = {"right": 0, "late": 0, "missed": 0, "false_alarm": 0, "wrong": 0}
    leaking = clean = tp = 0
    for r in runs:
        for label, v, _ in r.kinds.values():
            c[v] += 1
            leaking += label in (LEAK, FD)
            clean += label in (CLEAN, PLATEAU)
            tp += label in (LEAK, FD) and v == "right"
    tp_any = tp + c["late"]
    fp = c["false_alarm"] + c["wrong"]
    return {"precision": tp_any / (tp_any + fp) if tp_any + fp else 1.0,
            "recall": tp_any / leaking if leaking else 1.0,
            "recall_within": tp / leaking if leaking else 1.0,
            "leaking": leaking, "named": tp_any, "named_within": tp, "late": c["late"],
            "missed": c["missed"], "false_alarms": fp, "clean": clean}


def say_totals(what, t):
    print(f"{what}: leaking kinds named: {t['named']} of {t['leaking']} ({t['named_within']} "
          f"within {WITHIN} tasks, {t['late']} late, {t['missed']} missed); false alarms: "
          f"{t['false_alarms']} of {t['clean']} clean or plateauing kinds")
    print(f"{what}: precision {t['precision']:.2f}  recall {t['recall']:.2f}  recall within "
          f"{WITHIN} tasks {t['recall_within']:.2f}")


def report(runs):
    for r in runs:
        state = f"RUN FAILED: {r.problem}" if r.problem else f"{r.seconds:.1f} s"
        print(f"{r.w.name:<20} {r.mode:<5} {r.w.tasks:>5} tasks  {state}")
        for kind, (label, v, detail) in sorted(r.kinds.items()):
            mark = "ok" if v == "right" else v.upper().replace("_", " ")
            print(f"    {kind:<18} {label:<8} {mark:<12} {detail}")
    print()
    labelled = [r for r in runs if not r.w.held_out]
    for mode in ("lines", "api"):
        those = [r for r in labelled if r.mode == mode]
        if those and len(those) < len(labelled):
            say_totals(f"{mode:<5}", totals(those))
    scores = totals(labelled)
    if labelled:
        say_totals("all  ", scores)
    for name in sorted({str(r.w.held_out) for r in runs if r.w.held_out}):
        held = [r for r in runs if r.w.held_out and str(r.w.held_out) == name]
        which = "" if name == "True" else f", {name} set"
        print(f"held out{which} (written after the design, not enforced):")
        say_totals("held ", totals(held))
    return scores


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--fast", action="store_true", help="the workloads marked fast only")
    ap.add_argument("--only", action="append", default=[], help="this workload (repeatable)")
    ap.add_argument("--held-out", action="append", default=[],
                    help="the held-out workloads of this set (first, second, third, fourth, fifth, sixth, seventh, eighth; repeatable)")
    ap.add_argument("--mode", choices=["lines", "api"], help="this mode only")
    ap.add_argument("-o", action="append", default=[], help="memvisor -o SECTION.KEY=VALUE")
    ap.add_argument("--enforce", action="store_true", help="fail on wrong labels in --fast")
    ap.add_argument("--json", help="write the scores and verdicts here")
    ap.add_argument("--keep", action="store_true", help="keep each run's directory")
    ap.add_argument("--verbose", action="store_true", help="memvisor's log of failed runs")
    args = ap.parse_args()
    args.build = os.path.abspath(args.build)
    enforce = (not args.fast or args.enforce or os.environ.get("MV_LEAKS_ENFORCE") == "1"
               or os.path.exists(ENFORCE_MARKER))
    sets = {"first" if w.held_out is True else w.held_out for w in WORKLOADS if w.held_out}
    if set(args.held_out) - sets:
        ap.error(f"no such held-out set: {', '.join(sorted(set(args.held_out) - sets))}")
    chosen = [w for w in WORKLOADS if (not args.fast or w.fast)
              and (not args.only or w.name in args.only)
              and (not args.held_out or ("first" if w.held_out is True else w.held_out)
                   in args.held_out)]
    unknown = set(args.only) - {w.name for w in WORKLOADS}
    if unknown or not chosen:
        ap.error(f"no such workload: {', '.join(sorted(unknown)) or 'none chosen'}")
    runs = [execute(w, m, args) for w in chosen for m in w.modes()
            if not args.mode or m == args.mode]
    if not runs:
        ap.error("no workload runs in that mode")
    scores = report(runs)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"scores": scores, "runs": [
                {"workload": r.w.name, "mode": r.mode, "problem": r.problem,
                 "held_out": r.w.held_out,
                 "kinds": {k: {"label": lab, "verdict": v, "detail": d}
                           for k, (lab, v, d) in r.kinds.items()}} for r in runs]}, f, indent=1)
    if any(r.problem for r in runs):
        return 3
    wrong = any(v != "right" for r in runs if not r.w.held_out for _, v, _ in r.kinds.values())
    if wrong and not enforce:
        print("labels not enforced (--fast): tests/leaks/ENFORCE or LEAKS_ENFORCE=1 turns them on")
        return 0
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
