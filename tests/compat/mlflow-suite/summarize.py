"""Compares the junit XML of the MLflow run (baseline) with the Loopline run.

usage: summarize.py MLFLOW_XML LOOPLINE_XML [FAILURES_MD]

Prints per-file counts for both targets and how many of the tests that pass on MLflow also pass on
Loopline; FAILURES_MD, when given, gets every test that passes on MLflow and not on Loopline, with
the first line of its failure.
"""

import sys
import xml.etree.ElementTree as ET
from collections import Counter, defaultdict

OUTCOMES = ("passed", "failed", "error", "skipped")


def load(path):
    """{test id: (outcome, first line of the message)}; a failure or error in any phase wins."""
    results = {}
    for case in ET.parse(path).iter("testcase"):
        module = case.get("classname", "").replace(".", "/")
        test_id = f"{module}.py::{case.get('name')}"
        outcome, message = "passed", ""
        for tag in ("failure", "error", "skipped"):
            node = case.find(tag)
            if node is not None:
                outcome = "failed" if tag == "failure" else tag
                message = (node.get("message") or node.text or "").strip().splitlines()[:1]
                message = message[0] if message else ""
                break
        if test_id not in results or outcome in ("failed", "error"):
            results[test_id] = (outcome, message)
    return results


def file_of(test_id):
    return test_id.split("::", 1)[0]


def main():
    mlflow_results, loopline_results = load(sys.argv[1]), load(sys.argv[2])
    files = sorted({file_of(t) for t in mlflow_results} | {file_of(t) for t in loopline_results})
    counts = {name: defaultdict(Counter) for name in ("mlflow", "loopline")}
    for name, results in (("mlflow", mlflow_results), ("loopline", loopline_results)):
        for test_id, (outcome, _) in results.items():
            counts[name][file_of(test_id)][outcome] += 1

    baseline = {t for t, (o, _) in mlflow_results.items() if o == "passed"}
    kept = {t for t in baseline if loopline_results.get(t, ("missing",))[0] == "passed"}
    lost = sorted(baseline - kept)

    print(f"{'file':<42} {'MLflow pass/fail/err/skip':>26} {'Loopline pass/fail/err/skip':>28} {'kept':>9}")
    for f in files:
        m, l = counts["mlflow"][f], counts["loopline"][f]
        base = {t for t in baseline if file_of(t) == f}
        print(f"{f:<42} {'/'.join(str(m[o]) for o in OUTCOMES):>26} {'/'.join(str(l[o]) for o in OUTCOMES):>28}"
              f" {len(base & kept):>4}/{len(base):<4}")
    share = 100 * len(kept) / len(baseline) if baseline else 0.0
    print(f"\nTests passing on MLflow: {len(baseline)}")
    print(f"Of those, passing on Loopline: {len(kept)} ({share:.1f}%)")
    print(f"Passing on MLflow, not on Loopline: {len(lost)}")
    gained = sorted(t for t, (o, _) in loopline_results.items() if o == "passed" and t not in baseline)
    if gained:
        print(f"Passing on Loopline, not on MLflow: {len(gained)}")
        for t in gained:
            print(f"  {t}  (MLflow: {mlflow_results.get(t, ('missing', ''))[0]})")

    if len(sys.argv) > 3:
        with open(sys.argv[3], "w") as out:
            out.write(f"# Passing on MLflow, not on Loopline ({len(lost)} of {len(baseline)})\n\n")
            for t in lost:
                outcome, message = loopline_results.get(t, ("missing", ""))
                out.write(f"- `{t}` ({outcome}): {message}\n")


if __name__ == "__main__":
    main()
