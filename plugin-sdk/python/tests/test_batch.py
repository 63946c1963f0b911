"""The SDK's decoder on every golden vector (docs/ABI.md, section 11), with
CPython on the build machine: the same code runs inside the component."""

import glob
import json
import os
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
GOLDEN = os.path.join(HERE, "..", "..", "golden")

from collector_dispatcher.batch import DecodeError, decode_batch  # noqa: E402


def same(a, b, where="$"):
    """Equal as JSON values, with int and float kept apart (1 is not 1.0)."""
    if type(a) is not type(b):
        raise AssertionError("%s: %r (%s) is not %r (%s)" % (where, a, type(a).__name__, b, type(b).__name__))
    if isinstance(a, dict):
        if set(a) != set(b):
            raise AssertionError("%s: keys %s vs %s" % (where, sorted(a), sorted(b)))
        for k in a:
            same(a[k], b[k], "%s.%s" % (where, k))
    elif isinstance(a, list):
        if len(a) != len(b):
            raise AssertionError("%s: %d vs %d items" % (where, len(a), len(b)))
        for i, (x, y) in enumerate(zip(a, b)):
            same(x, y, "%s[%d]" % (where, i))
    elif isinstance(a, float) and a != a:
        if b == b:
            raise AssertionError("%s: NaN vs %r" % (where, b))
    elif a != b:
        raise AssertionError("%s: %r vs %r" % (where, a, b))


class Golden(unittest.TestCase):
    def vectors(self):
        found = sorted(glob.glob(os.path.join(GOLDEN, "*.bin")))
        self.assertGreaterEqual(len(found), 5, "golden vectors in %s" % GOLDEN)
        for path in found:
            with open(path, "rb") as f:
                data = f.read()
            with open(path[:-4] + ".json") as f:
                want = json.load(f)
            yield os.path.basename(path), data, want

    def test_every_vector_decodes_to_its_json(self):
        for name, data, want in self.vectors():
            with self.subTest(name):
                same(decode_batch(data), want)

    def test_every_strict_prefix_fails(self):
        for name, data, _ in self.vectors():
            for cut in range(len(data)):
                with self.assertRaises(DecodeError, msg="%s cut at %d" % (name, cut)):
                    decode_batch(data[:cut])

    def test_trailing_bytes_and_bad_bytes_are_refused_with_the_offset(self):
        data = open(os.path.join(GOLDEN, "002-minimal.bin"), "rb").read()
        with self.assertRaises(DecodeError) as e:
            decode_batch(data + b"\0")
        self.assertEqual(e.exception.offset, len(data))
        # The counter_volume flag (after the count and four strings) set to 2.
        bad = bytearray(data)
        at = 8
        for _ in range(4):
            at += 8 + int.from_bytes(bad[at : at + 8], "little")
        bad[at] = 2
        with self.assertRaises(DecodeError) as e:
            decode_batch(bytes(bad))
        self.assertEqual(e.exception.offset, at)
        self.assertIn("flag byte 2", str(e.exception))

    def test_a_huge_count_or_length_is_refused_before_allocating(self):
        with self.assertRaises(DecodeError):
            decode_batch((2**63).to_bytes(8, "little") + b"\0" * 100)
        with self.assertRaises(DecodeError):
            decode_batch((1).to_bytes(8, "little") + (2**64 - 1).to_bytes(8, "little"))

    def test_nesting_beyond_the_limit_is_refused(self):
        data = bytearray(open(os.path.join(GOLDEN, "002-minimal.bin"), "rb").read())
        # 64 nested empty lists as resource_metadata: one level too deep.
        deep = b"".join((7).to_bytes(4, "little") + (1).to_bytes(8, "little") for _ in range(63))
        deep += (7).to_bytes(4, "little") + (0).to_bytes(8, "little")
        # 002-minimal has no metadata: rebuild it with the flag set.
        at = 8
        for _ in range(4):
            at += 8 + int.from_bytes(data[at : at + 8], "little")
        at += 1 + 4  # volume (null), four absent Fields
        for _ in range(2):
            at += 8 + int.from_bytes(data[at : at + 8], "little")
        assert data[at] == 0, "metadata absent in 002"
        with self.assertRaises(DecodeError) as e:
            decode_batch(bytes(data[:at]) + b"\1" + deep + bytes(data[at + 1 :]))
        self.assertIn("deeper than 63", str(e.exception))
        ok = deep[12:]  # 63 levels: accepted
        decoded = decode_batch(bytes(data[:at]) + b"\1" + ok + bytes(data[at + 1 :]))
        self.assertIn("resource_metadata", decoded[0])


if __name__ == "__main__":
    unittest.main()
