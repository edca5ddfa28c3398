#!/usr/bin/env python3
"""Deterministic synthetic competitor prices in the challenge's CSV format.

    gen-prices.py --rows 1000 > examples/data.csv                 # Timestamp,Price
    gen-prices.py --books 10000 --steps 20 > /tmp/books.csv       # Timestamp,Price,Book

A random walk per book (seeded, so the output never changes): daily moves of up to 1.5 %,
mean-reverting towards the book's base price, two decimals, like ../shared/data/data.csv.
"""
import argparse
import random
import sys


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1000, help="rows of the single series")
    ap.add_argument("--books", type=int, default=0, help="many books: this many (adds a Book column)")
    ap.add_argument("--steps", type=int, default=20, help="timestamps per book with --books")
    ap.add_argument("--seed", type=int, default=6)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    out = sys.stdout
    if args.books == 0:
        out.write("Timestamp,Price\n")
        base = price = 6200.0
        for t in range(1, args.rows + 1):
            price += price * rng.uniform(-0.015, 0.015) + (base - price) * 0.01
            out.write(f"{t},{price:.2f}\n")
        return
    out.write("Timestamp,Price,Book\n")
    bases = [rng.uniform(5.0, 80.0) for _ in range(args.books)]
    prices = list(bases)
    for t in range(1, args.steps + 1):
        lines = []
        for b in range(args.books):
            p = prices[b]
            p += p * rng.uniform(-0.015, 0.015) + (bases[b] - p) * 0.01
            prices[b] = p
            lines.append(f"{t},{p:.2f},book-{b + 1:05d}\n")
        out.write("".join(lines))


if __name__ == "__main__":
    main()
