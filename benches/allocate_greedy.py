#!/usr/bin/env python3
"""The anchor for benches/allocate.sh: the common greedy reading of the allocation problem,
written the straightforward way (json module, dicts). Walk the warehouses in list order, take
what each has of what is still needed; an order that cannot be completed ships []. Output lines
are compact JSON, warehouses in list order, items in the order's order, like `allocate
--strategy greedy`.
"""
import json
import sys


def allocate(order, warehouses):
    remaining = {item: qty for item, qty in order.items() if qty > 0}
    shipments = []
    for warehouse in warehouses:
        inventory = warehouse["inventory"]
        taken = {}
        for item, need in remaining.items():
            qty = min(need, inventory.get(item, 0))
            if qty > 0:
                taken[item] = qty
                remaining[item] = need - qty
        if taken:
            shipments.append({warehouse["name"]: taken})
    if any(remaining.values()):
        return []
    return shipments


def main():
    dumps = json.JSONEncoder(separators=(",", ":")).encode
    out = sys.stdout
    for line in sys.stdin:
        if line.strip():
            problem = json.loads(line)
            out.write(dumps(allocate(problem["order"], problem["warehouses"])) + "\n")


if __name__ == "__main__":
    main()
