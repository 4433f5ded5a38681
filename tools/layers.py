#!/usr/bin/env python3
"""The supervisor's include layering (DESIGN §2): no file includes a header of a layer above
its own. Every file in supervisor/ must be listed here, so a new module gets a layer on
purpose. `make lint` runs this; it prints each upward include and exits 1 if there is one."""
import os
import re
import sys

LAYERS = {
    # 0: pure, plus what every file may use (util, log, the configuration)
    0: "util log config config_int config_ext options units reason exitcode fsm policy escalate slots leak isolate resume "
       "confdiff addr kind kindpool paths metrics progress rurl tpolicy gather",
    # 1: mechanics, knowing nothing of pools or tasks in flight
    1: "proc handoff channel job cgroup cgroup_int cgroup_worker cgasync cgahead lean meter snapshot rundir tasks results listen "
       "notify reaper hostmem heapmon runlock stale control timeline metrics_http waitprobe rentry "
       "rscript rconn rtasks rtasks_int rheld kids startgate",
    # 2: one worker
    2: "worker worker_int worker_start worker_look template",
    # 3: tasks to workers, memory to verdicts, leaks to snapshots
    3: "dispatch watch suspect templates experiment",
    # 4: the slots
    4: "pool pool_int pool_esc pool_kids pool_view spares succ",
    # 5: the run, its commands and the command lines
    5: "supervisor commands main ctl ticker report cli report_int report_load report_print report_html report_timeline "
       "submit",
}


def layer_of():
    out = {}
    for n, names in LAYERS.items():
        for name in names.split():
            out[name] = n
    return out


def main(root):
    layer = layer_of()
    sup = os.path.join(root, "supervisor")
    bad = 0
    for f in sorted(os.listdir(sup)):
        base, ext = os.path.splitext(f)
        if ext not in (".c", ".h"):
            continue
        if base not in layer:
            print(f"supervisor/{f}: not in tools/layers.py: give its module a layer")
            bad += 1
            continue
        with open(os.path.join(sup, f), encoding="utf-8") as fh:
            for no, line in enumerate(fh, 1):
                m = re.match(r'\s*#\s*include\s+"([^"]+)\.h"', line)
                if not m or m.group(1) not in layer:
                    continue
                if layer[m.group(1)] > layer[base]:
                    print(f"supervisor/{f}:{no}: {base} (layer {layer[base]}) includes "
                          f"{m.group(1)}.h (layer {layer[m.group(1)]})")
                    bad += 1
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "."))
