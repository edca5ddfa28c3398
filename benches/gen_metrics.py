#!/usr/bin/env python3
"""Write N metric events like the minute-stats seed's: four types, sorted timestamps, about
RATE events per second of event time, tags as the seed writes them. Deterministic (seeded)."""
import random
import sys
from datetime import datetime, timedelta, timezone

n = int(sys.argv[1]) if len(sys.argv) > 1 else 5_000_000
rate = float(sys.argv[2]) if len(sys.argv) > 2 else 2000.0
rng = random.Random(4)
types = ["request_duration", "request_count", "user_signup", "user_logged"]
start = datetime(2017, 1, 3, 15, 53, tzinfo=timezone.utc).timestamp()
step = 1.0 / rate
out = sys.stdout
buf = []
t = start
for i in range(n):
    t += rng.random() * 2 * step
    kind = types[rng.randrange(4)]
    value = rng.randrange(1, 1000) if kind != "request_duration" else rng.randrange(1, 5000)
    us = int(t * 1_000_000)
    stamp = datetime.fromtimestamp(us // 1_000_000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    buf.append(
        '{"type": "%s", "value": %d, "timestamp": "%s.%06dZ", "tags": "company:%d,sburbles:barf"}\n'
        % (kind, value, stamp, us % 1_000_000, rng.randrange(1, 50))
    )
    if len(buf) >= 10000:
        out.write("".join(buf))
        buf.clear()
out.write("".join(buf))
