"""The README and docs/ against the real thing: the demo output block against a real (small)
demo, the README's first worker run as the README says, links and the table of contents,
the events and modules the docs list against the source, and no internal jargon.

The binary is $MEMVISOR_BIN (tests/check_python.c sets it to the build's), else build/memvisor;
its directory is the build (the demo needs examples/leaky_worker from it).

    MEMVISOR_BIN=build/memvisor python3 -m unittest -v tests/python/test_docs.py
"""

import glob
import json
import os
import re
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.normpath(os.path.join(HERE, "..", ".."))
MEMVISOR = os.path.abspath(os.environ.get("MEMVISOR_BIN", os.path.join(SOURCE, "build", "memvisor")))
BUILD = os.path.dirname(MEMVISOR)
TIMEOUT = 60


def read(rel):
    with open(os.path.join(SOURCE, rel), encoding="utf-8") as f:
        return f.read()


README = read("README.md")


def section(text, heading):
    """The body of the `## heading` section."""
    m = re.search(r"^## " + re.escape(heading) + r"\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    if not m:
        raise AssertionError(f"no section ## {heading}")
    return m.group(1)


def blocks(text):
    """Fenced code blocks: (language, body) in order."""
    return re.findall(r"^```(\w*)\n(.*?)^```", text, re.M | re.S)


def shape(line):
    """A line with what changes from run to run taken out: paths, numbers, hex, timestamps."""
    line = re.sub(r"; overridden: [^)]*", "", line)
    # Which reasons recycled workers varies with the host's load (a leak experiment's fresh
    # worker, or none when the heap already confirmed the leak): the list's shape is enough.
    line = re.sub(r"(recycles: )[a-z_]+ \d+(, [a-z_]+ \d+)*", r"\1LIST", line)
    # ...and so does the reason of each of the first recycles in the log.
    line = re.sub(r"reason=[a-z_]+", "reason=R", line)
    line = re.sub(r"(~|/)[\w./~-]*/", "PATH/", line)
    line = re.sub(r"\d+(\.\d+)?", "N", line)
    return line


class DemoBlock(unittest.TestCase):
    def test_the_readme_demo_block_has_the_shape_of_a_real_demo(self):
        m = re.search(r"<!-- demo-output[^>]*-->\n```\n(.*?)^```", README, re.M | re.S)
        self.assertIsNotNone(m, "README.md: no demo-output block")
        want = m.group(1).splitlines()
        with tempfile.TemporaryDirectory() as out:
            env = dict(os.environ, MV_DEMO_TASKS="900", MV_DEMO_OUT=out,
                       MV_DEMO_OPTS="-o supervisor.workers=2 -o limits.memory_hard=128M")
            p = subprocess.run(["bash", os.path.join(SOURCE, "examples", "demo.sh"), BUILD],
                               env=env, capture_output=True, text=True, timeout=TIMEOUT)
            self.assertEqual(p.returncode, 0, p.stderr)
        got = p.stdout.splitlines()
        # The same lines, each of the same shape: only figures and paths differ.
        self.assertEqual([shape(x) for x in want], [shape(x) for x in got],
                         "README.md's demo block no longer looks like `make demo`: "
                         "regenerate it\n" + p.stdout)
        # ...and the sample result line has the fields a real one has.
        first = lambda lines: json.loads(next(x for x in lines if x.startswith("first result: "))
                                         [len("first result: "):])
        self.assertEqual(list(first(want)), list(first(got)))


class FirstWorker(unittest.TestCase):
    def test_the_readme_first_worker_runs_as_written_and_its_leak_is_named(self):
        quick = section(README, "Quick start")
        code = [b for lang, b in blocks(quick) if lang == "python"]
        shell = [b for lang, b in blocks(quick) if lang == "sh"]
        self.assertEqual(len(code), 1)
        self.assertLessEqual(len(code[0].strip().splitlines()), 10, "the first worker: 10 lines")
        self.assertIn("make demo", shell[0])
        self.assertIn("make check", shell[0])
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "first.py"), "w") as f:
                f.write(code[0])
            script = shell[1].replace("build/memvisor", MEMVISOR)
            p = subprocess.run(["bash", "-c", script], cwd=d, capture_output=True, text=True,
                               timeout=TIMEOUT)
            self.assertEqual(p.returncode, 1, p.stderr)  # the bad task failed
            with open(os.path.join(d, "results.jsonl")) as f:
                res = [json.loads(x) for x in f]
            self.assertEqual(len(res), 2001)
            bad = [r for r in res if r["status"] != "ok"]
            self.assertEqual([(r["task"], r["status"], r["error"]) for r in bad],
                             [(2001, "failed", "no bad tasks")])
            report = subprocess.run([MEMVISOR, "report"], cwd=d, capture_output=True,
                                    text=True, timeout=TIMEOUT)
            self.assertEqual(report.returncode, 0, report.stderr)
        # The report names the leaking kind, as the README shows it.
        shown = section(README, "Where to look")
        self.assertIn("resize         64.1 KiB/task", shown)
        self.assertRegex(report.stdout, r"Leak suspects.*\n  resize +\d+\.\d KiB/task")
        # and the lines under it, as the report prints them (the README once left out
        # the confirmation and the live heap figure)
        for line in ("\n    confirmed  by ",
                     " tasks of this kind (live heap bytes mean "):
            self.assertIn(line, report.stdout)
            self.assertIn(line.replace("\n    ", "\n      "), shown)


class Links(unittest.TestCase):
    def headings(self, text):
        """GitHub's anchors of a page's headings."""
        out = set()
        for h in re.findall(r"^#+ (.*)$", text, re.M):
            a = re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-")
            out.add(a)
        return out

    def test_the_table_of_contents_lists_every_section_in_order(self):
        toc = re.search(r"^\*\*Contents:\*\*(.*?)\n\n", README, re.M | re.S).group(1)
        entries = re.findall(r"\[([^\]]+)\]\(#([^)]+)\)", toc)
        sections = re.findall(r"^## (.*)$", README, re.M)
        self.assertEqual([e[0] for e in entries], sections)
        anchors = self.headings(README)
        for _, a in entries:
            self.assertIn(a, anchors)

    def test_every_relative_link_of_the_readme_and_docs_resolves(self):
        pages = ["README.md"] + sorted(os.path.relpath(p, SOURCE)
                                       for p in glob.glob(os.path.join(SOURCE, "docs", "*.md")))
        for page in pages:
            text = read(page)
            for target in re.findall(r"\]\(([^)\s]+)\)", text):
                if re.match(r"\w+://", target):
                    continue
                path, _, anchor = target.partition("#")
                full = os.path.normpath(os.path.join(SOURCE, os.path.dirname(page), path)) \
                    if path else os.path.join(SOURCE, page)
                self.assertTrue(os.path.exists(full), f"{page}: broken link {target}")
                if anchor and full.endswith(".md"):
                    with open(full, encoding="utf-8") as f:
                        self.assertIn(anchor, self.headings(f.read()),
                                      f"{page}: no heading for {target}")

    def test_no_internal_jargon_in_the_readme(self):
        for word in ["dev machine", "design was silent", "where the design", "issue ",
                     "issues ", "helper", "project's 2-core", "DESIGN.md", "the lead"]:
            self.assertNotIn(word.lower(), README.lower(), f"README.md says {word!r}")

    def test_which_line_leaks_shows_tracemalloc(self):
        py = section(README, "Python")
        para = py[py.index("**Which line leaks?**"):].split("\n\n")[0]
        self.assertIn("MEMVISOR_TRACEMALLOC=1", para)
        self.assertIn("memvisor.Pool(", blocks(py)[0][1])  # the section starts with the Pool


class InStepWithTheCode(unittest.TestCase):
    def test_every_event_the_supervisor_logs_is_documented(self):
        events = {"log_dropped", "output"}
        for f in glob.glob(os.path.join(SOURCE, "supervisor", "*.c")):
            with open(f, encoding="utf-8") as fh:
                src = fh.read()
            events |= set(re.findall(r'\bmv_(?:info|warn|error|debug)\(\s*[^,]+,\s*"([a-z_]+)"',
                                     src))
            events |= set(re.findall(r'\bmv_log\(\s*[^,]+,\s*[^,]+,\s*"([a-z_]+)"', src))
            # An event named by a condition: mv_warn(log, c ? "one" : "other", ...).
            for pair in re.findall(r'\bmv_(?:info|warn|error|debug)\(\s*[^,]+,\s*[^,"()]*\?\s*'
                                   r'"([a-z_]+)"\s*:\s*"([a-z_]+)"', src):
                events |= set(pair)
        ops = read("docs/operations.md")
        logs = ops[ops.index("## Logs"):]
        logs = logs[:logs.index("\n## ", 5)]
        listed = set(re.findall(r"`([a-z_]+)`", logs))
        self.assertGreater(len(events), 60)
        self.assertEqual(sorted(events - listed), [], "events missing from docs/operations.md")

    def test_every_module_is_in_internals_and_the_readme_with_its_layer(self):
        sys.path.insert(0, os.path.join(SOURCE, "tools"))
        import layers
        internals = read("docs/internals.md")
        layout = section(README, "How the code is laid out")
        for n, names in layers.LAYERS.items():
            for name in names.split():
                self.assertTrue(re.search(r"\n\| `%s` \| %d \| \S" % (name, n), internals),
                                f"docs/internals.md: no row for {name} (layer {n})")
                self.assertTrue(re.search(r"\b%s\b" % name, layout),
                                f"README.md: {name} not in the code layout")
        rows = re.findall(r"\n\| `(\w+)` \| \d \|", internals)
        self.assertEqual(len(rows), sum(len(v.split()) for v in layers.LAYERS.values()))


if __name__ == "__main__":
    unittest.main()
