#!/usr/bin/env python3
"""The API requests between two scrapes of apiserver_request_total, by verb,
resource and subresource, per certificate: most first. Discovery and metric
scrapes (no API version) are left out.
  request-profile.py BEFORE AFTER N [--line | --writes]
--line prints one line (bench-compare); --writes the writes (POST, PUT,
PATCH, APPLY, DELETE, DELETECOLLECTION) but Leases' (leader election),
their total then each kind; else a table of the top ten (scale)."""
import re
import sys

WRITES = {"POST", "PUT", "PATCH", "APPLY", "DELETE", "DELETECOLLECTION"}


def load(path):
    counts = {}
    for line in open(path):
        labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
        if labels.get("version", "") == "":
            continue
        key = (labels.get("verb", ""), labels.get("resource", ""), labels.get("subresource", ""))
        counts[key] = counts.get(key, 0.0) + float(line.split()[-1])
    return counts


before, after, n = load(sys.argv[1]), load(sys.argv[2]), int(sys.argv[3])
rows = sorted(((after[k] - before.get(k, 0.0), k) for k in after), reverse=True)
name = lambda res, sub: res + ("/" + sub if sub else "")
if "--line" in sys.argv[4:]:
    print("  requests per certificate: " + ", ".join(
        f"{verb} {name(res, sub)} {c / n:.2f}" for c, (verb, res, sub) in rows if c / n >= 0.01))
elif "--writes" in sys.argv[4:]:
    writes = [(c, verb, name(res, sub)) for c, (verb, res, sub) in rows if c > 0 and verb in WRITES and res != "leases"]
    print(f"{int(sum(c for c, _, _ in writes))}" + "".join(f", {verb} {res} {int(c)}" for c, verb, res in writes))
else:
    for c, (verb, res, sub) in rows[:10]:
        if c > 0:
            print(f"  {verb:7} {name(res, sub):40} {int(c):7}  {c / n:5.2f} per certificate")
