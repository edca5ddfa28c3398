#!/usr/bin/env python3
"""Random allocate problems for benches/allocate.sh: one JSON line each.

Each problem orders 1-10 distinct items (1-10 units each) from a pool of 40, and lists 2-20
warehouses; a warehouse stocks each ordered item with probability 1/2 (1-10 units) and 0-2
items nobody ordered. Deterministic for a given --seed.
"""
import argparse
import json
import random
import sys


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--count", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    rand, randrange, sample = rng.random, rng.randrange, rng.sample
    pool = [f"item{i}" for i in range(40)]
    names = [f"wh{i}" for i in range(20)]
    out = sys.stdout
    dumps = json.JSONEncoder(separators=(",", ":")).encode
    lines = []
    for _ in range(args.count):
        items = sample(pool, 1 + randrange(10))
        order = {item: 1 + randrange(10) for item in items}
        warehouses = []
        for name in names[: 2 + randrange(19)]:
            inventory = {item: 1 + randrange(10) for item in items if rand() < 0.5}
            for _ in range(randrange(3)):
                inventory[pool[randrange(40)]] = 1 + randrange(10)
            warehouses.append({"name": name, "inventory": inventory})
        lines.append(dumps({"order": order, "warehouses": warehouses}))
        if len(lines) == 10_000:
            out.write("\n".join(lines) + "\n")
            lines.clear()
    if lines:
        out.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
