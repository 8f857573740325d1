"""Compares the verdicts of two runs, each a folder holding one bundle.

    python3 scripts/same-verdicts.py TAG NAME-A DIR-A NAME-B DIR-B [--mixed]

Both runs must have finished and list the same cases with the same
result; with --mixed the runs must also hold both passed and failed
cases, so that the comparison tells something. Prints the differences
on standard error and exits 1 when there are any.
"""
import glob
import json
import sys


def verdicts(folder):
    [summary] = glob.glob(f"{folder}/*/summary.json")
    s = json.load(open(summary))
    assert s["status"] == "finished", f"{summary}: {s['status']}"
    return {c["case"]: c["result"] for c in s["cases"]}


tag, name_a, dir_a, name_b, dir_b = sys.argv[1:6]
mixed = "--mixed" in sys.argv[6:]
a, b = verdicts(dir_a), verdicts(dir_b)
differ = sorted(c for c in a.keys() | b.keys() if a.get(c) != b.get(c))
for c in differ:
    print(f"{tag}: {c}: {name_a} {a.get(c)}, {name_b} {b.get(c)}", file=sys.stderr)
if differ or not a or (mixed and not {"passed", "failed"} <= set(a.values())):
    sys.exit(1)
failed = sum(r == "failed" for r in a.values())
print(f"{tag}: the same verdict for all {len(a)} cases ({failed} failed in both)")
