#!/usr/bin/env python3
"""Writes NNN.bin (ABI v1 batch bytes) for every NNN.json (a list of Ceilometer
sample dicts) in this folder.

This is a second, independent implementation of the batch layout in
docs/ABI.md: the Rust encoder and every SDK decoder are tested against its
output. Run it after adding or changing a .json file.
"""
import json
import pathlib
import struct

KNOWN = ["source", "counter_name", "counter_type", "counter_unit", "counter_volume",
         "user_id", "user_name", "project_id", "project_name", "resource_id", "timestamp",
         "resource_metadata", "message_id", "monotonic_time", "message_signature"]


def u32(n): return struct.pack("<I", n)
def u64(n): return struct.pack("<Q", n)


def string(x):
    b = x.encode("utf-8")
    return u64(len(b)) + b


def number(v):
    if isinstance(v, float):
        return u32(2) + struct.pack("<d", v)
    if -2**63 <= v < 2**63:
        return u32(0) + struct.pack("<q", v)
    return u32(1) + u64(v)


def value(v):
    if v is None:
        return u32(0)
    if isinstance(v, bool):
        return u32(1) + bytes([int(v)])
    if isinstance(v, int):
        return u32(2) + struct.pack("<q", v) if -2**63 <= v < 2**63 else u32(3) + u64(v)
    if isinstance(v, float):
        return u32(4) + struct.pack("<d", v)
    if isinstance(v, str):
        return u32(5) + string(v)
    if isinstance(v, list):
        return u32(7) + u64(len(v)) + b"".join(value(x) for x in v)
    if isinstance(v, dict):
        return u32(8) + entries(v.items())
    raise TypeError(v)


def entries(items):
    items = list(items)
    return u64(len(items)) + b"".join(string(k) + value(v) for k, v in items)


def field(d, key, enc):
    """Absent: 00; null: 01 00; value: 01 01 <value>."""
    if key not in d:
        return b"\x00"
    if d[key] is None:
        return b"\x01\x00"
    return b"\x01\x01" + enc(d[key])


def sample(d):
    out = b"".join(string(d[k]) for k in KNOWN[:4])
    out += b"\x00" if d["counter_volume"] is None else b"\x01" + number(d["counter_volume"])
    out += b"".join(field(d, k, string) for k in KNOWN[5:9])
    out += string(d["resource_id"]) + string(d["timestamp"])
    out += b"\x01" + value(d["resource_metadata"]) if "resource_metadata" in d else b"\x00"
    out += string(d["message_id"])
    out += field(d, "monotonic_time", number)
    out += b"\x01" + string(d["message_signature"]) if "message_signature" in d else b"\x00"
    out += entries((k, v) for k, v in d.items() if k not in KNOWN)
    return out


def batch(samples):
    return u64(len(samples)) + b"".join(sample(s) for s in samples)


if __name__ == "__main__":
    here = pathlib.Path(__file__).parent
    for src in sorted(here.glob("*.json")):
        data = batch(json.loads(src.read_text(encoding="utf-8")))
        src.with_suffix(".bin").write_bytes(data)
        print(f"{src.with_suffix('.bin').name}: {len(data)} bytes")
