#!/usr/bin/env python3
"""Check that minute-stats, Miller and DuckDB computed the same per-minute, per-type numbers.
Usage: minute_stats_compare.py OURS.jsonl MILLER.jsonl DUCKDB.jsonl"""
import json
import sys


def close(a, b):
    return abs(a - b) <= 1e-9 * max(1.0, abs(a), abs(b))


def ours(path):
    rows = {}
    for line in open(path):
        s = json.loads(line)
        minute = s["period_start"][:16]
        for a in s["aggs"]:
            rows[(minute, a["name"])] = (a["min"], a["max"], a["mean"], a["median"])
    return rows


def miller(path):
    rows = {}
    for line in open(path):
        r = json.loads(line)
        rows[(r["minute"], r["type"])] = (r["value_min"], r["value_max"], r["value_mean"], r["value_p50"])
    return rows


def duck(path):
    rows = {}
    for line in open(path):
        r = json.loads(line)
        rows[(r["minute"], r["type"])] = (r["min"], r["max"], r["mean"], r["median"])
    return rows


want = ours(sys.argv[1])
for name, got in (("miller", miller(sys.argv[2])), ("duckdb", duck(sys.argv[3]))):
    if set(got) != set(want):
        print(f"{name}: different groups: {len(got)} vs {len(want)}")
        sys.exit(1)
    for key, w in want.items():
        g = got[key]
        if not all(close(float(x), float(y)) for x, y in zip(w, g)):
            print(f"{name}: {key}: ours {w} theirs {g}")
            sys.exit(1)
    print(f"agree: minute-stats and {name} give the same {len(want)} (minute, type) aggregates")
