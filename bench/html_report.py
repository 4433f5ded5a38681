#!/usr/bin/env python3
"""The HTML report of a synthetic large run: 1,000,000 tasks on 64 workers.

Writes a run directory as memvisor would leave it (run.json, events.jsonl with recycles and a
leak suspect, a timeline.csv at its 32 MiB bound, a results file with started/ended times),
then measures `memvisor report --html` (wall time, page size) and the page's own render time
in headless chromium (#mv-status data-render-ms). Prints figures; asserts only that the page
rendered with no script error and every chart drawn.

usage: bench/html_report.py BUILD_DIR [TASKS] [WORKERS]
"""
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time

BUILD = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "build")
TASKS = int(sys.argv[2]) if len(sys.argv) > 2 else 1000000
WORKERS = int(sys.argv[3]) if len(sys.argv) > 3 else 64
MAX_TASKS = 1000
EPOCH_MS = 1796112000000  # 2026-12-01T08:00:00Z
TASK_MS = 2.0 * WORKERS / 64  # so that the whole run lasts ~ TASKS / 32 seconds


def iso(ms):
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + ".%06dZ" % (ms % 1000 * 1000)


def write_run(d):
    rnd = random.Random(1)
    results = os.path.join(d, "results.jsonl")
    per_slot = TASKS // WORKERS
    tl_points_per_slot = (32 << 20) // 55 // WORKERS  # what the writer's bound leaves
    with open(os.path.join(d, "run.json"), "w") as f:
        json.dump({"memvisor": "0.1.0", "run": "synthetic", "pid": 1, "started": iso(EPOCH_MS),
                   "ended": iso(int(EPOCH_MS + per_slot * TASK_MS)), "command": ["worker"],
                   "config": None, "results": results, "cgroup": "cgroup v1 synthetic",
                   "workers": WORKERS,
                   "limits": {"memory_soft": 256 << 20, "memory_hard": 512 << 20,
                              "max_tasks": MAX_TASKS, "metric": "private", "enforce": True},
                   "exit": 0, "tasks": {"ok": TASKS, "failed": 0, "quarantined": 0}}, f)
    with open(os.path.join(d, "events.jsonl"), "w") as ev, \
            open(os.path.join(d, "timeline.csv"), "w") as tl:
        tl.write("#memvisor-timeline 1 epoch_ms=%d epoch=%s\n" % (EPOCH_MS, iso(EPOCH_MS)))
        gens = per_slot // MAX_TASKS + 1
        step = per_slot * TASK_MS / tl_points_per_slot
        for slot in range(1, WORKERS + 1):
            for g in range(1, gens + 1):
                t0 = (g - 1) * MAX_TASKS * TASK_MS
                tl.write("m,%d,%d,%d,spawn,,%d,%d,%d,\n" % (t0, slot, g, 1000 + g, 256 << 20, 512 << 20))
                n = tl_points_per_slot // gens
                for k in range(n):
                    t = t0 + k * step
                    task = (slot - 1) * per_slot + (g - 1) * MAX_TASKS + int(k * MAX_TASKS / n) + 1
                    u = (20 << 20) + int(k / n * (200 << 20)) + rnd.randint(0, 4 << 20)
                    tl.write("p,%d,%d,%d,%d,%d,%d,,%d\n" % (t, slot, g, u, u - (2 << 20), u + (6 << 20), task))
                tend = t0 + MAX_TASKS * TASK_MS
                tl.write("m,%d,%d,%d,recycle,max_tasks,%d,,,\n" % (tend, slot, g, 1000 + g))
                tl.write("m,%d,%d,%d,exit,max_tasks,%d,,,\n" % (tend + 5, slot, g, 1000 + g))
                ev.write(json.dumps({"ts": iso(int(EPOCH_MS + tend)), "level": "info", "event": "recycle",
                                     "worker": slot, "gen": g, "reason": "max_tasks", "action": "drain"}) + "\n")
        ev.write(json.dumps({"ts": iso(EPOCH_MS + 5000), "level": "warn", "event": "leak_suspect",
                             "kind": "parse", "per_task": 65536, "fds_per_task": 0.0, "confidence": 0.9,
                             "tasks": 50, "rule": "trend", "worker": 3, "pid": 1003, "task": 77,
                             "snapshot": None}) + "\n")
    kinds = ["parse", "render", "resize", "thumb"]
    with open(results, "w") as f:
        for i in range(TASKS):
            slot = i % WORKERS + 1
            end = EPOCH_MS + int((i // WORKERS + 1) * TASK_MS)
            before = (20 << 20) + rnd.randint(0, 200 << 20)
            kind = kinds[i % 4]
            ret = 65536 if kind == "parse" else rnd.randint(-4096, 4096)
            f.write(json.dumps({"task": i + 1, "status": "ok", "attempts": 1, "worker": slot,
                                "pid": 1000 + i // (WORKERS * MAX_TASKS), "kind": kind,
                                "mem_before": before, "mem_after": before + ret,
                                "mem_peak": before + rnd.randint(0, 8 << 20), "retained": ret,
                                "peak_source": "kernel", "fds_before": 6, "fds_after": 6,
                                "duration_ms": 1.5, "result": "ok",
                                "started": iso(end - 2), "ended": iso(end)},
                               separators=(",", ":")) + "\n")
    return results


def main():
    d = tempfile.mkdtemp(prefix="mv-bench-html-")
    try:
        t = time.time()
        results = write_run(d)
        print("synthetic run: %d tasks, %d workers, written in %.1f s; results %.0f MB, "
              "timeline %.1f MB" % (TASKS, WORKERS, time.time() - t, os.path.getsize(results) / 1e6,
                                    os.path.getsize(os.path.join(d, "timeline.csv")) / 1e6))
        page = os.path.join(d, "report.html")
        t = time.time()
        p = subprocess.run([os.path.join(BUILD, "memvisor"), "report", "--html", page, d],
                           stderr=subprocess.PIPE, text=True)
        took = time.time() - t
        if p.returncode:
            print(p.stderr)
            return 1
        t = time.time()
        subprocess.run([os.path.join(BUILD, "memvisor"), "report", d], stdout=subprocess.DEVNULL)
        text_took = time.time() - t
        print("memvisor report --html: %.1f s (the text report: %.1f s); page %.2f MB"
              % (took, text_took, os.path.getsize(page) / 1e6))
        profile = tempfile.mkdtemp(prefix="mv-chromium-")
        t = time.time()
        dom = subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu",
                              "--disable-quic", "--no-first-run", "--disable-background-networking",
                              "--disable-component-update", "--disable-sync",
                              "--user-data-dir=" + profile, "--virtual-time-budget=30000",
                              "--dump-dom", "file://" + page],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL).stdout.decode()
        load = time.time() - t
        shutil.rmtree(profile, ignore_errors=True)
        m = re.search(r'<div ([^>]*id="mv-status"[^>]*)>', dom)
        st = dict(re.findall(r'data-([a-z-]+)="([^"]*)"', m.group(1))) if m else {}
        print("chromium: page script ran in %s ms (whole headless load and dump %.1f s); "
              "charts %s, drawn %s, script errors %s"
              % (st.get("render-ms"), load, st.get("charts"), st.get("drawn"), st.get("errors")))
        if st.get("undrawn"):
            print("not drawn: " + st["undrawn"])
        return 0 if st.get("errors") == "0" and st.get("charts") == st.get("drawn") else 1
    finally:
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
