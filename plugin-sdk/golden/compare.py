#!/usr/bin/env python3
"""Checks an SDK's decoding of the golden vectors.

    compare.py NNN.json < decoded.jsonl

`decoded.jsonl` holds one JSON object per sample, as the SDK under test decoded
it from NNN.bin and wrote it back out (Ceilometer's field names, absent keys
left out). Each line must equal the matching element of NNN.json: same keys,
same values, integers and floats kept apart (512 is not 512.0). Exit status 0
when all match; otherwise it prints the first difference and exits 1.
"""
import json
import math
import sys


def same(a, b, path="$"):
    if type(a) is not type(b):
        return f"{path}: {a!r} ({type(a).__name__}) != {b!r} ({type(b).__name__})"
    if isinstance(a, dict):
        if set(a) != set(b):
            return f"{path}: keys {sorted(a)} != {sorted(b)}"
        for k in a:
            d = same(a[k], b[k], f"{path}.{k}")
            if d:
                return d
        return None
    if isinstance(a, list):
        if len(a) != len(b):
            return f"{path}: {len(a)} items != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            d = same(x, y, f"{path}[{i}]")
            if d:
                return d
        return None
    if isinstance(a, float) and (a != b or math.copysign(1, a) != math.copysign(1, b)):
        return f"{path}: {a!r} != {b!r}"
    if a != b:
        return f"{path}: {a!r} != {b!r}"
    return None


def main():
    expected = json.load(open(sys.argv[1], encoding="utf-8"))
    got = [json.loads(line) for line in sys.stdin.read().splitlines() if line.strip()]
    if len(got) != len(expected):
        print(f"{sys.argv[1]}: {len(got)} samples decoded, {len(expected)} expected")
        return 1
    for i, (g, e) in enumerate(zip(got, expected)):
        d = same(g, e, f"sample[{i}]")
        if d:
            print(f"{sys.argv[1]}: {d}")
            return 1
    print(f"{sys.argv[1]}: {len(got)} samples equal")
    return 0


if __name__ == "__main__":
    sys.exit(main())
