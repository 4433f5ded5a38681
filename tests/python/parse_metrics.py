"""Parses a Prometheus exposition text with prometheus_client's own parser and prints what it
understood as JSON: {family: {"type": T, "samples": [[name, labels, value], ...]}}.
A parse error exits 1 with the parser's message. Used by tests/check_metrics.c."""
import json
import math
import sys

from prometheus_client.parser import text_string_to_metric_families

text = open(sys.argv[1], encoding="utf-8").read()
out = {}
try:
    for fam in text_string_to_metric_families(text):
        out[fam.name] = {
            "type": fam.type,
            "samples": [[s.name, s.labels, None if math.isnan(s.value) else s.value]
                        for s in fam.samples],
        }
except Exception as e:  # the parser raises ValueError and others on bad input
    print(f"parse error: {e}", file=sys.stderr)
    sys.exit(1)
json.dump(out, sys.stdout)
