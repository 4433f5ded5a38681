#!/usr/bin/env python3
"""make check-html: the HTML report in a real browser (Debian's chromium, headless).

Runs a small real batch (a leaking worker under a low soft limit: recycles and a leak
suspect), writes its report with `memvisor report --html`, renders it headless, takes a
screenshot (BUILD/html-check/report.png), and fails when the page had a script error or a
chart drew nothing: the page itself writes #mv-status (charts made, charts whose own series
colour is on their canvas, script errors caught by window.onerror), read here from the DOM
chromium dumps. Then the bad inputs: a run directory with no timeline, a corrupt events
line, a corrupt timeline row, and a page that throws (this checker must catch it).

Prints "N passed, N failed" at the end; exits 1 on any failure.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

BUILD = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "build")
MEMVISOR = os.path.join(BUILD, "memvisor")
LEAKY = os.path.join(BUILD, "examples", "leaky_worker")
OUT = os.path.join(BUILD, "html-check")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
results = {"passed": 0, "failed": 0}


def check(name, ok, detail=""):
    results["passed" if ok else "failed"] += 1
    print(("ok    " if ok else "FAIL  ") + name + ("" if ok else ": " + detail), flush=True)
    return ok


def chromium(url, *extra):
    """Runs headless chromium on url with a fresh profile; returns its stdout."""
    profile = tempfile.mkdtemp(prefix="mv-chromium-")
    try:
        cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
               "--no-first-run", "--disable-background-networking", "--disable-component-update",
               "--disable-sync", "--user-data-dir=" + profile, "--virtual-time-budget=10000",
               "--hide-scrollbars", *extra, url]
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=120)
        return p.stdout.decode("utf-8", "replace")
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def status(page):
    """The #mv-status attributes and the #mv-errors text of the page as chromium built it."""
    dom = chromium("file://" + page, "--dump-dom")
    m = re.search(r'<div ([^>]*id="mv-status"[^>]*)>', dom)
    attrs = dict(re.findall(r'data-([a-z-]+)="([^"]*)"', m.group(1))) if m else {}
    errs = re.search(r'<pre id="mv-errors"[^>]*>([^<]*)</pre>', dom)
    return attrs, (errs.group(1) if errs else ""), dom


def report(run_dir, page):
    return subprocess.run([MEMVISOR, "report", "--html", page, run_dir], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, timeout=120)


def batch(work):
    with open(os.path.join(work, "tasks.txt"), "w") as f:
        f.writelines("task %d\n" % i for i in range(1, 401))
    p = subprocess.run([MEMVISOR, "run", "-o", "supervisor.workers=2",
                        "-o", "limits.memory_soft=40M", "-o", "limits.memory_hard=80M",
                        "-o", "log.level=warn", "-o", "supervisor.state_dir=" + work + "/state",
                        "-o", "control.socket=none",
                        "--tasks", work + "/tasks.txt", "--results", work + "/results.jsonl",
                        "--", LEAKY, "--leak", "1M"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=120)
    check("the batch ran (exit 0)", p.returncode == 0, p.stderr[-2000:])
    return os.path.realpath(os.path.join(work, "state", "latest"))


def main():
    if os.path.exists(OUT):
        shutil.rmtree(OUT)
    os.makedirs(OUT)
    work = tempfile.mkdtemp(prefix="mv-check-html-")
    try:
        run = batch(work)
        events = open(os.path.join(run, "events.jsonl")).read()
        check("the batch recycled workers", '"event":"recycle"' in events)
        check("the batch has a leak suspect", '"event":"leak_suspect"' in events)

        page = os.path.join(OUT, "report.html")
        p = report(run, page)
        check("report --html exits 0", p.returncode == 0, p.stderr)
        size = os.path.getsize(page) if os.path.exists(page) else 0
        check("the page is one file that loads nothing", size > 50000 and
              not re.search(r'(src|href)="(https?:)?//', open(page).read()), str(size))
        st, errs, dom = status(page)
        check("the page ran to its end (#mv-status)", bool(st), "no #mv-status in the DOM")
        check("no script error", st.get("errors") == "0" and not errs.strip(), errs)
        check("memory charts for both slots", st.get("slots") == "2", json.dumps(st))
        check("every chart drew its data", int(st.get("charts", 0)) >= 5 and
              st.get("drawn") == st.get("charts"), json.dumps(st))
        check("the suspect and its snapshot are shown", "mv-suspect" in dom and
              "snapshot " in dom, "")
        check("the limits advice is shown", "memory_hard" in dom and "[limits]" in dom, "")
        chromium("file://" + page, "--window-size=1280,2600", "--screenshot=" +
                 os.path.join(OUT, "report.png"))
        shot = os.path.join(OUT, "report.png")
        check("screenshot taken (" + shot + ")", os.path.exists(shot) and
              os.path.getsize(shot) > 20000)
        print("page %d bytes, rendered in %s ms" % (size, st.get("render-ms")))

        # bad input: a run directory with no timeline (older runs): still a page, no error
        old = os.path.join(work, "old-run")
        shutil.copytree(run, old)
        os.unlink(os.path.join(old, "timeline.csv"))
        page2 = os.path.join(OUT, "no-timeline.html")
        p = report(old, page2)
        check("no timeline: report --html exits 0", p.returncode == 0, p.stderr)
        st, errs, dom = status(page2)
        check("no timeline: no script error, says why", st.get("errors") == "0" and
              "No memory timeline" in dom, errs + json.dumps(st))
        check("no timeline: the other charts drew", int(st.get("charts", 0)) >= 2 and
              st.get("drawn") == st.get("charts"), json.dumps(st))

        # bad input: a corrupt events line: an error naming it, no page
        bad = os.path.join(work, "bad-events")
        shutil.copytree(run, bad)
        with open(os.path.join(bad, "events.jsonl"), "a") as f:
            f.write('{"event": "recycle", "reason": \n')
        page3 = os.path.join(OUT, "bad-events.html")
        p = report(bad, page3)
        check("corrupt events line: exit 3 naming the line", p.returncode == 3 and
              re.search(r"events\.jsonl:\d+: invalid JSON", p.stderr), p.stderr)
        check("corrupt events line: no page written", not os.path.exists(page3) and
              not os.path.exists(page3 + ".new"))

        # bad input: a corrupt timeline row
        bad = os.path.join(work, "bad-timeline")
        shutil.copytree(run, bad)
        with open(os.path.join(bad, "timeline.csv"), "a") as f:
            f.write("p,12,1,1,NaN,,,,\np,13,1,1,5,,,,\n")
        p = report(bad, os.path.join(OUT, "bad-timeline.html"))
        check("corrupt timeline row: exit 3 naming the line", p.returncode == 3 and
              re.search(r"timeline\.csv:\d+: not a timeline row", p.stderr), p.stderr)

        # hostile kinds (markup, a closing script tag, an event handler, quotes, control
        # characters, bidi and other unicode) and a kind with no measured task: shown as
        # text, nothing runs, and an unmeasured figure is "?", never "0 B"
        xss = os.path.join(work, "xss-run")
        shutil.copytree(run, xss)
        hostile = ['<img src=x onerror="document.body.setAttribute(\'data-pwned\',1)">',
                   '</script><script>document.body.setAttribute("data-pwned",2)</script>',
                   "q'\"&amp;\u202e\u0007\u001b[31m\u00e9"]
        rj = json.load(open(os.path.join(xss, "run.json")))
        res = os.path.join(xss, "hostile.jsonl")
        rj["results"] = res
        json.dump(rj, open(os.path.join(xss, "run.json"), "w"))
        with open(res, "w") as f:
            for i, k in enumerate(hostile * 3):
                f.write(json.dumps({"task": i + 1, "status": "ok", "kind": k, "worker": 1,
                                    "pid": 5, "mem_before": 1 << 20, "mem_after": 1 << 20,
                                    "mem_peak": 2 << 20, "retained": 0}) + "\n")
            f.write(json.dumps({"task": 99, "status": "quarantined", "kind": "unmeasured",
                                "mem_before": None, "mem_after": None, "mem_peak": None}) + "\n")
        page4 = os.path.join(OUT, "hostile.html")
        p = report(xss, page4)
        check("hostile kinds: report --html exits 0", p.returncode == 0, p.stderr)
        st, errs, dom = status(page4)
        check("hostile kinds: no script error", st.get("errors") == "0" and not errs.strip(),
              errs + json.dumps(st))
        check("hostile kinds: no injected markup ran", not re.search(r"<body[^>]*data-pwned", dom)
              and not re.search(r"<img[^>]*onerror", dom), "")
        check("hostile kinds: shown as text", "&lt;img src=x onerror=" in dom, "")
        row = re.search(r"<td>unmeasured</td>((?:<td>[^<]*</td>){7})", dom)
        check("a kind with no measured task shows ? for its figures, not 0 B",
              row is not None and "0 B" not in row.group(1) and row.group(1).count("?") == 6,
              row.group(0) if row else "no row for the kind")

        # the run's results file removed since: the page still renders, from the events,
        # and says the file is gone
        gone = os.path.join(work, "gone-run")
        shutil.copytree(run, gone)
        rj = json.load(open(os.path.join(gone, "run.json")))
        rj["results"] = os.path.join(gone, "removed.jsonl")
        json.dump(rj, open(os.path.join(gone, "run.json"), "w"))
        page5 = os.path.join(OUT, "results-gone.html")
        p = report(gone, page5)
        check("results file gone: report --html exits 0", p.returncode == 0, p.stderr)
        st, errs, dom = status(page5)
        check("results file gone: no script error", st.get("errors") == "0" and not errs.strip(),
              errs + json.dumps(st))
        check("results file gone: said so", "removed.jsonl (not found: moved or removed since "
              "the run" in dom, "")

        # the checker itself: a page that throws must be caught
        broken = os.path.join(OUT, "throws.html")
        text = open(page).read().replace("</body>", "<script>null.boom();</script></body>")
        open(broken, "w").write(text)
        st, errs, dom = status(broken)
        check("a script error is caught by the page", st.get("errors") not in (None, "0") or
              "boom" in errs or "null" in errs, json.dumps(st) + errs)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("%d passed, %d failed" % (results["passed"], results["failed"]))
    return 1 if results["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
