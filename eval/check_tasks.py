#!/usr/bin/env python3
"""Validate eval/tasks-labelled.jsonl (labelled classify/extract tasks).

Usage: python3 eval/check_tasks.py [path]   -- exits 1 on any problem.
"""
import json
import os
import sys
from collections import Counter

DEMO_TEXTS = {  # the demo's own texts (src/demo/tasks.rs) must not be reused
    "The battery died after two days and support never answered my emails.",
    "Setup took five minutes and it has worked perfectly ever since. Great value.",
    "The central bank raised interest rates by half a percentage point on Tuesday.",
    "The striker scored twice in the final minutes and the team won the cup.",
    "Production is down: no customer has been able to log in since 9:00.",
    "Please contact Maria Lopez at maria.lopez@example.com about the delivery.",
    "We ordered 12 chairs for the new office.",
    "Invoice INV-2041 from Acme Corp is due on 15 March 2025.",
}
JSON_TYPES = {"string": str, "integer": int, "number": (int, float)}
MAX_INPUT = 300


def check(path):
    problems, rows, ids = [], [], set()
    with open(path, encoding="utf-8") as f:
        for ln, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                r = json.loads(line)
            except json.JSONDecodeError as e:
                problems.append(f"line {ln}: bad JSON: {e}")
                continue
            where = f"line {ln} ({r.get('id', '?')})"
            def bad(msg):
                problems.append(f"{where}: {msg}")
            base = ["id", "split", "task", "family", "input", "expected"]
            missing = [k for k in base if k not in r]
            if missing:
                bad(f"missing fields {missing}")
                continue
            if r["id"] in ids:
                bad("duplicate id")
            ids.add(r["id"])
            if r["split"] not in ("dev", "test"):
                bad(f"split {r['split']!r} not in dev/test")
            text = r["input"]
            if not isinstance(text, str) or not text.strip():
                bad("input must be a non-empty string")
                continue
            if len(text) >= MAX_INPUT:
                bad(f"input is {len(text)} chars (limit {MAX_INPUT})")
            if text.strip() in DEMO_TEXTS:
                bad("reuses a demo text")
            low = text.lower()
            exp = r["expected"]
            if r["task"] == "classify":
                labels = r.get("labels")
                if not isinstance(labels, list) or len(labels) < 2 or len(set(labels)) != len(labels):
                    bad("labels must be a list of >= 2 distinct strings")
                elif exp not in labels:
                    bad(f"expected {exp!r} not in labels {labels}")
            elif r["task"] == "extract":
                schema = r.get("output_schema")
                if not isinstance(schema, dict) or not isinstance(exp, dict):
                    bad("extract needs an output_schema object and an expected object")
                    continue
                props = schema.get("properties", {})
                req = schema.get("required", [])
                if schema.get("type") != "object" or schema.get("additionalProperties") is not False:
                    bad("schema must be type object with additionalProperties false")
                if not (set(exp) == set(req) == set(props)) or len(req) != len(set(req)):
                    bad(f"keys differ: expected {sorted(exp)}, required {sorted(req)}, properties {sorted(props)}")
                for k, v in exp.items():
                    t = props.get(k, {}).get("type")
                    if t not in JSON_TYPES or isinstance(v, bool) or not isinstance(v, JSON_TYPES[t]):
                        bad(f"{k}={v!r} does not match schema type {t!r}")
                    elif isinstance(v, str):
                        if not v.strip():
                            bad(f"{k} is empty")
                        elif v.strip().lower() not in low:
                            bad(f"{k}={v!r} does not occur verbatim in input")
                    elif isinstance(v, int) and str(v) not in text:
                        bad(f"{k}={v} digits do not occur in input")
            else:
                bad(f"task {r['task']!r} not classify/extract")
            rows.append(r)
    return rows, problems


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "tasks-labelled.jsonl")
    rows, problems = check(path)
    print(f"{len(rows)} items in {path}")
    for name, key in [("split", lambda r: r["split"]),
                      ("task", lambda r: (r["split"], r["task"])),
                      ("family", lambda r: (r["task"], r["family"], r["split"]))]:
        print(f"-- by {name}")
        for k, c in sorted(Counter(map(key, rows)).items()):
            print(f"  {' / '.join(k) if isinstance(k, tuple) else k}: {c}")
    print("-- classify labels (dev/test)")
    lab = Counter((r["family"], r["expected"], r["split"]) for r in rows if r["task"] == "classify")
    for fam, l in sorted({(f, e) for f, e, _ in lab}):
        print(f"  {fam} / {l}: {lab[(fam, l, 'dev')]}/{lab[(fam, l, 'test')]}")
    diff = Counter((r["split"], r.get("difficulty", "-")) for r in rows)
    print("-- difficulty: " + ", ".join(f"{s}/{d}: {c}" for (s, d), c in sorted(diff.items())))
    for p in problems:
        print("PROBLEM:", p)
    if problems:
        print(f"{len(problems)} problem(s)")
        sys.exit(1)
    print("OK")


if __name__ == "__main__":
    main()
